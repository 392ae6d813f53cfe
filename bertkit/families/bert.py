"""BERT (Devlin et al. 2019): bertkit's own names are BERT's, so nothing needs translating."""

from .base import Family

BERT = Family(
    name="BERT",
    model_types=("bert",),
    prefix="bert",
    architectures={
        "base": "BertModel", "masked-lm": "BertForMaskedLM", "pretraining": "BertForPreTraining",
        "sequence-classification": "BertForSequenceClassification",
        "token-classification": "BertForTokenClassification", "question-answering": "BertForQuestionAnswering",
        "multiple-choice": "BertForMultipleChoice",
    },
)
