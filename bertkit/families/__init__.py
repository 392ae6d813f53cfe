"""The model families bertkit runs, by config.json `model_type`. Adding one: a file of data beside these."""

from __future__ import annotations

from .base import HEAD_KINDS, Family, SentenceHead
from .bert import BERT
from .distilbert import DISTILBERT
from .electra import ELECTRA
from .roberta import ROBERTA

FAMILIES: tuple[Family, ...] = (BERT, ROBERTA, DISTILBERT, ELECTRA)
_BY_MODEL_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}
SUPPORTED_MODEL_TYPES = tuple(_BY_MODEL_TYPE)


class UnknownFamilyError(ValueError):
    """A config.json `model_type` that no family reads."""


def family_of(model_type: str) -> Family:
    """The family that reads `model_type`; never a silent BERT for one it does not know."""
    try:
        return _BY_MODEL_TYPE[model_type]
    except KeyError:
        raise UnknownFamilyError(
            f"model_type {model_type!r} is not supported; bertkit runs {', '.join(SUPPORTED_MODEL_TYPES)}"
        ) from None


__all__ = ["FAMILIES", "HEAD_KINDS", "SUPPORTED_MODEL_TYPES", "Family", "SentenceHead", "UnknownFamilyError",
           "family_of"]
