"""`bertkit finetune TASK`, `bertkit predict` and `bertkit evaluate`: the task commands.

A fine-tuned directory says what its task is (`tasks/registry.py`), so `predict` and `evaluate` need no task flag.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable

from . import packaged
from .cli_options import add_backend_option
from .errors import UsageError
from .readers import read_texts, refuse_empty
from .tasks.registry import evaluate_metrics, load_task_model, task_module

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


# --- finetune ---

def train_args(args: argparse.Namespace, **fields: Any) -> Any:
    """TrainArgs from the options of `add_engine_options` (plus --output and --epochs); `fields` override."""
    from .train import TrainArgs

    return TrainArgs(**{
        "output_dir": Path(args.output), "epochs": getattr(args, "epochs", None) or 0.0, "batch_size": args.batch_size,
        "grad_accum": args.grad_accum, "lr": args.lr, "weight_decay": args.weight_decay,
        "warmup_ratio": args.warmup_ratio, "schedule": args.schedule, "optimizer": args.optimizer,
        "max_grad_norm": args.max_grad_norm, "precision": args.precision, "seed": args.seed,
        "eval_every": args.eval_every, "patience": args.patience, "gradient_checkpointing": args.gradient_checkpointing,
        "fsdp": args.fsdp, "resume": args.resume, "resume_changed": args.resume_changed, "overwrite": args.overwrite,
        "progress": not args.quiet, **fields})


def _columns(args: argparse.Namespace) -> Any:
    from .tasks.classify import Columns

    return Columns(text=args.text_column, text_pair=args.pair_column, label=args.label_column)


def _task_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of the task's `finetune` beyond model, files and TrainArgs."""
    if args.task == "classify":
        return dict(max_length=args.max_length, columns=_columns(args), problem_type=args.problem_type,
                    stride=args.stride, max_windows=args.max_windows)
    if args.task == "ner":
        return dict(max_length=args.max_length, stride=args.stride, label_all_tokens=args.label_all_tokens,
                    token_column=args.token_column, tag_column=args.tag_column, max_windows=args.max_windows)
    if args.task == "qa":
        return dict(max_length=args.max_length, doc_stride=args.doc_stride, max_query_length=args.max_query_length,
                    version_2=args.version_2, max_answer_length=args.max_answer_length, n_best=args.n_best,
                    null_threshold=args.null_threshold)
    if args.task == "similarity":
        score_range = tuple(args.score_range) if args.score_range else None
        return dict(max_length=args.max_length, pooling=args.pooling, normalize=args.normalize, loss=args.loss,
                    columns=_columns(args), score_range=score_range, scale=args.scale, symmetric=args.symmetric)
    return dict(max_length=args.max_length, context_column=args.context_column)




def cmd_finetune(args: argparse.Namespace) -> None:
    location = packaged.resolve(args.model)
    result = task_module(args.task).finetune(location.model_dir, args.train, args.eval, train_args(args),
                                              **_task_options(args))
    print_run_summary({"output": args.output, "steps": result.steps, "seconds": round(result.seconds, 1),
                       "stopped_early": result.stopped_early, **{f"eval_{k}": v for k, v in result.best_metrics.items()}})


def print_run_summary(summary: dict[str, Any]) -> None:
    """A training run's JSON line, once: under torchrun every process finishes the run, rank 0 reports it."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))





# --- predict ---

def _records(path: str, **columns: str) -> list[Any]:
    from .readers import read_table

    return read_table(path, require_label=False, **columns)


def _predict_inputs(task: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], Callable[..., list]]:
    """The inputs as JSON-able dicts (echoed in the output) and a function of (model, tokenizer) predicting them."""
    from .readers import read_multiple_choice
    from .tasks import classify, multiple_choice, ner, qa, similarity

    table = args.input is not None and Path(args.input).suffix.lower() in TABLE_SUFFIXES
    refuse_empty(args.text)
    if task == "qa":
        if table:
            rows = [(r.text, r.text_pair) for r in _records(args.input, text_column="question", pair_column="context")]
        elif args.context is not None:
            if not args.context.strip():
                raise UsageError("--context is empty")
            rows = [(q, args.context) for q in [*args.text, *(read_texts(args.input) if args.input else [])]]
        else:
            raise UsageError("qa: give questions with --context TEXT, or --input FILE.jsonl|csv with question and "
                             "context columns")
        return ([{"question": q, "context": c} for q, c in rows],
                lambda m, t: qa.predict(m, t, [q for q, _ in rows], [c for _, c in rows]))
    if task == "multiple-choice":
        if table:
            examples = read_multiple_choice(args.input, require_label=False)
            rows = [(e.context, e.endings) for e in examples]
        elif len(args.text) >= 3:
            rows = [(args.text[0], list(args.text[1:]))]
        else:
            raise UsageError("multiple-choice: give CONTEXT ENDING ENDING [...], or --input FILE with context, "
                             "ending0, ending1, ... columns")
        return ([{"context": c, "endings": e} for c, e in rows],
                lambda m, t: multiple_choice.predict(m, t, [c for c, _ in rows], [e for _, e in rows],
                                                        max_length=args.max_length))
    if table:
        pairs = [(r.text, r.text_pair) for r in _records(args.input)]
    else:
        texts = [*args.text, *(read_texts(args.input) if args.input else [])]
        if task == "similarity":
            if len(texts) % 2:
                raise UsageError(f"similarity: give texts in pairs (got {len(texts)}), or --input FILE with text and "
                                 "text_pair columns")
            pairs = list(zip(texts[::2], texts[1::2]))
        else:
            pairs = [(text, None) for text in texts]
    if not pairs:
        raise UsageError("give texts as arguments or --input FILE (one per line, or a CSV/TSV/JSONL table)")
    texts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    has_pairs = any(b is not None for b in seconds)
    shown = [{"text": a, **({"text_pair": b} if b is not None else {})} for a, b in pairs]
    if task == "similarity":
        return shown, lambda m, t: similarity.predict(m, t, texts, seconds)
    if task == "ner":
        if has_pairs:
            raise UsageError("ner takes single texts, not pairs")
        return shown, lambda m, t: ner.predict(m, t, texts, max_length=args.max_length)
    return shown, lambda m, t: classify.predict(m, t, texts, seconds if has_pairs else None, max_length=args.max_length)


def cmd_predict(args: argparse.Namespace) -> None:
    task, model, tokenizer = load_task_model(args.model, args.backend, args.precision)
    inputs, run = _predict_inputs(task, args)
    for shown, result in zip(inputs, run(model, tokenizer)):
        print(json.dumps({**shown, **result}, ensure_ascii=False))


# --- evaluate ---

def cmd_evaluate(args: argparse.Namespace) -> None:
    task, model, tokenizer = load_task_model(args.model, args.backend, args.precision)
    metrics = evaluate_metrics(task, model, tokenizer, args.data, _columns(args), args.max_length)
    print(json.dumps({"task": task, "data": str(args.data), **metrics}))


# --- argument parsing ---

def _add_column_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-column", default="text", help="column with the text (default: text)")
    p.add_argument("--pair-column", default="text_pair", help="optional second text column (default: text_pair)")
    p.add_argument("--label-column", default="label", help="column with the label or score (default: label)")


def add_engine_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, lr: float, warmup_ratio: float) -> None:
    """The training engine's options, shared by `finetune` and `pretrain` (which differ in the defaults given)."""
    p.add_argument("--batch-size", type=int, default=32, help="examples per step per process (default 32)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)")
    p.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decay on matrices (default 0.01)")
    p.add_argument("--warmup-ratio", type=float, default=warmup_ratio,
                   help=f"fraction of steps warming up (default {warmup_ratio:g})")
    p.add_argument("--schedule", choices=("linear", "cosine", "constant"), default="linear")
    p.add_argument("--optimizer", choices=("adamw", "lamb"), default="adamw")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0 = off)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (default: each epoch and at the end)")
    p.add_argument("--patience", type=int, default=0, help="stop after N evaluations without gain (0 = never)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="save memory, spend compute")
    p.add_argument("--fsdp", action="store_true",
                   help="under torchrun, shard parameters, gradients and optimizer state across processes "
                        "(for models too large to replicate; default: DDP)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUTPUT/checkpoint-last; the settings must be those the run was started with")
    p.add_argument("--resume-changed", action="store_true",
                   help="with --resume: continue even where the settings differ from the checkpoint's (the change is "
                        "recorded in checkpoint-last/run.json and metrics.jsonl)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty output directory; its contents stay until the new run has "
                        "finished (it trains in OUTPUT/new-run meanwhile)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_training_options(p: argparse.ArgumentParser, max_length: int) -> None:
    p.add_argument("--epochs", type=float, default=3.0, help="passes over the training data (default 3)")
    p.add_argument("--max-length", type=int, default=max_length, help=f"tokens per example (default {max_length})")
    add_engine_options(p, lr=5e-5, warmup_ratio=0.1)


def _finetune_parser(tasks: Any, name: str, help: str, train_help: str, max_length: int) -> argparse.ArgumentParser:
    p = tasks.add_parser(name, help=help)
    p.add_argument("--model", required=True, help="pretrained model directory (or packaged model name)")
    p.add_argument("--train", required=True, help=train_help)
    p.add_argument("--eval", help="labelled evaluation file in the same format (picks the best checkpoint)")
    p.add_argument("--output", required=True, help="directory for the fine-tuned model (HF format) and logs")
    _add_training_options(p, max_length)
    p.set_defaults(func=cmd_finetune, task=name)
    return p


def _add_stride(p: argparse.ArgumentParser) -> None:
    from .windows import MAX_WINDOWS

    p.add_argument("--stride", type=int, default=None, help="tokens shared by consecutive windows of a text longer "
                   "than --max-length (default: a quarter of --max-length)")
    p.add_argument("--max-windows", type=int, default=MAX_WINDOWS,
                   help=f"training windows kept per text longer than --max-length, spread evenly over it, so that one "
                        f"very long text cannot dominate training (default {MAX_WINDOWS}; 0 keeps every window; "
                        "evaluation and predict read every window)")


def add_task_commands(sub: Any) -> None:
    """finetune TASK, predict, evaluate."""
    p = sub.add_parser("finetune", help="fine-tune a pretrained model on a labelled task")
    tasks = p.add_subparsers(dest="task", required=True, metavar="TASK")

    p = _finetune_parser(tasks, "classify", "text or text-pair classification, multi-label, or regression",
                         "CSV, TSV or JSONL with columns text[, text_pair], label", 128)
    _add_column_options(p)
    p.add_argument("--problem-type", choices=("classification", "multilabel", "regression"),
                   help="default: inferred from the labels")
    _add_stride(p)

    p = _finetune_parser(tasks, "ner", "named entities / token tagging (CoNLL files, BIO or IOBES)",
                         "CoNLL-style file: a token and a tag per line, a blank line between sentences", 128)
    _add_stride(p)
    p.add_argument("--label-all-tokens", action="store_true",
                   help="train on every word piece (default: the first piece of each word)")
    p.add_argument("--token-column", type=int, default=0, help="column of the token (default 0)")
    p.add_argument("--tag-column", type=int, default=-1, help="column of the tag (default -1, the last)")

    p = _finetune_parser(tasks, "qa", "extractive question answering (SQuAD v1.1 / v2.0 JSON)",
                         "SQuAD-format JSON", 384)
    p.add_argument("--doc-stride", type=int, default=128, help="context tokens shared by consecutive windows")
    p.add_argument("--max-query-length", type=int, default=64, help="question tokens kept (default 64)")
    p.add_argument("--version-2", action=argparse.BooleanOptionalAction, default=None,
                   help="questions may have no answer (default: on if the training file has impossible questions)")
    p.add_argument("--max-answer-length", type=int, default=30, help="longest answer in tokens (default 30)")
    p.add_argument("--n-best", type=int, default=20, help="start/end candidates per window (default 20)")
    p.add_argument("--null-threshold", type=float, default=0.0, help="v2: answer nothing above this margin")

    p = _finetune_parser(tasks, "similarity", "a bi-encoder for sentence embeddings (scored or positive pairs)",
                         "CSV, TSV or JSONL with text, text_pair and an optional score column (label)", 128)
    _add_column_options(p)
    p.add_argument("--pooling", choices=("mean", "cls"), default="mean")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                   help="unit-length embeddings (default on)")
    p.add_argument("--loss", choices=("cosine", "contrastive"), default=None,
                   help="default: cosine for scored pairs, in-batch contrastive for positive pairs")
    p.add_argument("--score-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="scores' range, mapped onto cosine 0..1 (default: the training set's min and max)")
    p.add_argument("--scale", type=float, default=20.0, help="contrastive loss: cosine scale (default 20)")
    p.add_argument("--symmetric", action="store_true", help="contrastive loss in both directions")

    p = _finetune_parser(tasks, "multiple-choice", "pick the right ending (SWAG-style CSV/JSONL)",
                         "CSV, TSV or JSONL with context, ending0..endingN, label", 128)
    p.add_argument("--context-column", default="context", help="column with the shared context (default: context)")

    p = sub.add_parser("predict", help="predict with a fine-tuned model (any task); one JSON object per input")
    p.add_argument("model", metavar="MODEL_DIR", help="a directory written by `bertkit finetune`")
    p.add_argument("text", nargs="*", help="inputs: texts (classify, ner), text pairs in turn (similarity), "
                   "questions (qa, with --context), or CONTEXT ENDING ENDING... (multiple-choice)")
    p.add_argument("--input", help="one text per line, or a CSV/TSV/JSONL table: text[, text_pair]; qa: question, "
                   "context; multiple-choice: context, ending0, ...")
    p.add_argument("--context", help="qa: the passage the questions are about")
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per window; longer texts are read in overlapping windows (default: as trained)")
    add_backend_option(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="metrics of a fine-tuned model (any task) on a labelled file, as JSON")
    p.add_argument("model", metavar="MODEL_DIR", help="a directory written by `bertkit finetune`")
    p.add_argument("--data", required=True, help="labelled file in the task's training format")
    p.add_argument("--max-length", type=int, default=None, help="tokens per window (default: as trained)")
    _add_column_options(p)
    add_backend_option(p)
    p.set_defaults(func=cmd_evaluate)
