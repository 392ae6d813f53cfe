"""Sequence (and sentence-pair) classification and regression: data -> features -> metrics -> predictions.

Labels come from the `label` column: names and whole numbers are classes (sorted, stored in config.json as
id2label/label2id), lists are multi-label, and fractional numbers are regression targets (`readers.
infer_label_kind` has the rules; `problem_type` overrides them). The kind inferred is printed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import checkpoint
from ..batching import Feature, collate_labels
from ..checkpoint import check_max_length
from ..heads import BertForSequenceClassification
from ..infer import forward_batches
from ..metrics import classification_metrics, multilabel_metrics, regression_metrics
from ..readers import DataError, Record, infer_label_kind, read_table
from ..tokenizer import Tokenizer
from ..windows import MAX_WINDOWS, cap_windows, window_spans
from ..train import TrainArgs, TrainResult, fit, prepare_output_dir, seed_everything, warn_no_eval_data

logger = logging.getLogger("bertkit")

PROBLEM_TYPES = {"classification": "single_label_classification", "multilabel": "multi_label_classification",
                 "regression": "regression"}
BEST_METRIC = {"classification": "accuracy", "multilabel": "micro_f1", "regression": "spearman"}


@dataclass
class Columns:
    text: str = "text"
    text_pair: str = "text_pair"
    label: str = "label"


def label_kind(records: Sequence[Record], requested: str | None = None) -> str:
    """classification | multilabel | regression: as the user says, else inferred from the labels."""
    if requested is not None and requested not in PROBLEM_TYPES:
        raise ValueError(f"problem type {requested!r} must be one of {list(PROBLEM_TYPES)}")
    if requested in (None, "regression"):
        return infer_label_kind(records, regression=requested == "regression")
    return requested


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def describe_labels(records: Sequence[Record], kind: str, id2label: dict[int, str], source: str | Path,
                    inferred: bool) -> None:
    """Refuse a single class; say which kind of task the labels were read as."""
    if kind == "classification" and len(id2label) < 2:
        lines = [r.line for r in records]
        raise DataError(f"every label is {id2label[0]!r} ({len(records)} records, lines {min(lines)}-{max(lines)}): "
                        "classification needs at least two classes", path=source)
    if not inferred:
        return
    if kind == "regression":
        scores = [float(r.label) for r in records]
        what = f"scores from {min(scores):g} to {max(scores):g}: regression"
    else:
        names = list(id2label.values())
        shown = ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
        what = f"{len(names)} {'labels' if kind == 'multilabel' else 'classes'} ({shown}): {kind}"
    logger.warning("%s: %s, inferred from the labels (--problem-type sets it)", source, what)


def build_labels(records: Sequence[Record], kind: str) -> dict[int, str]:
    """id2label: sorted class names (numbers sorted numerically), or a single "score" for regression."""
    if kind == "regression":
        return {0: "score"}
    names = {str(x) for r in records for x in (r.label if isinstance(r.label, list) else [r.label])}
    ordered = sorted(names, key=lambda n: (0, float(n), n) if _is_number(n) else (1, 0.0, n))
    return dict(enumerate(ordered))


def encode(records: Sequence[Record], tokenizer: Tokenizer, max_length: int, label2id: dict[str, int] | None,
           kind: str, source: str, stride: int | None = None, max_windows: int = 0) -> list[Feature]:
    """Tokenise and attach label ids; unknown labels name their line.

    A single text longer than `max_length` becomes several overlapping windows (`stride` shared tokens,
    default max_length // 4), each a feature with the text's label; `feature["example"]` says whose
    window it is, and predictions average the windows' logits. `max_windows` (training: see
    `windows.cap_windows`) keeps at most that many per text, spread evenly over it; 0 keeps all. Pairs (the
    tokenizer's pair layout, e.g. [CLS] A [SEP] B [SEP]) are cut longest-first instead. Either way the log says how
    many inputs it concerned.
    """
    pairs = [r.text_pair for r in records] if records and records[0].text_pair is not None else None
    texts = [r.text for r in records]
    if pairs is not None:
        encoded = tokenizer(texts, pairs, max_length=max_length, padding=False, return_tensors=None)
        if encoded.num_truncated:
            logger.warning("%s: %d of %d text pairs were longer than %d tokens and were truncated (longest first)",
                           source, encoded.num_truncated, len(records), max_length)
        pieces = [[row] for row in encoded.rows()]
    else:
        pieces = _windows(tokenizer, texts, max_length, max_length // 4 if stride is None else stride, source)
        if max_windows:
            pieces = cap_windows(pieces, max_windows, source, "texts", [r.line for r in records])
    features = []
    for i, record in enumerate(records):
        label = _label_value(record, kind, label2id, source) if record.label is not None and label2id is not None else None
        for inputs in pieces[i]:
            feature: Feature = {**inputs, "example": i}
            if label is not None:
                feature["labels"] = label
            features.append(feature)
    return features


def _windows(tokenizer: Tokenizer, texts: list[str], max_length: int, stride: int,
             source: str) -> list[list[dict[str, list[int]]]]:
    """Per text, the model inputs of its windows laid out as the tokenizer lays out one text (e.g.
    [CLS] window [SEP]): one when it fits, overlapping windows when it does not."""
    encoded = tokenizer(texts, padding=False, truncation=False, return_tensors=None, add_special_tokens=False)
    pieces, windowed, windows = [], 0, 0
    for content in encoded.input_ids:
        spans = window_spans(len(content), max_length - tokenizer.num_special_tokens(), stride)
        if len(spans) > 1:
            windowed, windows = windowed + 1, windows + len(spans)
        pieces.append([tokenizer.build_inputs(content[start:end]) for start, end in spans])
    if windowed:
        logger.warning("%s: %d of %d texts were longer than %d tokens and were read as %d overlapping windows "
                       "(stride %d); their predictions average the windows' logits",
                       source, windowed, len(texts), max_length, windows, stride)
    return pieces


def _label_value(record: Record, kind: str, label2id: dict[str, int], source: str) -> Any:
    if kind == "regression":
        if not _is_number(record.label):
            raise DataError(f"{source}, line {record.line}: label {record.label!r} is not a number (regression)")
        return float(record.label)
    names = record.label if isinstance(record.label, list) else [record.label]
    for name in names:
        if str(name) not in label2id:
            raise DataError(f"{source}, line {record.line}: label {name!r} was not seen in the training data "
                            f"(known: {', '.join(sorted(label2id))})")
    if kind == "multilabel":
        hot = [0.0] * len(label2id)
        for name in names:
            hot[label2id[str(name)]] = 1.0
        return hot
    return label2id[str(record.label)]


@torch.no_grad()
def predict_logits(model: BertForSequenceClassification, features: Sequence[Feature], pad_token_id: int,
                   batch_size: int = 64) -> np.ndarray:
    """(examples, labels) logits in input order, batching by length; windows of one text are averaged."""
    logits = np.empty((len(features), model.config.num_labels), dtype=np.float32)
    for batch, batch_logits in forward_batches(model, features, pad_token_id, batch_size):
        logits[batch] = batch_logits
    owner = np.array([f.get("example", i) for i, f in enumerate(features)], dtype=np.int64)
    count = int(owner.max()) + 1 if len(features) else 0
    summed = np.zeros((count, logits.shape[1]), dtype=np.float64)
    np.add.at(summed, owner, logits)
    return (summed / np.bincount(owner, minlength=count)[:, None]).astype(np.float32)


def example_labels(features: Sequence[Feature]) -> list[Any]:
    """One label per example (windows of one text share it)."""
    seen: dict[int, Any] = {}
    for i, f in enumerate(features):
        seen.setdefault(f.get("example", i), f["labels"])
    return [seen[k] for k in sorted(seen)]


def window_settings(model: BertForSequenceClassification, max_length: int | None) -> tuple[int, int]:
    """(max_length, stride) for inference: as given, else as trained, else 512 tokens with a quarter overlap."""
    saved = model.config.task_settings("classify")
    if max_length is None:
        max_length = int(saved.get("max_length", min(512, model.config.max_position_embeddings)))
        return max_length, int(saved.get("stride", max_length // 4))
    return max_length, max_length // 4


def compute_metrics(logits: np.ndarray, features: Sequence[Feature], kind: str) -> dict[str, float]:
    labels = example_labels(features)
    if kind == "regression":
        return regression_metrics(logits[:, 0], labels)
    if kind == "multilabel":
        return multilabel_metrics((logits > 0).astype(int), np.array(labels, dtype=int))
    return classification_metrics(logits.argmax(-1).tolist(), labels)


def evaluate(model: BertForSequenceClassification, features: Sequence[Feature], pad_token_id: int,
             kind: str) -> dict[str, float]:
    """Task metrics plus the mean eval loss."""
    logits = predict_logits(model, features, pad_token_id)
    labels = collate_labels(example_labels(features), 0)
    loss = float(model.loss(torch.from_numpy(logits), labels))
    return {"loss": loss, **compute_metrics(logits, features, kind)}


def evaluate_file(model: BertForSequenceClassification, tokenizer: Tokenizer, data_file: str | Path, *,
                  columns: Columns = Columns(), max_length: int | None = None) -> dict[str, float]:
    """Metrics of a fine-tuned classifier on a labelled table (long texts read in windows)."""
    records = read_table(data_file, text_column=columns.text, pair_column=columns.text_pair, label_column=columns.label)
    kind = {v: k for k, v in PROBLEM_TYPES.items()}[model.config.problem_type or "single_label_classification"]
    max_length, stride = window_settings(model, max_length)
    features = encode(records, tokenizer, max_length, model.config.label2id, kind, str(data_file), stride)
    return {"examples": len(records), **evaluate(model, features, tokenizer.pad_token_id, kind)}


def finetune(model_dir: str | Path, train_file: str | Path, eval_file: str | Path | None, args: TrainArgs,
             max_length: int = 128, columns: Columns = Columns(), problem_type: str | None = None,
             stride: int | None = None, max_windows: int = MAX_WINDOWS) -> TrainResult:
    """Fine-tune a pretrained encoder on a labelled table; the best model lands in args.output_dir.
    `max_windows`: training windows kept per long text (see `encode`)."""
    # Read and check everything before a model is loaded or a file written.
    train_records = read_table(train_file, text_column=columns.text, pair_column=columns.text_pair,
                               label_column=columns.label)
    eval_records = read_table(eval_file, text_column=columns.text, pair_column=columns.text_pair,
                              label_column=columns.label) if eval_file else []
    kind = label_kind(train_records, problem_type)
    id2label = build_labels(train_records, kind)
    describe_labels(train_records, kind, id2label, train_file, inferred=problem_type is None)
    label2id = {name: i for i, name in id2label.items()}
    check_max_length(model_dir, max_length)
    tokenizer = checkpoint.model_tokenizer(model_dir)
    stride = max_length // 4 if stride is None else stride
    train_features = encode(train_records, tokenizer, max_length, label2id, kind, str(train_file), stride, max_windows)
    eval_features = (encode(eval_records, tokenizer, max_length, label2id, kind, str(eval_file), stride)
                     if eval_records else [])
    prepare_output_dir(args, inputs={"--model": model_dir, "--train": train_file, "--eval": eval_file},
                       settings={"task": "classify", "max_length": max_length, "stride": stride,
                                 "max_windows": max_windows, "problem_type": kind, "text_column": columns.text,
                                 "pair_column": columns.text_pair, "label_column": columns.label})

    seed_everything(args.seed)  # the new classifier's initialisation
    model = BertForSequenceClassification.from_pretrained(
        model_dir, id2label=id2label, problem_type=PROBLEM_TYPES[kind], attn_implementation="sdpa")
    model.config.extra["bertkit"] = {"task": "classify", "max_length": max_length, "stride": stride}
    if not eval_features:
        warn_no_eval_data()
        eval_features = train_features
    args.metric, args.greater_is_better = BEST_METRIC[kind], True
    logger.info("%s: %d training examples, %d labels (%s)", train_file, len(train_features), len(id2label), kind)
    return fit(model, train_features, args, lambda m: evaluate(m, eval_features, tokenizer.pad_token_id, kind),
               tokenizer.pad_token_id, tokenizer)


def predict(model: BertForSequenceClassification, tokenizer: Tokenizer, texts: Sequence[str],
            pairs: Sequence[str] | None = None, max_length: int | None = None) -> list[dict[str, Any]]:
    """One dict per input: label and probability (multi-label: every label over 0.5; regression: score).

    Long texts are read in windows of `max_length` tokens (default: the length it was trained with)."""
    records = [Record(text=t, text_pair=p, label=None, line=i + 1)
               for i, (t, p) in enumerate(zip(texts, pairs or [None] * len(texts)))]
    max_length, stride = window_settings(model, max_length)
    features = encode(records, tokenizer, max_length, None, "classification", "<input>", stride)
    logits = torch.from_numpy(predict_logits(model, features, tokenizer.pad_token_id))
    problem = model.config.problem_type or "single_label_classification"
    id2label = model.config.id2label
    results = []
    for row in logits:
        if problem == "regression":
            results.append({"score": float(row[0])})
        elif problem == "multi_label_classification":
            probs = row.sigmoid()
            results.append({"labels": [id2label[i] for i in range(len(probs)) if probs[i] > 0.5],
                            "scores": {id2label[i]: round(float(p), 6) for i, p in enumerate(probs)}})
        else:
            probs = row.softmax(-1)
            best = int(probs.argmax())
            results.append({"label": id2label[best], "score": float(probs[best])})
    return results
