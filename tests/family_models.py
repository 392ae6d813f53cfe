"""Tiny models of every family, for the tests of what runs a model whatever its family (export, INT8, compile,
FLOPs): configs as transformers writes them, read by `EncoderConfig.from_dict`, and random task models saved as
a fine-tuned directory would be."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from bertkit.auto import MODEL_FOR_HEAD
from bertkit.config import EncoderConfig
from bertkit.families import HEAD_KINDS, family_of
from bertkit.pretrained import PreTrainedModel

transformers = pytest.importorskip("transformers")

_SIZES = dict(num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
# transformers configs by a short name; each is a family (or a variant of one) that runs differently.
FAMILY_CONFIGS: dict[str, Callable[..., Any]] = {
    "bert": lambda **kw: transformers.BertConfig(**_SIZES, hidden_size=32, intermediate_size=37, **kw),
    # One token type, positions counted from pad_token_id + 1 (= 2) over the non-padding ids.
    "roberta": lambda **kw: transformers.RobertaConfig(**_SIZES, hidden_size=32, intermediate_size=37, type_vocab_size=1,
                                                       pad_token_id=1, bos_token_id=0, eos_token_id=2, **kw),
    "xlm-roberta": lambda **kw: transformers.XLMRobertaConfig(**_SIZES, hidden_size=32, intermediate_size=37,
                                                              type_vocab_size=1, pad_token_id=1, **kw),
    # No token types, no pooler; classifiers through pre_classifier + ReLU.
    "distilbert": lambda **kw: transformers.DistilBertConfig(n_layers=2, n_heads=4, dim=32, hidden_dim=37,
                                                             max_position_embeddings=64, **kw),
    # Embeddings of width 16 projected to the hidden 32 (embeddings_project), no pooler, a discriminator head.
    "electra": lambda **kw: transformers.ElectraConfig(**_SIZES, embedding_size=16, hidden_size=32, intermediate_size=37,
                                                       **kw),
}
NON_BERT = ("roberta", "distilbert", "electra")  # one of each family other than BERT


def family_config(name: str, vocab_size: int = 99, **overrides: Any) -> EncoderConfig:
    """The family's tiny config under bertkit's names; `overrides` in bertkit's names too."""
    config = EncoderConfig.from_dict(FAMILY_CONFIGS[name](vocab_size=vocab_size).to_dict())
    return config.replace(**overrides) if overrides else config


def heads_of(name: str) -> list[str]:
    """The head kinds the family has, in HEAD_KINDS order."""
    architectures = family_of(FAMILY_CONFIGS[name]().model_type).architectures
    return [head for head in HEAD_KINDS if head in architectures]


def family_heads(names: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(name, head) for name in names for head in heads_of(name)]


def build(name: str, head: str, seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A random `head` model of the family, in eval mode."""
    torch.manual_seed(seed)
    return MODEL_FOR_HEAD[head](family_config(name, **overrides)).eval()


def save(name: str, head: str, directory: Path, tokenizer: Any, seed: int = 0, **overrides: Any) -> Path:
    """`build`, saved with `tokenizer` (its vocabulary size is the model's) as a fine-tuned directory is."""
    build(name, head, seed, vocab_size=tokenizer.vocab_size, **overrides).save_pretrained(directory, tokenizer=tokenizer)
    return directory
