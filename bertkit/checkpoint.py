"""Hugging Face-format model directories: read and write weights, translate key names.

A model directory holds `config.json` and `model.safetensors` (or a sharded safetensors index, or a
legacy `pytorch_model.bin`, which is only ever read with `torch.load(weights_only=True)`, so no
pickled code runs). Nothing here touches the network.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence, TypeVar

import torch
from safetensors import SafetensorError
from torch.overrides import TorchFunctionMode
from safetensors.torch import load_file, save_file

from .config import EncoderConfig
from .errors import CheckpointError
from .files import atomic_directory

if TYPE_CHECKING:
    from .tokenizer import Tokenizer


class CheckpointModel(Protocol):
    """What loading and saving need of a model (every `PreTrainedModel` is one; naming it here would make the two
    modules import each other)."""

    config: EncoderConfig
    head_kind: str
    load_report: LoadReport | None

    @property
    def base_model_prefix(self) -> str: ...
    def tied_parameter_names(self) -> list[str]: ...
    def tie_weights(self) -> None: ...
    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = ..., assign: bool = ...) -> Any: ...
    def parameters(self) -> Iterator[torch.nn.Parameter]: ...


M = TypeVar("M", bound=CheckpointModel)

logger = logging.getLogger("bertkit")

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
PYTORCH_NAME = "pytorch_model.bin"
# Weight files a new save makes stale; everything else a user keeps in the directory survives a save.
_WEIGHT_FILES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, PYTORCH_NAME, "pytorch_model.bin.index.json")
_WEIGHT_SHARD = re.compile(r"(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)")  # shards an index listed


def _is_stale_weight_file(name: str) -> bool:
    return name in _WEIGHT_FILES or _WEIGHT_SHARD.fullmatch(name) is not None

# Buffers older transformers versions saved; they are derived, never learned.
_DERIVED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


class SavesPretrained(Protocol):
    def save_pretrained(self, directory: str | os.PathLike) -> None: ...


@dataclass
class LoadReport:
    """What loading matched: keys the model wanted but the file lacked, and keys it left unused."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def model_directory(directory: str | os.PathLike) -> Path:
    path = Path(directory).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such model directory (bertkit reads local directories only and never downloads)"
        )
    if not path.is_dir():
        raise NotADirectoryError(f"{path}: expected a model directory holding config.json and weights")
    return path


def read_state_dict(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a model directory, from safetensors (preferred) or a safely loaded .bin."""
    path = model_directory(directory)
    if (path / SAFETENSORS_NAME).is_file():
        return _read_safetensors(path / SAFETENSORS_NAME)
    if (path / SAFETENSORS_INDEX_NAME).is_file():
        index = path / SAFETENSORS_INDEX_NAME
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from None
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(_read_safetensors(path / shard))
        return state
    if (path / PYTORCH_NAME).is_file():
        return _read_torch_bin(path / PYTORCH_NAME)
    raise FileNotFoundError(f"{path}: no weights found (looked for {SAFETENSORS_NAME}, {SAFETENSORS_INDEX_NAME}, {PYTORCH_NAME})")


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise FileNotFoundError(f"{file}: weight file is missing")
    try:
        return load_file(file, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file, perhaps truncated or corrupt ({e})") from None


def _read_torch_bin(file: Path) -> dict[str, torch.Tensor]:
    state = safe_torch_load(file, "PyTorch weight file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{file}: expected a dict of tensors (a state dict), got {type(state).__name__}")
    return state


def safe_torch_load(file: Path, what: str, allowed: Sequence[type] = ()) -> Any:
    """`torch.load(weights_only=True)`, with `allowed` classes beside tensors and plain containers: the unpickler
    only rebuilds those, so a payload (os.system, eval, ...) hidden in the file is refused, never executed.
    Errors name the file and say whether it was refused or is unreadable (`what`: the kind of file, for them)."""
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _refusal_reason(str(e))
        # Not a refusal of a class: the pickle stream itself is broken, or holds opcodes no torch.save writes.
        if "Weights only load failed" not in str(e) or reason.startswith("Unsupported operand"):
            raise CheckpointError(f"{file}: not a readable {what}, perhaps truncated or corrupt ({reason})") from None
        besides = "".join(f", {cls.__module__}.{cls.__qualname__}" for cls in allowed)
        raise CheckpointError(
            f"{file}: refused to load; the file asks to run or build something other than tensors, plain "
            f"containers{besides} (bertkit loads a {what} with weights_only=True). Details: {reason}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{file}: not a readable {what}, perhaps truncated or corrupt ({e})") from None


def _refusal_reason(message: str) -> str:
    """The part of torch's weights-only error that says what was refused (not its advice to load anyway)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", message)  # torch bolds a phrase with terminal codes
    _, found, after = text.partition("WeightsUnpickler error:")
    candidates = after.splitlines() if found else [line for line in text.splitlines() if "GLOBAL" in line]
    for line in [*candidates, *text.splitlines()]:
        if line.strip():
            return line.strip()
    return "no details"


def rename_legacy_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Names older transformers or TF conversions used -> today's names."""
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith(_DERIVED_BUFFERS):
            continue
        if "LayerNorm" in key:
            key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if key.endswith("predictions.decoder.bias"):  # transformers ties it to predictions.bias
            key = key.replace("predictions.decoder.bias", "predictions.bias")
            if key in state:
                continue
        renamed[key] = tensor
    return renamed


def _align_prefix(state: dict[str, torch.Tensor], model_keys: set[str], prefix: str) -> dict[str, torch.Tensor]:
    """Add or strip the encoder prefix (`bert.`) so a bare encoder loads into a head and vice versa."""
    model_prefixed = any(k.startswith(prefix) for k in model_keys)
    file_prefixed = any(k.startswith(prefix) for k in state)
    if model_prefixed and not file_prefixed:
        return {(prefix + k if prefix + k in model_keys else k): v for k, v in state.items()}
    if file_prefixed and not model_prefixed:
        return {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def _translated(model: CheckpointModel, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` (a transformers file's names, for the model's family) under the model's key names, tied aliases
    dropped."""
    tied = set(model.tied_parameter_names())
    state = model.config.family.to_bertkit_keys(state, model.head_kind)
    state = _align_prefix(rename_legacy_keys(state), set(model.state_dict()), model.base_model_prefix + ".")
    return {k: v for k, v in state.items() if k not in tied}


def load_weights(model: CheckpointModel, state: dict[str, torch.Tensor], source: str, assign: bool = False) -> LoadReport:
    """Copy `state` into `model` after translating names; refuse any shape mismatch. With `assign`, the
    model takes the tensors themselves (cast to its dtypes) instead of copying into its own."""
    expected = model.state_dict()
    tied = set(model.tied_parameter_names())
    state = _translated(model, state)
    for key, tensor in state.items():
        if key in expected and tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{source}: tensor {key!r} has shape {tuple(tensor.shape)} in the checkpoint but "
                f"{tuple(expected[key].shape)} in the model (does config.json match the weights?)"
            )
    if assign:
        state = {k: v.to(expected[k].dtype) if k in expected else v for k, v in state.items()}
    _refuse_encoder_mismatch(model.base_model_prefix, [k for k in expected if k not in tied], list(state), source)
    result = model.load_state_dict(state, strict=False, assign=assign)
    report = LoadReport(missing=[k for k in result.missing_keys if k not in tied], unexpected=list(result.unexpected_keys))
    if report.missing:
        logger.warning(
            "%s: %d weights not in the checkpoint were newly initialised (train them before use): %s",
            source, len(report.missing), _abbreviate(report.missing),
        )
    if report.unexpected:
        logger.info("%s: %d checkpoint weights unused by %s: %s", source, len(report.unexpected),
                    type(model).__name__, _abbreviate(report.unexpected))
    return report


_LAYER_INDEX = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def _refuse_encoder_mismatch(prefix: str, model_keys: list[str], file_keys: list[str], source: str) -> None:
    """A file whose encoder is not the one config.json describes (more or fewer layers, a part it lacks or has
    extra) is refused, naming the first differences. Only a task head may be new (initialised, with a warning) or
    left over (another head's), and the pooler, which bare encoders are often saved without. Keys: the model's
    names (prefixed by `prefix` in a task model), tied aliases left out."""

    def encoder(keys: list[str]) -> list[str]:
        return [k for k in keys if k.removeprefix(f"{prefix}.").startswith(("embeddings.", "embeddings_project.",
                                                                              "encoder."))]

    ours, theirs = encoder(model_keys), encoder(file_keys)
    in_ours, in_theirs = set(ours), set(theirs)
    lacking, extra = [k for k in ours if k not in in_theirs], [k for k in theirs if k not in in_ours]
    if not lacking and not extra:
        return
    depth = ""
    deepest = {name: max((int(m.group(1)) for k in keys for m in [_LAYER_INDEX.search(k)] if m), default=None)
               for name, keys in (("config", ours), ("file", theirs))}
    if None not in deepest.values() and deepest["config"] != deepest["file"]:
        depth = (f"; config.json has num_hidden_layers={deepest['config'] + 1}, the weights hold "
                 f"{deepest['file'] + 1} layers")
    parts = [f"the weights have {len(extra)} encoder tensors the model lacks ({_abbreviate(extra, 3)})" if extra else "",
             f"the model has {len(lacking)} encoder tensors the weights lack ({_abbreviate(lacking, 3)})" if lacking else ""]
    raise CheckpointError(f"{source}: config.json does not match the weights: {'; '.join(p for p in parts if p)}{depth}")


class _NoRandomFill(TorchFunctionMode):
    """Skips normal_ while a model is built on the meta device, where there is nothing to fill: torch's meta
    version of normal_ imports torch._dynamo, 2 s of a command's start, to draw no numbers at all."""

    def __torch_function__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in (torch.nn.init.normal_, torch.Tensor.normal_):
            tensor = args[0] if args else kwargs["tensor"]  # init.normal_ passes its tensor by name
            if tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


def build_loaded(build: Callable[[], M], state: dict[str, torch.Tensor], source: str) -> M:
    """The model `build` makes, holding `state`, with `load_report` set.

    When the file holds every weight, the model is built on the meta device and takes the file's tensors:
    no random initialisation to throw away (for a small model, half a second of every command's start).
    When some are missing (a new task head), it is built and initialised as always, so new weights come
    from the same random draws whatever the file holds."""
    with torch.device("meta"), _NoRandomFill():
        skeleton = build()
    if set(skeleton.state_dict()) - set(skeleton.tied_parameter_names()) <= set(_translated(skeleton, state)):
        skeleton.load_report = load_weights(skeleton, state, source, assign=True)
        skeleton.tie_weights()  # assignment replaced the shared parameter on one side only
        return skeleton
    model = build()
    model.load_report = load_weights(model, state, source)
    return model


def _abbreviate(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_config(directory: str | os.PathLike, **overrides: Any) -> EncoderConfig:
    config = EncoderConfig.from_json_file(model_directory(directory) / CONFIG_NAME)
    return config.replace(**overrides) if overrides else config


def check_max_length(directory: str | os.PathLike, max_length: int) -> None:
    """Refuse, before any file is written, inputs longer than the model's position table."""
    config = load_config(directory)
    if max_length > config.max_length:
        room = f" ({config.max_length} tokens: positions start at {config.position_offset})" if config.position_offset else ""
        raise ValueError(f"max_length={max_length} exceeds the model's max_position_embeddings="
                         f"{config.max_position_embeddings}{room}")


def save_model(
    model: CheckpointModel, directory: str | os.PathLike, tokenizer: SavesPretrained | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) as one atomic directory swap.
    `state_dict` (default: the model's own) is what gets written: a sharded model's gathered weights."""
    tied = set(model.tied_parameter_names())
    state = model.state_dict() if state_dict is None else state_dict
    family = model.config.family
    tensors = family.to_transformers_keys(
        {k: v.detach().contiguous().cpu() for k, v in state.items() if k not in tied}, model.head_kind)
    config = model.config.to_dict()
    config["architectures"] = [family.architecture(model.head_kind)]
    config["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    if "torch_dtype" in config:  # older transformers' name, kept from a loaded config.json: keep it truthful
        config["torch_dtype"] = config["dtype"]
    with atomic_directory(directory, keep_old=lambda name: not _is_stale_weight_file(name)) as staging:
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_file(tensors, staging / SAFETENSORS_NAME, metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    return Path(directory)


def model_tokenizer(model_dir: str | os.PathLike) -> Tokenizer:
    """The tokenizer of a model directory, giving no token types where the model's family takes none (a DistilBERT
    directory whose tokenizer files are BERT's); elsewhere the tokenizer files decide, as in transformers."""
    from .tokenizer import Tokenizer

    if not (Path(model_dir) / CONFIG_NAME).is_file():
        return Tokenizer.from_pretrained(model_dir)
    config = load_config(model_dir)
    tokenizer = Tokenizer.from_pretrained(model_dir, token_type_ids=None if config.family.token_types else False)
    check_tokenizer_fits(tokenizer, config, Path(model_dir))
    return tokenizer


# A tokenizer with fewer than this share of the model's rows most likely belongs to another model.
_FEW_TOKENS = 0.5


def check_tokenizer_fits(tokenizer: Tokenizer, config: EncoderConfig, source: Path) -> None:
    """Refuse a tokenizer whose ids run past the model's embedding rows (an IndexError when a rare token turns
    up); warn about one that uses far fewer of them (most likely another model's vocabulary)."""
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(f"{source}: the tokenizer has {tokenizer.vocab_size} tokens but the model's "
                              f"vocab_size is {config.vocab_size} (config.json); they belong to different models")
    if tokenizer.vocab_size < _FEW_TOKENS * config.vocab_size:
        logger.warning("%s: the tokenizer has %d tokens, the model %d embedding rows: is it this model's tokenizer?",
                       source, tokenizer.vocab_size, config.vocab_size)
