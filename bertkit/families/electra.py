"""ELECTRA (Clark et al. 2020): BERT's encoder on embeddings of width `embedding_size`, projected to the hidden
size when they differ; no pooler; the discriminator (a replaced-or-not logit per token) and the generator (a
masked LM whose transform narrows to the embedding width); classifiers on [CLS] with dense + gelu."""

from .base import BERT_CONFIG_FIELDS, Family, SentenceHead

ELECTRA = Family(
    name="ELECTRA",
    model_types=("electra",),
    prefix="electra",
    architectures={
        "base": "ElectraModel", "masked-lm": "ElectraForMaskedLM", "discriminator": "ElectraForPreTraining",
        "sequence-classification": "ElectraForSequenceClassification",
        "token-classification": "ElectraForTokenClassification",
        "question-answering": "ElectraForQuestionAnswering", "multiple-choice": "ElectraForMultipleChoice",
    },
    config_fields=(*BERT_CONFIG_FIELDS, "embedding_size"),
    # transformers' ElectraConfig defaults are ELECTRA-small's discriminator.
    config_defaults={"embedding_size": 128, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024},
    pooler=False,
    mlm_activation="gelu",  # fixed in transformers' ElectraGeneratorPredictions
    sequence_head=SentenceHead("first-token", activation="gelu", dropout_before=True),
    # ElectraSequenceSummary: h_0 -> summary (dense) -> gelu -> dropout (summary_* config fields, as published).
    choice_head=SentenceHead("first-token", activation="gelu", dropout_before=False),
    key_rules=(
        ("generator_predictions.dense.", "cls.predictions.transform.dense."),
        ("generator_predictions.LayerNorm.", "cls.predictions.transform.LayerNorm."),
        ("generator_lm_head.weight", "cls.predictions.decoder.weight"),
        ("generator_lm_head.bias", "cls.predictions.bias"),
    ),
    head_key_rules={
        "sequence-classification": (("classifier.dense.", "pre_classifier."), ("classifier.out_proj.", "classifier.")),
        "multiple-choice": (("sequence_summary.summary.", "pre_classifier."),),
    },
)
