"""ONNX Runtime as an inference backend: an exported directory, called as if it were the PyTorch head.

`bertkit export MODEL_DIR --format onnx --output DIR` writes config.json, the tokenizer and
sentence-transformers files, `model.onnx` (fp32; `model_fp16.onnx` and `model_int8.onnx` when asked
for) and `export.json` (what was exported and the figures measured). `OnnxModel` runs one of those
graphs and answers like the head it came from: the same call signature and output dataclass (CPU
tensors), `.config` and `.device`, so every task's predict/evaluate code and `infer.embed` run on it
unchanged. onnx and onnxruntime are an extra (`pip install "bertkit[onnx]"`), imported only here
and in `export.py`, and only when used.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from . import checkpoint, heads
from .errors import ExportError
from .families import FAMILIES
from .config import EncoderConfig
from .model import BertModel
from .outputs import EncoderOutput, LogitsOutput, PreTrainingOutput, QuestionAnsweringOutput
from .pretrained import PreTrainedModel

EXPORT_MANIFEST = "export.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")  # every input a graph may take, in this order
# The model files of an export directory, by precision.
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx"}
# --backend of predict / evaluate / embed / similarity: the PyTorch module as loaded, the same with its Linear
# layers quantized to INT8 on the fly (CPU) or its encoder layers compiled (torch.compile), or one of an export
# directory's ONNX graphs.
BACKENDS = {"torch": None, "torch-int8": None, "torch-compile": None,
            "onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8"}
INSTALL_HINT = 'pip install "bertkit[onnx]"'


def require(module: str) -> ModuleType:
    """Import one of the onnx extra's packages, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{module} is not installed; ONNX export and the onnx backends need bertkit's onnx "
                          f"extra: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class Head:
    """What one exportable head takes and returns, in ONNX terms."""

    name: str  # --head value
    model_class: type[PreTrainedModel]
    output_class: type  # the dataclass its forward returns
    outputs: tuple[str, ...]  # output attribute names, which are also the ONNX output names
    token_outputs: tuple[str, ...] = ()  # outputs with a token axis: (B, T, ...)
    choices: bool = False  # inputs are (B, choices, T)

    def architecture(self, config: EncoderConfig) -> str:
        """The transformers class this head is for `config`'s family."""
        return config.family.architecture(self.name)

    def input_axes(self) -> dict[int, str]:
        return {0: "batch", 1: "choices", 2: "sequence"} if self.choices else {0: "batch", 1: "sequence"}

    def output_axes(self, name: str) -> dict[int, str]:
        if self.choices:
            return {0: "batch", 1: "choices"}
        return {0: "batch", 1: "sequence"} if name in self.token_outputs else {0: "batch"}


HEADS: dict[str, Head] = {h.name: h for h in (
    Head("base", BertModel, EncoderOutput, ("last_hidden_state", "pooler_output"), ("last_hidden_state",)),
    Head("masked-lm", heads.BertForMaskedLM, LogitsOutput, ("logits",), ("logits",)),
    Head("pretraining", heads.BertForPreTraining, PreTrainingOutput, ("prediction_logits", "seq_relationship_logits"),
         ("prediction_logits",)),
    Head("discriminator", heads.EncoderForTokenDiscrimination, LogitsOutput, ("logits",), ("logits",)),
    Head("sequence-classification", heads.BertForSequenceClassification, LogitsOutput, ("logits",)),
    Head("token-classification", heads.BertForTokenClassification, LogitsOutput, ("logits",), ("logits",)),
    Head("question-answering", heads.BertForQuestionAnswering, QuestionAnsweringOutput,
         ("start_logits", "end_logits"), ("start_logits", "end_logits")),
    Head("multiple-choice", heads.BertForMultipleChoice, LogitsOutput, ("logits",), choices=True),
)}
HEAD_OF_ARCHITECTURE = {family.architectures[kind]: HEADS[kind] for family in FAMILIES for kind in family.architectures}
# The head each fine-tuning task saves (a similarity model is a plain encoder that pools its tokens).
TASK_HEADS = {"classify": "sequence-classification", "ner": "token-classification", "qa": "question-answering",
              "multiple-choice": "multiple-choice", "similarity": "base"}


def graph_inputs(config: EncoderConfig) -> tuple[str, ...]:
    """The inputs an exported graph of this model takes: token_type_ids only where there are token types to choose
    among. DistilBERT has none; RoBERTa, XLM-R and CamemBERT have one, which every token gets (their tokenizers
    return no token_type_ids, and optimum exports them with input_ids and attention_mask alone, as here)."""
    return INPUT_NAMES if config.type_vocab_size > 1 else INPUT_NAMES[:2]


def head_of(model_dir: Path, requested: str | None = None) -> Head:
    """The head to export: as asked, else config.json's "architectures"; one the model's family has."""
    config = checkpoint.load_config(model_dir)
    family = config.family
    if requested is not None:
        if requested not in HEADS:
            raise ExportError(f"--head {requested!r} is not supported; choose one of {', '.join(HEADS)}")
        if requested not in family.architectures:
            raise ExportError(f"--head {requested}: {model_dir} is a {family.name} model, which has no {requested} "
                              f"head; its heads: {', '.join(h for h in HEADS if h in family.architectures)}")
        return HEADS[requested]
    architectures = config.extra.get("architectures") or [family.architecture("base")]
    if architectures[0] not in HEAD_OF_ARCHITECTURE:
        raise ExportError(f"{model_dir / checkpoint.CONFIG_NAME}: architectures {architectures[0]!r} cannot be exported "
                          f"(supported: {', '.join(HEAD_OF_ARCHITECTURE)}); pass --head to export it as one of "
                          f"{', '.join(h for h in HEADS if h in family.architectures)}")
    return HEAD_OF_ARCHITECTURE[architectures[0]]


def session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session; as many intra-op threads as torch uses, unless told otherwise, so that
    the two backends are compared on equal terms."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel(nn.Module):
    """An exported graph run by ONNX Runtime, called like the PyTorch head it came from.

    With `record` set to a list, every call appends its outputs (numpy, keyed by output name), so that
    two precisions run over the same inputs can be compared output by output.
    """

    # classify's evaluation asks the model for its loss; the head's own code needs nothing but the config.
    loss = heads.BertForSequenceClassification.loss
    problem_type = heads.BertForSequenceClassification.problem_type

    def __init__(self, path: Path, config: EncoderConfig, head: Head, threads: int | None = None) -> None:
        super().__init__()
        self.path, self.config, self.head = path, config, head
        self.session = session(path, threads)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_names = [i.name for i in self.session.get_inputs()]  # without token_type_ids: see graph_inputs
        self.record: list[dict[str, np.ndarray]] | None = None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray,
            token_type_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Numpy in, numpy out: the graph's outputs by name. Token types are zeros when not given, and left out
        for a graph that takes none, as long as they are all zeros (what a batch of single texts carries)."""
        if "token_type_ids" in self.input_names:
            if token_type_ids is None:
                token_type_ids = np.zeros_like(input_ids)
        elif token_type_ids is not None and token_type_ids.any():
            types = "one token type" if self.config.type_vocab_size == 1 else "no token types"
            raise ValueError(f"{self.path}: this graph takes no token_type_ids ({self.config.family.name} has {types}), "
                             "but some of those given are not 0; pass token_type_ids=None")
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feeds = {name: given[name].astype(np.int64, copy=False) for name in self.input_names}
        return dict(zip(self.output_names, self.session.run(None, feeds)))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
    ) -> Any:
        """As the head's forward; QA's start/end positions (given when evaluating) add the loss."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        outputs = self.run(input_ids.cpu().numpy(), attention_mask.cpu().numpy(),
                           None if token_type_ids is None else token_type_ids.cpu().numpy())
        if self.record is not None:
            self.record.append({"attention_mask": attention_mask.cpu().numpy(), **outputs})
        result = self.head.output_class(**{k: torch.from_numpy(v) for k, v in outputs.items()})
        if start_positions is not None and end_positions is not None:
            result.loss = heads.span_loss(result.start_logits, result.end_logits, start_positions, end_positions)
        return result


def read_manifest(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / EXPORT_MANIFEST
    if not path.is_file():
        raise ExportError(f"{model_dir}: no {EXPORT_MANIFEST}; the onnx backends run a directory written by "
                          "`bertkit export MODEL_DIR --format onnx --output DIR`")
    return json.loads(path.read_text(encoding="utf-8"))


def load(model_dir: str | os.PathLike, backend: str = "onnx", threads: int | None = None) -> OnnxModel:
    """One graph of an export directory, by backend name (onnx = fp32, onnx-fp16, onnx-int8)."""
    model_dir = Path(model_dir)
    if BACKENDS.get(backend) is None:
        raise ExportError(f"backend {backend!r} is not an ONNX backend; choose one of "
                          f"{', '.join(b for b, p in BACKENDS.items() if p)}")
    manifest = read_manifest(model_dir)
    precision = BACKENDS[backend]
    file = manifest.get("files", {}).get(precision)
    if file is None:
        flag = {"fp16": " --fp16", "int8": " --int8"}.get(precision, "")
        raise ExportError(f"{model_dir}: no {precision} model in this export (it has {', '.join(manifest.get('files', {}))}); "
                          f"export again with{flag or ' the defaults'}")
    require("onnxruntime")
    return OnnxModel(model_dir / file, checkpoint.load_config(model_dir), HEADS[manifest["head"]], threads)


@dataclass
class OnnxBiEncoder:
    """What similarity's predict/evaluate use of a `BiEncoder` (its encoder and settings), on an ONNX graph."""

    base_model: OnnxModel  # the encoder, as `BiEncoder.base_model`
    settings: Any  # tasks.similarity.SimilaritySettings
    config: EncoderConfig

    def eval(self) -> OnnxBiEncoder:
        return self


def as_task_model(model: OnnxModel, task: str) -> Any:
    """The exported model as `task`'s predict/evaluate expect it; refuses a graph of another head."""
    expected = HEADS[TASK_HEADS[task]]
    if model.head is not expected:
        raise ExportError(f"{model.path}: exported as {model.head.name} ({model.head.architecture(model.config)}), but the task "
                          f"{task!r} needs the {expected.name} head; export with --head {expected.name}")
    if task != "similarity":
        return model
    from .tasks.similarity import SimilaritySettings

    return OnnxBiEncoder(model, SimilaritySettings.from_config(model.config) or SimilaritySettings(), model.config)


def load_encoder(model_dir: str | os.PathLike, backend: str) -> OnnxModel:
    """A base-model export, for embeddings; a graph that outputs only a head's logits is refused."""
    model = load(model_dir, backend)
    if "last_hidden_state" not in model.output_names:
        raise ExportError(f"{model.path}: exported as {model.head.name}, which outputs {', '.join(model.output_names)}; "
                          f"embeddings need the token vectors: export with --head base")
    return model


def flatten_outputs(record: list[dict[str, np.ndarray]], head: Head) -> dict[str, np.ndarray]:
    """Recorded calls -> per output, a (rows, features) array: one row per real token for token outputs
    (padding dropped), one per sequence (or per choice) otherwise."""
    flat: dict[str, list[np.ndarray]] = {}
    for call in record:
        real = call["attention_mask"].astype(bool)
        for name, value in call.items():
            if name == "attention_mask":
                continue
            rows = value[real] if name in head.token_outputs else value.reshape(value.shape[0], -1)
            flat.setdefault(name, []).append(rows.reshape(rows.shape[0], -1))
    return {name: np.concatenate(parts) for name, parts in flat.items()}

