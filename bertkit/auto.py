"""`AutoModel...`: transformers' Auto names, choosing the family from config.json's `model_type`.

bertkit's task models are one class per task for every family, so an Auto class only has to read the config,
check that the family has the head, and (for pretraining) pick the family's pretraining objective.
"""

from __future__ import annotations

import os
from typing import Any

from . import checkpoint
from .families.base import PRETRAINING_KINDS
from .heads import (EncoderForMaskedLM, EncoderForMultipleChoice, EncoderForPreTraining,
                    EncoderForQuestionAnswering, EncoderForSequenceClassification, EncoderForTokenClassification,
                    EncoderForTokenDiscrimination)
from .model import EncoderModel
from .pretrained import PreTrainedModel

MODEL_FOR_HEAD: dict[str, type[PreTrainedModel]] = {
    cls.head_kind: cls for cls in (EncoderModel, EncoderForMaskedLM, EncoderForPreTraining,
                                   EncoderForTokenDiscrimination, EncoderForSequenceClassification,
                                   EncoderForTokenClassification, EncoderForQuestionAnswering, EncoderForMultipleChoice)
}


class _Auto:
    head_kind: str

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} is built with {type(self).__name__}.from_pretrained(directory)")

    @classmethod
    def model_class(cls, directory: str | os.PathLike) -> type[PreTrainedModel]:
        return MODEL_FOR_HEAD[cls.head_kind]

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs: Any) -> PreTrainedModel:
        """The directory's model with this head, for its family (see `PreTrainedModel.from_pretrained`)."""
        return cls.model_class(directory).from_pretrained(directory, **kwargs)


class AutoModel(_Auto):
    head_kind = "base"


class AutoModelForMaskedLM(_Auto):
    head_kind = "masked-lm"


class AutoModelForPreTraining(_Auto):
    """BERT: masked LM + next-sentence prediction; ELECTRA: the discriminator; RoBERTa, DistilBERT: the masked LM."""

    head_kind = "pretraining"

    @classmethod
    def model_class(cls, directory: str | os.PathLike) -> type[PreTrainedModel]:
        family = checkpoint.load_config(directory).family
        return MODEL_FOR_HEAD[next(kind for kind in PRETRAINING_KINDS if kind in family.architectures)]


class AutoModelForSequenceClassification(_Auto):
    head_kind = "sequence-classification"


class AutoModelForTokenClassification(_Auto):
    head_kind = "token-classification"


class AutoModelForQuestionAnswering(_Auto):
    head_kind = "question-answering"


class AutoModelForMultipleChoice(_Auto):
    head_kind = "multiple-choice"


__all__ = ["AutoModel", "AutoModelForMaskedLM", "AutoModelForMultipleChoice", "AutoModelForPreTraining",
           "AutoModelForQuestionAnswering", "AutoModelForSequenceClassification", "AutoModelForTokenClassification",
           "MODEL_FOR_HEAD"]
