"""What a tokenizer directory says besides its vocabulary: the special tokens by role and whether the
model takes token types.

Special tokens by role (cls, sep, pad, mask, unk), each from the first place that names it:
``tokenizer_config.json``, then ``special_tokens_map.json`` (as transformers reads them; cls falls back on
bos and sep on eos, as in RoBERTa's files), then the tokenizer itself (cls / sep: the first / last special
of its single-text layout; unk: its model's unk token), then whichever of BERT's ("[CLS]") or RoBERTa's
("<s>") names the vocabulary holds.

Token types: transformers returns ``token_type_ids`` only when the tokenizer class lists them in its
``model_input_names``. RoBERTa, XLM-R and DistilBERT take none; BERT, ELECTRA, ALBERT and DeBERTa do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("cls", "sep", "pad", "mask", "unk")
# Per role, the names BERT-style and RoBERTa-style vocabularies use, tried in this order.
_CANDIDATES = {
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "pad": ("[PAD]", "<pad>"),
    "mask": ("[MASK]", "<mask>"),
    "unk": ("[UNK]", "<unk>"),
}
_ALIASES = {"cls": "bos", "sep": "eos"}

# Tokenizer classes (transformers' names, without "Fast") and model types whose tokenizers return no
# token_type_ids: their model_input_names are ["input_ids", "attention_mask"].
_CLASSES_WITHOUT_TOKEN_TYPES = frozenset({
    "RobertaTokenizer", "XLMRobertaTokenizer", "DistilBertTokenizer", "CamembertTokenizer", "LongformerTokenizer",
    "BartTokenizer", "GPT2Tokenizer", "MPNetTokenizer",
})
_MODEL_TYPES_WITHOUT_TOKEN_TYPES = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "distilbert", "camembert", "longformer", "bart", "gpt2", "mpnet",
})


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens by role: [CLS]/<s> starts a text, [SEP]/</s> ends one, and so on."""

    cls: str
    sep: str
    pad: str
    mask: str
    unk: str

    def as_dict(self) -> dict[str, str]:
        return {role: getattr(self, role) for role in ROLES}


def token_name(value: Any) -> str | None:
    """A token as the config files write it: a str, or an AddedToken dict with "content"."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def resolve_specials(
    vocab: Mapping[str, int],
    configs: tuple[Mapping[str, Any], ...],
    from_tokenizer: Mapping[str, str | None],
    source: object,
) -> SpecialTokens:
    """Each role's token (see the module docstring); `configs` are tokenizer_config.json and then
    special_tokens_map.json, `from_tokenizer` what the tokenizer's own layout and model say."""
    names: dict[str, str] = {}
    for role in ROLES:
        keys = [f"{role}_token"] + ([f"{_ALIASES[role]}_token"] if role in _ALIASES else [])
        named = [token_name(config.get(key)) for key in keys for config in configs]
        candidates = [n for n in (*named, from_tokenizer.get(role)) if n] or [c for c in _CANDIDATES[role] if c in vocab]
        if not candidates:
            raise ValueError(f"{source}: no {role} token: neither the config files name one ({role}_token) nor does "
                             f"the vocabulary hold {' or '.join(_CANDIDATES[role])}")
        if candidates[0] not in vocab:
            raise ValueError(f"{source}: the {role} token {candidates[0]!r} is not in the vocabulary")
        names[role] = candidates[0]
    return SpecialTokens(**names)


def has_token_types(tokenizer_config: Mapping[str, Any], model_config: Mapping[str, Any], default: bool) -> bool:
    """Whether the tokenizer returns token_type_ids: tokenizer_config.json's model_input_names, else its
    tokenizer_class, else config.json's model_type, else `default`."""
    names = tokenizer_config.get("model_input_names")
    if isinstance(names, list):
        return "token_type_ids" in names
    tokenizer_class = tokenizer_config.get("tokenizer_class")
    if isinstance(tokenizer_class, str) and tokenizer_class not in ("PreTrainedTokenizerFast", "TokenizersBackend"):
        return tokenizer_class.removesuffix("Fast") not in _CLASSES_WITHOUT_TOKEN_TYPES
    model_type = model_config.get("model_type")
    if isinstance(model_type, str):
        return model_type not in _MODEL_TYPES_WITHOUT_TOKEN_TYPES
    return default
