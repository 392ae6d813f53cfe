"""bertkit: BERT end to end, with Hugging Face-format checkpoints.

    from bertkit import BertModel, Tokenizer
    model = BertModel.from_pretrained("path/to/model")
    tokenizer = Tokenizer.from_pretrained("path/to/model")
"""

from .checkpoint import CheckpointError, LoadReport
from .config import PRESETS, BertConfig, ConfigError
from .heads import (
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
)
from .model import BertModel
from .outputs import EncoderOutput, LogitsOutput, PreTrainingOutput, QuestionAnsweringOutput
from .tokenizer import BatchEncoding, Tokenizer

__version__ = "0.1.0"

__all__ = [
    "BatchEncoding",
    "BertConfig",
    "BertForMaskedLM",
    "BertForMultipleChoice",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "CheckpointError",
    "ConfigError",
    "EncoderOutput",
    "LoadReport",
    "LogitsOutput",
    "PRESETS",
    "PreTrainingOutput",
    "QuestionAnsweringOutput",
    "Tokenizer",
]
