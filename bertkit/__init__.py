"""bertkit: BERT and its family (RoBERTa, DistilBERT, ELECTRA) end to end, with Hugging Face-format checkpoints.

    from bertkit import AutoModel, Tokenizer
    model = AutoModel.from_pretrained("path/to/model")      # the family from config.json's model_type
    tokenizer = Tokenizer.from_pretrained("path/to/model")
"""

from . import auto, model
from .auto import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)
from .checkpoint import LoadReport
from .config import PRESETS, BertConfig, EncoderConfig
from .errors import BertkitError, CheckpointError, ConfigError, UsageError
from .heads import (
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    EncoderForMaskedLM,
    EncoderForMultipleChoice,
    EncoderForPreTraining,
    EncoderForQuestionAnswering,
    EncoderForSequenceClassification,
    EncoderForTokenClassification,
    EncoderForTokenDiscrimination,
)
from .model import BertModel, EncoderModel
from .outputs import EncoderOutput, LogitsOutput, PreTrainingOutput, QuestionAnsweringOutput
from .tokenizer import BatchEncoding, Tokenizer

__version__ = "0.1.0"

__all__ = [
    "AutoModel",
    "AutoModelForMaskedLM",
    "AutoModelForMultipleChoice",
    "AutoModelForPreTraining",
    "AutoModelForQuestionAnswering",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "BatchEncoding",
    "BertConfig",
    "BertForMaskedLM",
    "BertForMultipleChoice",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "BertkitError",
    "CheckpointError",
    "ConfigError",
    "EncoderConfig",
    "EncoderForMaskedLM",
    "EncoderForMultipleChoice",
    "EncoderForPreTraining",
    "EncoderForQuestionAnswering",
    "EncoderForSequenceClassification",
    "EncoderForTokenClassification",
    "EncoderForTokenDiscrimination",
    "EncoderModel",
    "EncoderOutput",
    "LoadReport",
    "LogitsOutput",
    "PRESETS",
    "PreTrainingOutput",
    "QuestionAnsweringOutput",
    "Tokenizer",
    "UsageError",
]
