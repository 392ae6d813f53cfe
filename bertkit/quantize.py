"""INT8 dynamic quantisation, through ONNX Runtime or PyTorch, and the check that the result still works.

- ONNX Runtime (`quantize_onnx`): `onnxruntime.quantization.quantize_dynamic` on an exported graph. The
  weights of MatMul/Gemm and the embedding tables (Gather) are stored as int8; activations are quantized
  on the fly at each call. Weight type (signed or unsigned) and per-channel scales are options.
- PyTorch (`quantize_torch`): `torch.ao.quantization.quantize_dynamic` on the nn.Linear layers, the
  same scheme for CPU inference from Python (embeddings stay fp32).

Both can keep named groups of layers in fp32 (`GROUPS`): "embeddings" (with ELECTRA's projection to the
hidden size), "layer.N" (N < 0 counts from the last layer), "pooler", "classifier" (the task head: classifier
and pre_classifier, qa_outputs, the MLM head and NSP, ELECTRA's discriminator). The names are the same for every
family: bertkit's modules carry BERT's names under the family's prefix (`roberta.encoder.layer.3`), so a group is
found by the module path below the prefix, in a PyTorch module's name and in an ONNX node's alike.

INT8 can fail without an error: one outlier weight or activation sets a scale that rounds the rest
to zero, and the outputs turn near-constant (onnxruntime's issues report it for MiniLM).
`compare_outputs` measures how far INT8 outputs are from fp32's and whether they collapsed.
"""

from __future__ import annotations

import logging
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .onnx_backend import ExportError, require

GROUPS = "embeddings, layer.N (layer.-1 = the last), pooler, classifier"
_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")
_EMBEDDING_MODULES = ("embeddings", "embeddings_project")  # the tables; ELECTRA's E -> H projection
# The task heads' modules, top-level attributes of a task model (heads.py). An ONNX node carries the path of the
# modules that were *called*: the MLM head's are `predictions.*` and `seq_relationship`, as `cls` itself never runs.
_HEAD_MODULES = ("classifier", "pre_classifier", "qa_outputs", "cls", "predictions", "seq_relationship",
                 "discriminator_predictions")
# Linear layers whose weight the model reads itself rather than calling them (the MLM decoder: F.linear with the
# tied word embeddings and a separate bias), which a quantized module would break; they stay fp32 in PyTorch.
_READ_BY_WEIGHT = ("cls.predictions.decoder",)
WEIGHT_TYPES = {"qint8": "QInt8", "quint8": "QUInt8"}  # --weight-type -> onnxruntime.quantization.QuantType

# A quantized output whose spread across inputs is under this fraction of fp32's has collapsed.
COLLAPSE_RATIO = 0.1


@dataclass(frozen=True)
class Int8Settings:
    weight_type: str = "qint8"  # int8 weights, signed (qint8) or unsigned (quint8); activations are uint8
    # One scale per output channel rather than one per tensor: same size and speed, and on MiniLM fine-tuned for
    # sentiment it kept dev accuracy within 0.2 points where per-tensor scales lost 0.8 (ONNX Runtime) and 1.6 (PyTorch).
    per_channel: bool = True
    keep_fp32: tuple[str, ...] = ()  # groups left unquantized (see GROUPS)

    def __post_init__(self) -> None:
        if self.weight_type not in WEIGHT_TYPES:
            raise ExportError(f"weight type {self.weight_type!r} must be one of {', '.join(WEIGHT_TYPES)}")

    def describe(self) -> dict[str, object]:
        return {"weight_type": self.weight_type, "per_channel": self.per_channel, "keep_fp32": list(self.keep_fp32)}


def group_of(name: str) -> str | None:
    """The group of a dotted module path, or of an ONNX node name turned into one
    ("roberta.encoder.layer.3.output.dense." -> "layer.3", "electra.embeddings_project." -> "embeddings",
    "pre_classifier.Gemm" -> "classifier"); None for what belongs to no group."""
    layer = _LAYER.search(name)
    if layer:
        return f"layer.{layer.group(1)}"
    parts = name.split(".")
    if any(part in _EMBEDDING_MODULES for part in parts):
        return "embeddings"
    if "pooler" in parts:
        return "pooler"
    if parts[0] in _HEAD_MODULES:
        return "classifier"
    return None


def resolve_groups(names: Sequence[str], num_layers: int, available: set[str]) -> list[str]:
    """--keep-fp32 names -> groups of this model ("head" is another name for "classifier"; negative layer
    numbers count from the end); a name the model does not have is refused."""
    resolved = []
    for raw in names:
        name = "classifier" if raw == "head" else raw
        layer = re.fullmatch(r"layer\.(-?\d+)", name)
        if layer and -num_layers <= int(layer.group(1)) < num_layers:
            name = f"layer.{int(layer.group(1)) % num_layers}"
        if name not in available:
            raise ExportError(f"--keep-fp32 {raw!r}: this model has no such quantizable group "
                              f"(it has: {', '.join(sorted(available, key=_group_order))})")
        resolved.append(name)
    return resolved


def _group_order(group: str) -> tuple[int, int]:
    """embeddings, layer.0, layer.1, ..., pooler, classifier: the order data flows through them."""
    if group.startswith("layer."):
        return 1, int(group.split(".")[1])
    return {"embeddings": 0, "pooler": 2, "classifier": 3}[group], 0


def sorted_groups(groups: set[str]) -> list[str]:
    return sorted(groups, key=_group_order)


# --------------------------------------------------------------------------- ONNX Runtime

def onnx_groups(path: Path) -> dict[str, list[str]]:
    """Node names per group. TorchScript's exporter names nodes by module path ("/model/bert/encoder/layer.3/
    output/dense/MatMul"), which is how a group finds its nodes."""
    onnx = require("onnx")
    groups: dict[str, list[str]] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        group = group_of(node.name.removeprefix("/model/").replace("/", "."))
        if group is not None:
            # The quantizer first rewrites each Gemm (a Linear on (B, H): pooler, classifier) as MatMul + Add,
            # named "<Gemm>_MatMul", and only then reads the nodes to exclude.
            names = [node.name, f"{node.name}_MatMul"] if node.op_type == "Gemm" else [node.name]
            groups.setdefault(group, []).extend(names)
    return groups


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization advises pre-processing through the root logger on every call; this is
    not something a bertkit user can act on, so it is not shown."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx(source: Path, target: Path, settings: Int8Settings, num_layers: int) -> list[str]:
    """Dynamic INT8 quantisation of an fp32 graph; returns the groups kept in fp32."""
    quantization = require("onnxruntime.quantization")
    groups = onnx_groups(source)
    keep = resolve_groups(settings.keep_fp32, num_layers, set(groups))
    with _quiet_root_logger():
        quantization.quantize_dynamic(
            source, target, weight_type=getattr(quantization.QuantType, WEIGHT_TYPES[settings.weight_type]),
            per_channel=settings.per_channel, nodes_to_exclude=[n for g in keep for n in groups[g]])
    return keep


# --------------------------------------------------------------------------- PyTorch

def quantize_torch(model: nn.Module, settings: Int8Settings = Int8Settings()) -> nn.Module:
    """A copy of `model` whose nn.Linear layers (those of the groups not kept) run dynamic INT8 on the CPU."""
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    if settings.weight_type != "qint8":
        raise ExportError("PyTorch's dynamic quantisation stores weights as qint8 only; quint8 is an ONNX Runtime option")
    linear = [name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and not name.endswith(_READ_BY_WEIGHT)]
    available = {group_of(name + ".") for name in linear} - {None}
    num_layers = model.config.num_hidden_layers
    keep = set(resolve_groups(settings.keep_fp32, num_layers, available))  # type: ignore[arg-type]
    qconfig = per_channel_dynamic_qconfig if settings.per_channel else default_dynamic_qconfig
    chosen = {name: qconfig for name in linear if group_of(name + ".") not in keep}
    with warnings.catch_warnings():
        # torch marks eager-mode quantisation deprecated in favour of torchao; it works in the torch bertkit
        # pins, and torchao would be a dependency for the same operation.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, chosen, dtype=torch.qint8)  # a quantized copy; `model` is unchanged


# --------------------------------------------------------------------------- is the result still a model?

@dataclass
class OutputComparison:
    """One output of a quantized model against fp32's, over the same inputs (rows: tokens or sequences)."""

    name: str
    spread_ratio: float  # spread across inputs, INT8 / fp32: ~1 varies as fp32 does, ~0 near-constant
    relative_error: float  # RMS(INT8 - fp32) / RMS(fp32 - its mean): 0 exact; >= 1 no better than a constant
    max_abs_error: float

    @property
    def problem(self) -> str | None:
        """Why these outputs are not a model's any more, or None."""
        if self.spread_ratio < COLLAPSE_RATIO:
            return f"{self.name} collapsed to near-constant values ({self.describe()})"
        if self.relative_error >= 1.0:
            return f"{self.name} is no closer to fp32's than a constant would be ({self.describe()})"
        return None

    def describe(self) -> str:
        return (f"spread {self.spread_ratio:.3f} of fp32's, relative error {self.relative_error:.3f}, "
                f"max abs error {self.max_abs_error:.3g}")


def _spread(rows: np.ndarray) -> float:
    """How much outputs differ between inputs: the mean over features of the standard deviation across rows."""
    return float(rows.std(axis=0).mean())


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> list[OutputComparison]:
    """Per output, `candidate` against `reference`: both (rows, features), rows matching."""
    comparisons = []
    for name, ref in reference.items():
        ref, got = ref.astype(np.float64), candidate[name].astype(np.float64)
        ref_spread = _spread(ref)
        centred = float(np.sqrt(((ref - ref.mean(axis=0)) ** 2).mean()))
        error = float(np.sqrt(((got - ref) ** 2).mean()))
        comparisons.append(OutputComparison(
            name,
            spread_ratio=_spread(got) / ref_spread if ref_spread > 0 else 1.0,
            relative_error=error / centred if centred > 0 else float(error > 0),
            max_abs_error=float(np.abs(got - ref).max()),
        ))
    return comparisons
