"""`bertkit export`: a model directory to ONNX (fp32, fp16) and INT8, every figure checked before it is handed over.

All work happens in a staging directory that replaces the output in one rename only when every check
passed (`files.atomic_directory`), so a failed check leaves nothing behind:

1. The PyTorch head of any family is traced on its padded path (`unpad=False`: the unpadded path's
   data-dependent shapes cannot be traced) with dynamic batch (and choices) and sequence axes; inputs
   `input_ids`, `attention_mask` and, where the model has more than one token type, `token_type_ids`
   (`onnx_backend.graph_inputs`: not DistilBERT, RoBERTa, XLM-R, CamemBERT); outputs named after the head's
   output fields. RoBERTa's position ids (counted from pad_token_id + 1 over the non-padding ids) are
   computed inside the graph from the ids, so padded batches of any shape get the positions PyTorch gives.
2. ONNX Runtime runs against PyTorch at two shapes other than the traced one: fp32 within 1e-4.
3. `--fp16`: the graph converted to fp16 inside (inputs and outputs stay as they were), checked the same
   way within 1% of the outputs' largest magnitude.
4. `--int8`: dynamic quantisation (`quantize.quantize_onnx`). Its outputs are compared with fp32's on
   `--eval-data` (or on random inputs); the export fails if they collapsed, or if the task metric on
   `--eval-data` dropped by more than `max_drop` points. A failure probes which groups of layers, kept
   in fp32, repair it, and says which to pass to `--keep-fp32`.

Exporter: TorchScript's (`dynamo=False`). torch 2.13's default, torch.export-based exporter stops at the
encoder's data-dependent `if attention_mask.all()` shortcut (GuardOnDataDependentSymNode), needs
onnxscript, takes ~5 s for a two-layer model against 0.2-0.4 s, and names nodes `node_MatMul_25`, losing
the module paths by which `--keep-fp32` finds a layer's nodes. The TorchScript exporter traces the
padded branch (the traced example always has padding, so the mask is always applied, which is exact
for unpadded input too) and keeps scopes (`/model/bert/encoder/layer.3/...`). torch deprecates it, but
2.13 ships it; the parity check catches a trace that went wrong.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import checkpoint, packaged
from .config import EncoderConfig
from .files import atomic_directory
from .runtime import load_tokenizer
from .model import BertModel
from .onnx_backend import (EXPORT_MANIFEST, ONNX_FILES, ExportError, Head, OnnxModel, as_task_model, flatten_outputs,
                           graph_inputs, head_of, require)
from .quantize import (Int8Settings, OutputComparison, compare_outputs, onnx_groups, quantize_onnx, resolve_groups,
                       sorted_groups)

logger = logging.getLogger("bertkit")

MIN_OPSET = 17  # LayerNormalization is a single ONNX op from opset 17 on
FP32_TOLERANCE = 1e-4  # max |ONNX Runtime - PyTorch| for the fp32 graph
FP16_TOLERANCE = 1e-2  # fp16: max error, relative to the outputs' largest magnitude
DEFAULT_MAX_DROP = 1.0  # points of the task metric INT8 may lose on --eval-data


@dataclass(frozen=True)
class Shape:
    batch: int
    sequence: int
    choices: int = 2  # multiple choice only

    def describe(self, head: Head) -> str:
        return f"{self.batch}x{self.choices}x{self.sequence}" if head.choices else f"{self.batch}x{self.sequence}"


TRACE_SHAPE = Shape(2, 16, 2)
CHECK_SHAPES = (Shape(3, 11, 3), Shape(5, 29, 4))  # parity is checked on shapes the trace never saw
VALIDATION_SHAPE = Shape(32, 32, 2)  # INT8's random validation inputs when there is no --eval-data


@dataclass
class ExportOptions:
    head: str | None = None  # default: config.json's architectures
    opset: int = MIN_OPSET
    fp16: bool = False
    int8: Int8Settings | None = None  # None: no INT8 model
    eval_data: Path | None = None  # labelled file in the task's format: fp32 vs INT8 on it
    max_drop: float = DEFAULT_MAX_DROP  # points
    overwrite: bool = False


@dataclass
class ExportResult:
    output: Path
    report: dict[str, Any] = field(default_factory=dict)  # what export.json holds


def max_opset() -> int:
    from torch.onnx import _constants

    return _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET


def example_inputs(config: EncoderConfig, head: Head, shape: Shape, seed: int) -> dict[str, torch.Tensor]:
    """The graph's inputs (`graph_inputs`), random: (B, T) or (B, choices, T) ids other than the pad id, right
    padding with the pad id (the first sequence full, the last half as long), as a tokenizer writes them (RoBERTa
    counts positions from them), and token types 0 then 1, as a sentence pair has them."""
    g = torch.Generator().manual_seed(seed)
    dims = (shape.batch, shape.choices) if head.choices else (shape.batch,)
    pad = config.pad_token_id or 0
    input_ids = torch.randint(0, config.vocab_size, (*dims, shape.sequence), generator=g)
    input_ids = input_ids.masked_fill(input_ids == pad, (pad + 1) % config.vocab_size)  # no pad id among real tokens
    lengths = torch.randint(1, shape.sequence + 1, dims, generator=g)
    lengths.view(-1)[0], lengths.view(-1)[-1] = shape.sequence, max(1, shape.sequence // 2)
    positions = torch.arange(shape.sequence)
    attention_mask = (positions < lengths.unsqueeze(-1)).long()
    inputs = {"input_ids": input_ids.masked_fill(attention_mask == 0, pad), "attention_mask": attention_mask}
    if "token_type_ids" in graph_inputs(config):
        inputs["token_type_ids"] = (positions >= (lengths // 2).unsqueeze(-1)).long() * attention_mask
    return inputs


class _Outputs(nn.Module):
    """The head with a flat signature and a tuple of tensors out, which is what a trace records."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids, attention_mask, token_type_ids)
        return tuple(getattr(out, name) for name in self.names)


def load_torch_head(model_dir: Path, head: Head) -> nn.Module:
    """The PyTorch head on its padded path, refusing a directory whose weights do not cover it."""
    if head.model_class is BertModel:
        # An encoder saved without a pooler (a sentence encoder) is exported without pooler_output.
        state = checkpoint.read_state_dict(model_dir)
        config, pooler = checkpoint.load_config(model_dir, unpad=False), any("pooler." in k for k in state)
        model = checkpoint.build_loaded(lambda: BertModel(config, add_pooling_layer=pooler), state, str(model_dir))
    else:
        model = head.model_class.from_pretrained(model_dir, unpad=False, device="cpu")
    if model.load_report.missing:
        raise ExportError(f"{model_dir}: has no trained weights for {', '.join(model.load_report.missing)}; "
                          f"exporting it as {head.name} would give random outputs (see --head)")
    return model.eval()


def trace_to_onnx(model: nn.Module, head: Head, path: Path, opset: int) -> tuple[str, ...]:
    """Write the fp32 graph; returns the output names (the head's outputs that are not None)."""
    inputs = example_inputs(model.config, head, TRACE_SHAPE, seed=0)
    with torch.no_grad():
        out = model(**inputs)
    names = tuple(n for n in head.outputs if getattr(out, n) is not None)
    with warnings.catch_warnings():
        # Expected and harmless here: the exporter's deprecation notice, and TracerWarnings for the Python-level
        # shortcuts (no padding -> no mask; the length check) that the padded trace resolves once and for all.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Outputs(model, names).eval(), tuple(inputs.values()), str(path), input_names=list(inputs),
            output_names=list(names), opset_version=opset, dynamo=False, do_constant_folding=True,
            dynamic_axes={**{n: head.input_axes() for n in inputs}, **{n: head.output_axes(n) for n in names}})
    return names


def parity(model: nn.Module, onnx_model: OnnxModel, head: Head) -> list[dict[str, Any]]:
    """Per check shape: the largest |ONNX Runtime - PyTorch| and the largest |PyTorch| over all outputs."""
    figures = []
    for seed, shape in enumerate(CHECK_SHAPES, start=1):
        inputs = example_inputs(model.config, head, shape, seed)
        with torch.no_grad():
            expected = model(**inputs)
        got = onnx_model.run(**{name: t.numpy() for name, t in inputs.items()})
        errors = {name: float(np.abs(value - getattr(expected, name).numpy()).max()) for name, value in got.items()}
        scale = max(float(getattr(expected, name).abs().max()) for name in got)
        figures.append({"shape": shape.describe(head), "max_abs_error": max(errors.values()), "max_abs_value": scale,
                        "per_output": errors})
    return figures


def _check_parity(figures: list[dict[str, Any]], precision: str, tolerance: float, relative: bool) -> None:
    for f in figures:
        limit = tolerance * max(1.0, f["max_abs_value"]) if relative else tolerance
        if not f["max_abs_error"] <= limit:  # also catches NaN
            raise ExportError(f"{precision} ONNX model disagrees with PyTorch at shape {f['shape']}: max abs error "
                              f"{f['max_abs_error']:.3g} > {limit:.3g}; the export was not written")


def copy_model_files(location: packaged.ModelLocation, model_dir: Path, staging: Path, head: Head) -> None:
    """config.json (architectures set to the exported head), the tokenizer, sentence-transformers' module
    files: what predict / embed read next to the graph."""
    config = json.loads((model_dir / checkpoint.CONFIG_NAME).read_text(encoding="utf-8"))
    config["architectures"] = [head.architecture(checkpoint.load_config(model_dir))]
    (staging / checkpoint.CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    load_tokenizer(location).save_pretrained(staging)
    modules = model_dir / "modules.json"
    names = ["modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"]
    if modules.is_file():
        names += [m["path"] for m in json.loads(modules.read_text(encoding="utf-8")) if m.get("path")]
    for name in names:
        source = model_dir / name
        if source.is_dir():
            shutil.copytree(source, staging / name)
        elif source.is_file():
            shutil.copy2(source, staging / name)


# --------------------------------------------------------------------------- INT8 checks

@dataclass
class Measurement:
    outputs: dict[str, np.ndarray]  # (rows, features) per output, rows = real tokens or sequences
    metric: float | None = None  # the task's main metric on --eval-data, in points


@dataclass
class Verdict:
    comparisons: list[OutputComparison]
    drop: float | None  # points lost on --eval-data
    problems: list[str]

    @property
    def summary(self) -> str:
        worst = max(c.relative_error for c in self.comparisons)
        return f"drop {self.drop:.2f} points" if self.drop is not None else f"relative error {worst:.3f}"


def main_metric(task: str, metrics: dict[str, float]) -> str:
    """The metric fine-tuning selects the best checkpoint by: what an INT8 drop is measured in."""
    candidates = {"classify": ("accuracy", "micro_f1", "spearman"), "ner": ("f1",), "qa": ("f1",),
                  "multiple-choice": ("accuracy",), "similarity": ("spearman", "accuracy")}[task]
    return next(name for name in candidates if name in metrics)


class Evaluation:
    """--eval-data: the task's metrics of an exported graph on a labelled file, as `bertkit evaluate` computes them."""

    def __init__(self, staging: Path, data: Path) -> None:
        from .tasks.registry import task_of

        self.task, self.data = task_of(staging), data
        self.tokenizer = load_tokenizer(packaged.ModelLocation(staging))
        self.metric = ""

    def __call__(self, model: OnnxModel) -> float:
        from .tasks.registry import evaluate_metrics

        metrics = evaluate_metrics(self.task, as_task_model(model, self.task), self.tokenizer, self.data)
        self.metric = main_metric(self.task, metrics)
        return metrics[self.metric] * (1.0 if self.task == "qa" else 100.0)  # squad_metrics are percent already


class Int8Check:
    """Quantizes, measures and judges INT8 graphs against the fp32 one."""

    def __init__(self, fp32_path: Path, config: EncoderConfig, head: Head, evaluation: Evaluation | None,
                 max_drop: float) -> None:
        self.fp32_path, self.config, self.head = fp32_path, config, head
        self.evaluation, self.max_drop = evaluation, max_drop
        self.reference = self.measure(fp32_path)

    def measure(self, path: Path) -> Measurement:
        model = OnnxModel(path, self.config, self.head)
        model.record = []
        metric = None
        if self.evaluation is not None:
            metric = self.evaluation(model)
        else:
            model(**example_inputs(self.config, self.head, VALIDATION_SHAPE, seed=7))
        return Measurement(flatten_outputs(model.record, self.head), metric)

    def judge(self, candidate: Measurement) -> Verdict:
        comparisons = compare_outputs(self.reference.outputs, candidate.outputs)
        problems = [c.problem for c in comparisons if c.problem is not None]
        drop = None
        if candidate.metric is not None and self.reference.metric is not None:
            drop = self.reference.metric - candidate.metric
            if drop > self.max_drop:
                problems.append(f"{self.evaluation.metric} dropped {drop:.2f} points on {self.evaluation.data} "
                                f"(fp32 {self.reference.metric:.2f}, INT8 {candidate.metric:.2f}; the limit is "
                                f"{self.max_drop:g})")
        return Verdict(comparisons, drop, problems)

    def quantize(self, target: Path, settings: Int8Settings) -> tuple[Measurement, Verdict]:
        quantize_onnx(self.fp32_path, target, settings, self.config.num_hidden_layers)
        measurement = self.measure(target)
        return measurement, self.judge(measurement)

    def advice(self, settings: Int8Settings, scratch: Path) -> str:
        """Which groups, kept in fp32, repair the INT8 model: each group alone first, then the best ones together."""
        groups = [g for g in sorted_groups(set(onnx_groups(self.fp32_path))) if g not in settings.keep_fp32]
        trials: list[tuple[str, Verdict]] = []
        for group in groups:
            _, verdict = self.quantize(scratch, replace(settings, keep_fp32=(*settings.keep_fp32, group)))
            trials.append((group, verdict))
        ranked = sorted(trials, key=lambda t: (bool(t[1].problems), _badness(t[1])))
        lines = ["keeping one group in fp32 at a time:"]
        lines += [f"  {group}: {verdict.summary}{' (passes)' if not verdict.problems else ''}" for group, verdict in ranked]
        for k in range(1, min(3, len(ranked)) + 1):
            keep = (*settings.keep_fp32, *[g for g, _ in ranked[:k]])
            verdict = ranked[0][1] if k == 1 else self.quantize(scratch, replace(settings, keep_fp32=keep))[1]
            if not verdict.problems:
                lines.append(f"suggestion (verified: {verdict.summary}): --keep-fp32 {','.join(keep)}")
                break
        else:
            lines.append("no combination of up to three groups passes" +
                         ("" if settings.per_channel else "; try --per-channel") + ", or keep this model in fp32/fp16")
        scratch.unlink(missing_ok=True)
        return "\n".join(lines)


def _badness(verdict: Verdict) -> float:
    return verdict.drop if verdict.drop is not None else max(c.relative_error for c in verdict.comparisons)


def check_int8(staging: Path, config: EncoderConfig, head: Head, options: ExportOptions) -> dict[str, Any]:
    """Write model_int8.onnx and return its figures; raise (nothing is written) when it is broken."""
    assert options.int8 is not None
    fp32_path, int8_path = staging / ONNX_FILES["fp32"], staging / ONNX_FILES["int8"]
    # Names as the model has them ("layer.-1" -> "layer.5"), so that the advice does not try a kept group again.
    keep = resolve_groups(options.int8.keep_fp32, config.num_hidden_layers, set(onnx_groups(fp32_path)))
    settings = replace(options.int8, keep_fp32=tuple(keep))
    evaluation = Evaluation(staging, options.eval_data) if options.eval_data is not None else None
    check = Int8Check(fp32_path, config, head, evaluation, options.max_drop)
    measurement, verdict = check.quantize(int8_path, settings)
    if verdict.problems:
        advice = check.advice(settings, staging / ".probe.onnx")
        raise ExportError("INT8 check failed, nothing was written:\n  " + "\n  ".join(verdict.problems) + "\n" + advice)
    figures: dict[str, Any] = {
        **settings.describe(),
        "bytes": int8_path.stat().st_size,
        "size_ratio": int8_path.stat().st_size / fp32_path.stat().st_size,
        "validated_on": str(options.eval_data) if evaluation else f"random inputs {VALIDATION_SHAPE.describe(head)}",
        "outputs": {c.name: {"spread_ratio": c.spread_ratio, "relative_error": c.relative_error,
                             "max_abs_error": c.max_abs_error} for c in verdict.comparisons},
    }
    if evaluation is not None:
        figures.update(metric=evaluation.metric, fp32=check.reference.metric, int8=measurement.metric,
                       drop=verdict.drop, max_drop=options.max_drop)
    return figures


# --------------------------------------------------------------------------- the export

def export_onnx(model: str | Path, output: str | Path, options: ExportOptions = ExportOptions(),
                log: Callable[[str], None] = logger.info) -> ExportResult:
    """Export `model` (a directory or packaged model name) to `output`; see the module docstring."""
    require("onnx")
    require("onnxruntime")
    if not MIN_OPSET <= options.opset <= max_opset():
        raise ExportError(f"opset {options.opset} is not supported: bertkit exports opset {MIN_OPSET} to {max_opset()} "
                          f"(LayerNormalization needs {MIN_OPSET}; {max_opset()} is the newest that torch's exporter writes)")
    if options.eval_data is not None and options.int8 is None:
        raise ExportError("--eval-data measures INT8 against fp32; add --int8")
    if options.eval_data is not None and not Path(options.eval_data).is_file():
        raise FileNotFoundError(f"{options.eval_data}: no such evaluation file")
    output = Path(output)
    if output.exists() and not options.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    location = packaged.resolve(model)
    model_dir = checkpoint.model_directory(location.model_dir)
    if output.resolve() == model_dir.resolve():
        raise ExportError(f"{output} is the model directory itself; export into another directory")
    head = head_of(model_dir, options.head)
    torch_model = load_torch_head(model_dir, head)
    config = torch_model.config

    report: dict[str, Any] = {"format": "onnx", "source": str(model_dir), "head": head.name,
                              "architecture": head.architecture(config), "opset": options.opset, "exporter": "torchscript",
                              "inputs": list(graph_inputs(config)), "files": {}, "bytes": {}, "parity": {}}
    with atomic_directory(output, keep_old=lambda name: False) as staging:
        copy_model_files(location, model_dir, staging, head)
        fp32_path = staging / ONNX_FILES["fp32"]
        report["outputs"] = list(trace_to_onnx(torch_model, head, fp32_path, options.opset))
        precisions = [("fp32", FP32_TOLERANCE, False)]
        if options.fp16:
            onnx = require("onnx")
            from onnxruntime.transformers.float16 import convert_float_to_float16

            fp16 = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
            onnx.save(fp16, str(staging / ONNX_FILES["fp16"]))
            precisions.append(("fp16", FP16_TOLERANCE, True))
        for precision, tolerance, relative in precisions:
            path = staging / ONNX_FILES[precision]
            figures = parity(torch_model, OnnxModel(path, config, head), head)
            _check_parity(figures, precision, tolerance, relative)
            report["files"][precision] = path.name
            report["bytes"][precision] = path.stat().st_size
            report["parity"][precision] = {"tolerance": tolerance, "relative": relative, "shapes": figures}
            log(f"{precision}: {path.name} {path.stat().st_size / 1e6:.2f} MB; ONNX Runtime vs PyTorch max abs error "
                + ", ".join(f"{f['max_abs_error']:.2e} at {f['shape']}" for f in figures))
        if options.int8 is not None:
            report["int8"] = check_int8(staging, config, head, options)
            report["files"]["int8"] = ONNX_FILES["int8"]
            report["bytes"]["int8"] = report["int8"]["bytes"]
            log(_describe_int8(report["int8"]))
        (staging / EXPORT_MANIFEST).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return ExportResult(output, report)


def _describe_int8(figures: dict[str, Any]) -> str:
    lines = [f"int8: {ONNX_FILES['int8']} {figures['bytes'] / 1e6:.2f} MB = {figures['size_ratio']:.1%} of fp32 "
             f"(weights {figures['weight_type']}, per-channel {'on' if figures['per_channel'] else 'off'}, "
             f"kept in fp32: {', '.join(figures['keep_fp32']) or 'nothing'})"]
    for name, c in figures["outputs"].items():
        lines.append(f"  {name} vs fp32 on {figures['validated_on']}: relative error {c['relative_error']:.4f}, "
                     f"spread {c['spread_ratio']:.3f} of fp32's, max abs error {c['max_abs_error']:.3g}")
    if "metric" in figures:
        lines.append(f"  {figures['metric']}: fp32 {figures['fp32']:.2f}, INT8 {figures['int8']:.2f} "
                     f"(drop {figures['drop']:.2f} points, limit {figures['max_drop']:g})")
    return "\n".join(lines)
