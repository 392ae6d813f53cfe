"""`EncoderConfig` (also `BertConfig`): an encoder's hyper-parameters, family-neutral.

Its field names are BERT's `config.json` names; each family (`families/`) translates its own config.json to and
from them, so a RoBERTa or DistilBERT directory reads into the same dataclass and is written back as it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import families
from .activations import ACTIVATIONS
from .errors import ConfigError

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# Sizes from Turc et al. 2019 ("Well-Read Students Learn Better") and the BERT paper; the
# feed-forward is 4x hidden and heads have 64 dimensions throughout.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "small": dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "medium": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    "large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096),
}

# Fields that describe how to run the model on this machine, not the model: never written to config.json.
_RUNTIME_FIELDS = ("attn_implementation", "gradient_checkpointing", "unpad", "num_labels", "extra")


@dataclass
class EncoderConfig:
    model_type: str = "bert"  # the family (families/): how config.json and weight names translate, head shapes
    vocab_size: int = 30522  # rows of the word-embedding matrix; must match the tokenizer's vocabulary
    hidden_size: int = 768  # width d of every token vector
    num_hidden_layers: int = 12  # encoder depth L
    num_attention_heads: int = 12  # heads per layer; hidden_size must divide evenly among them
    intermediate_size: int = 3072  # feed-forward inner width (4·d in the paper)
    hidden_act: str = "gelu"  # feed-forward and MLM-transform activation, by transformers' names
    hidden_dropout_prob: float = 0.1  # dropout after embeddings, attention output and feed-forward
    attention_probs_dropout_prob: float = 0.1  # dropout on attention probabilities
    max_position_embeddings: int = 512  # longest sequence the learned position table covers
    type_vocab_size: int = 2  # segment ids (sentence A / B); 0 = the model takes none (DistilBERT)
    embedding_size: int | None = None  # width of the embedding tables (ELECTRA); None = hidden_size
    sinusoidal_positions: bool = False  # DistilBERT's option: a fixed sinusoidal position table, never trained
    initializer_range: float = 0.02  # std of the normal init for matrices and embeddings
    layer_norm_eps: float = 1e-12  # BERT's LayerNorm epsilon (TF heritage); matters for parity
    pad_token_id: int | None = 0  # embedding row kept at zero and given no gradient
    position_embedding_type: str = "absolute"  # only learned absolute positions are BERT's
    classifier_dropout: float | None = None  # dropout before task heads; None = hidden_dropout_prob
    qa_dropout: float = 0.0  # dropout before the QA span scorer (DistilBERT's; BERT has none)
    tie_word_embeddings: bool = True  # MLM decoder shares the word-embedding matrix
    id2label: dict[int, str] | None = None  # task labels; set by fine-tuning, read by prediction
    label2id: dict[str, int] | None = None  # inverse of id2label (derived when absent)
    problem_type: str | None = None  # regression | single_label_classification | multi_label_classification
    # --- run-time settings (not part of the model; not saved) ---
    num_labels: int | None = None  # shorthand for id2label={0: "LABEL_0", ...}
    attn_implementation: str = "sdpa"  # attention kernel: "sdpa" (fast) or "eager" (returns maps)
    gradient_checkpointing: bool = False  # recompute layer activations in backward to save memory
    unpad: bool | None = None  # run the encoder on real tokens only; None = whenever a batch has padding (sdpa)
    extra: dict[str, Any] = field(default_factory=dict)  # config.json keys bertkit does not use; kept

    def __post_init__(self) -> None:
        self._validate()
        for name in ("id2label", "label2id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{name} must be an object ({'id -> label name' if name == 'id2label' else 'label name -> id'}), "
                                  f"got {type(value).__name__} {value!r:.60}")
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            if self.num_labels is not None and self.num_labels != len(self.id2label):
                raise ConfigError(f"num_labels={self.num_labels} disagrees with id2label, which has {len(self.id2label)} labels")
        else:
            self.id2label = {i: f"LABEL_{i}" for i in range(2 if self.num_labels is None else self.num_labels)}
        self.num_labels = len(self.id2label)
        if self.label2id is None:
            self.label2id = {label: i for i, label in self.id2label.items()}
        else:
            self.label2id = {str(k): int(v) for k, v in self.label2id.items()}

    def _validate(self) -> None:
        try:
            family = self.family
        except families.UnknownFamilyError as e:
            raise ConfigError(str(e)) from None
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size", "embedding_size"):
            value = getattr(self, name)
            if (value is None and name == "embedding_size") or (name == "type_vocab_size" and not family.token_types):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not family.token_types and self.type_vocab_size != 0:
            raise ConfigError(f"type_vocab_size={self.type_vocab_size!r}: {family.name} has no token types (0)")
        if self.sinusoidal_positions and not family.sinusoidal_positions_field:
            raise ConfigError(f"sinusoidal_positions is DistilBERT's option; {family.name} learns its positions")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"hidden_act={self.hidden_act!r} is not supported; choose one of {sorted(ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
        if not self.layer_norm_eps > 0:
            raise ConfigError(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"pad_token_id={self.pad_token_id} is outside the vocabulary (vocab_size={self.vocab_size})")
        if family.position_offset and self.pad_token_id is None:
            raise ConfigError(f"{family.name} counts positions from pad_token_id + 1, so it needs a pad_token_id")
        if self.max_length < 1:
            raise ConfigError(f"max_position_embeddings={self.max_position_embeddings} leaves no position for a token "
                              f"(positions start at pad_token_id + 1 = {self.position_offset})")
        if self.position_embedding_type != "absolute":
            raise ConfigError(
                f"position_embedding_type={self.position_embedding_type!r} is not supported; bertkit's BERT uses 'absolute'"
            )
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type={self.problem_type!r} must be one of {PROBLEM_TYPES} or null")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ConfigError(f"attn_implementation={self.attn_implementation!r} must be 'sdpa' or 'eager'")
        if self.unpad not in (None, True, False):
            raise ConfigError(f"unpad={self.unpad!r} must be true, false or null (automatic)")
        if self.num_labels is not None and self.num_labels < 1:
            raise ConfigError(f"num_labels must be at least 1, got {self.num_labels}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def family(self) -> families.Family:
        return families.family_of(self.model_type)

    @property
    def embedding_width(self) -> int:
        """E: the width of the embedding tables, projected to hidden_size when it differs."""
        return self.embedding_size if self.embedding_size is not None else self.hidden_size

    @property
    def position_offset(self) -> int:
        """The position id of a sequence's first token: 0, or pad_token_id + 1 where positions skip padding."""
        return self.pad_token_id + 1 if self.family.position_offset and self.pad_token_id is not None else 0

    @property
    def max_length(self) -> int:
        """The longest sequence the position table covers, in tokens."""
        return self.max_position_embeddings - self.position_offset

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> EncoderConfig:
        """A named size (tiny, mini, small, medium, base, large), with any field overridden."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
        try:  # the family's own defaults (DistilBERT's classifier dropout 0.2, ...) under the preset's sizes
            defaults = families.family_of(overrides.get("model_type", "bert")).config_defaults
        except families.UnknownFamilyError as e:
            raise ConfigError(str(e)) from None
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k: v for k, v in defaults.items() if k not in known}  # e.g. RoBERTa's bos / eos token ids
        fields = {k: v for k, v in defaults.items() if k in known}
        return cls(**{**fields, **PRESETS[name], **overrides, "extra": {**extra, **overrides.get("extra", {})}})

    def task_settings(self, task: str) -> dict[str, Any]:
        """What `bertkit finetune TASK` saved under config.json's "bertkit" key (without "task"), or {}
        for a model fine-tuned for another task or not by bertkit."""
        saved = dict(self.extra.get("bertkit") or {})
        return saved if saved.pop("task", None) == task else {}

    def replace(self, **changes: Any) -> EncoderConfig:
        """A copy with some fields changed (labels included: derived fields are recomputed)."""
        if "id2label" in changes or "num_labels" in changes:
            changes.setdefault("label2id", None)
            if "num_labels" in changes and "id2label" not in changes:
                changes["id2label"] = None
            if changes.get("id2label") is not None:
                changes.setdefault("num_labels", None)
        return dataclasses.replace(self, **changes)

    # --- JSON (Hugging Face's config.json) ---

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """A config.json's fields (any supported family's names) -> the config. A missing model_type is BERT's
        (configs older than the field); one no family reads is an error naming it."""
        model_type = data.get("model_type", "bert")
        try:
            data = families.family_of(model_type).read_config({**data, "model_type": model_type})
        except families.UnknownFamilyError as e:
            raise ConfigError(str(e)) from None
        known = {f.name for f in dataclasses.fields(cls)} - set(_RUNTIME_FIELDS)
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        num_labels = extra.pop("num_labels", None)  # derived from id2label; never kept (it would go stale)
        if num_labels is not None and kwargs.get("id2label") is None:  # some tools write only num_labels
            kwargs["num_labels"] = num_labels
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """config.json as the family's transformers class writes it."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _RUNTIME_FIELDS}
        data["id2label"] = {str(k): v for k, v in self.id2label.items()}  # JSON keys are strings
        data["embedding_size"] = self.embedding_width
        return {**self.extra, "model_type": self.model_type, **self.family.write_config(data)}

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> EncoderConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such config file") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not valid UTF-8 JSON ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:  # ValueError covers ConfigError and e.g. int("zero") label ids
            raise ConfigError(f"{path}: {e}") from None

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


BertConfig = EncoderConfig  # the name it had when bertkit was BERT only; the same class
