"""RoBERTa (Liu et al. 2019) and the models shaped like it (XLM-RoBERTa, CamemBERT): BERT's encoder with
positions counted from `pad_token_id + 1`, one token type, byte-level BPE (SentencePiece for XLM-R), `lm_head`,
and a classifier on `<s>` with its own dense + tanh instead of the pooler."""

from .base import BERT_CONFIG_FIELDS, Family, SentenceHead

ROBERTA = Family(
    name="RoBERTa",
    model_types=("roberta", "xlm-roberta", "camembert"),
    prefix="roberta",
    architectures={
        "base": "RobertaModel", "masked-lm": "RobertaForMaskedLM",
        "sequence-classification": "RobertaForSequenceClassification",
        "token-classification": "RobertaForTokenClassification",
        "question-answering": "RobertaForQuestionAnswering", "multiple-choice": "RobertaForMultipleChoice",
    },
    config_fields=(*BERT_CONFIG_FIELDS, "bos_token_id", "eos_token_id"),
    config_defaults={"vocab_size": 50265, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
    position_offset=True,
    mlm_activation="gelu",  # fixed in transformers' RobertaLMHead, whatever hidden_act says
    sequence_head=SentenceHead("first-token", activation="tanh", dropout_before=True),
    key_rules=(
        ("lm_head.dense.", "cls.predictions.transform.dense."),
        ("lm_head.layer_norm.", "cls.predictions.transform.LayerNorm."),
        ("lm_head.decoder.", "cls.predictions.decoder."),
        ("lm_head.bias", "cls.predictions.bias"),
    ),
    head_key_rules={"sequence-classification": (
        ("classifier.dense.", "pre_classifier."),
        ("classifier.out_proj.", "classifier."),
    )},
    tokenizer="bpe",
)
