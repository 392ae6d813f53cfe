"""The tasks bertkit fine-tunes, and loading a fine-tuned directory as its task's model.

A fine-tuned directory says what it is: config.json's "bertkit" entry names the task (and the settings it was
trained with); older or foreign checkpoints are recognised by their transformers architecture, for every family.
Anything that serves or evaluates a model (the command line, export's INT8 check, a server) loads it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import checkpoint, packaged
from ..errors import UsageError
from ..families import FAMILIES
from ..runtime import apply_torch_backend, check_precision, load_tokenizer, resolve_device

TASKS = ("classify", "ner", "qa", "similarity", "multiple-choice")
HEAD_OF_TASK = {"classify": "sequence-classification", "ner": "token-classification", "qa": "question-answering",
                "multiple-choice": "multiple-choice"}
TASK_OF_ARCHITECTURE = {family.architectures[head]: task for family in FAMILIES
                        for task, head in HEAD_OF_TASK.items() if head in family.architectures}


def task_module(task: str) -> Any:
    """The module of a task: its finetune, predict and evaluate_file."""
    from . import classify, multiple_choice, ner, qa, similarity

    return {"classify": classify, "ner": ner, "qa": qa, "similarity": similarity,
            "multiple-choice": multiple_choice}[task]


def task_of(model_dir: Path) -> str:
    """The task a fine-tuned directory was trained for (config.json's "bertkit" entry, else its head)."""
    config = checkpoint.load_config(model_dir)
    saved = (config.extra.get("bertkit") or {}).get("task")  # the task name itself, whichever it is
    if saved in TASKS:
        return saved
    architecture = (config.extra.get("architectures") or ["?"])[0]
    if architecture in TASK_OF_ARCHITECTURE:
        return TASK_OF_ARCHITECTURE[architecture]
    raise UsageError(f"{model_dir} holds a {architecture} without a task head; predict/evaluate need the output of "
                     f"`bertkit finetune TASK` (tasks: {', '.join(TASKS)})")


def load_task_model(name: str, backend: str = "torch", precision: str = "fp32") -> tuple[str, Any, Any]:
    """(task, model, tokenizer) of a fine-tuned directory, refusing one whose task head was never trained.
    `backend`: see `onnx_backend.BACKENDS` (an ONNX backend reads a `bertkit export` directory); `precision`:
    fp32, bf16 or fp16 weights for the torch backends."""
    from ..auto import MODEL_FOR_HEAD
    from .similarity import BiEncoder

    check_precision(backend, precision)
    location = packaged.resolve(name)
    task = task_of(location.model_dir)
    if backend.startswith("onnx"):
        from .. import onnx_backend

        return task, onnx_backend.as_task_model(onnx_backend.load(location.model_dir, backend), task), \
            load_tokenizer(location)
    cls = BiEncoder if task == "similarity" else MODEL_FOR_HEAD[HEAD_OF_TASK[task]]
    model = cls.from_pretrained(location.model_dir, device="cpu" if backend == "torch-int8" else resolve_device("auto"))
    pooler = f"{model.base_model_prefix}.pooler"
    missing = [k for k in model.load_report.missing if not k.startswith(pooler)]
    if missing:
        raise UsageError(f"{location.model_dir} has no trained {task} head ({', '.join(missing)} missing)")
    return task, apply_torch_backend(model, backend, precision).eval(), load_tokenizer(location)


def evaluate_metrics(task: str, model: Any, tokenizer: Any, data: str | Path, columns: Any = None,
                     max_length: int | None = None) -> dict[str, Any]:
    """The task's metrics of `model` on a labelled file (columns: classify and similarity tables only)."""
    from .classify import Columns

    module = task_module(task)
    if task in ("classify", "similarity"):
        return module.evaluate_file(model, tokenizer, data, columns=columns or Columns(),
                                    **({"max_length": max_length} if task == "classify" else {}))
    if task in ("ner", "multiple-choice"):
        return module.evaluate_file(model, tokenizer, data, max_length=max_length)
    return module.evaluate_file(model, tokenizer, data)
