"""DistilBERT (Sanh et al. 2019): BERT's post-LN layers under other names, half the depth, no token types and no
pooler, optionally fixed sinusoidal positions; classifiers read h_0 through `pre_classifier` and ReLU."""

from .base import Family, SentenceHead

_FIRST_TOKEN_RELU = SentenceHead("first-token", activation="relu", dropout_before=False)

DISTILBERT = Family(
    name="DistilBERT",
    model_types=("distilbert",),
    prefix="distilbert",
    architectures={
        "base": "DistilBertModel", "masked-lm": "DistilBertForMaskedLM",
        "sequence-classification": "DistilBertForSequenceClassification",
        "token-classification": "DistilBertForTokenClassification",
        "question-answering": "DistilBertForQuestionAnswering", "multiple-choice": "DistilBertForMultipleChoice",
    },
    config_fields=(
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "initializer_range",
        "pad_token_id", "classifier_dropout", "qa_dropout", "sinusoidal_positions", "tie_word_embeddings",
        "id2label", "label2id", "problem_type",
    ),
    config_renames={
        "dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
        "hidden_dim": "intermediate_size", "activation": "hidden_act", "dropout": "hidden_dropout_prob",
        "attention_dropout": "attention_probs_dropout_prob", "seq_classif_dropout": "classifier_dropout",
        "sinusoidal_pos_embds": "sinusoidal_positions",
    },
    config_defaults={
        "num_hidden_layers": 6, "classifier_dropout": 0.2, "qa_dropout": 0.1,
        "layer_norm_eps": 1e-12,  # fixed in transformers' DistilBERT, not a config field
        "type_vocab_size": 0,
    },
    sinusoidal_positions_field=True,
    pooler=False,
    token_types=False,
    sequence_head=_FIRST_TOKEN_RELU,
    choice_head=_FIRST_TOKEN_RELU,
    key_rules=(
        ("{p}transformer.layer.{n}.attention.q_lin.", "{p}encoder.layer.{n}.attention.self.query."),
        ("{p}transformer.layer.{n}.attention.k_lin.", "{p}encoder.layer.{n}.attention.self.key."),
        ("{p}transformer.layer.{n}.attention.v_lin.", "{p}encoder.layer.{n}.attention.self.value."),
        ("{p}transformer.layer.{n}.attention.out_lin.", "{p}encoder.layer.{n}.attention.output.dense."),
        ("{p}transformer.layer.{n}.sa_layer_norm.", "{p}encoder.layer.{n}.attention.output.LayerNorm."),
        ("{p}transformer.layer.{n}.ffn.lin1.", "{p}encoder.layer.{n}.intermediate.dense."),
        ("{p}transformer.layer.{n}.ffn.lin2.", "{p}encoder.layer.{n}.output.dense."),
        ("{p}transformer.layer.{n}.output_layer_norm.", "{p}encoder.layer.{n}.output.LayerNorm."),
        ("vocab_transform.", "cls.predictions.transform.dense."),
        ("vocab_layer_norm.", "cls.predictions.transform.LayerNorm."),
        ("vocab_projector.weight", "cls.predictions.decoder.weight"),
        ("vocab_projector.bias", "cls.predictions.bias"),
    ),
)
