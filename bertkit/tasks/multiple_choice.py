"""Multiple choice (SWAG-style): pick the right ending for a context.

Each choice is read as a pair (`[CLS] context [SEP] ending [SEP]` for BERT; cut longest-first to max_length) and
scored by `BertForMultipleChoice`; a softmax across the choices gives their probabilities. Data: a
table with `context`, `ending0` .. `endingN` and `label` (see `readers.read_multiple_choice`).
Metric: accuracy (the best-model metric) and the eval loss.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import checkpoint
from ..batching import Feature
from ..heads import BertForMultipleChoice
from ..infer import forward_batches
from ..metrics import accuracy
from ..readers import MultipleChoiceExample, read_multiple_choice
from ..tokenizer import Tokenizer
from ..train import TrainArgs, TrainResult, fit, prepare_output_dir, seed_everything, warn_no_eval_data

logger = logging.getLogger("bertkit")

TASK = "multiple-choice"


def default_max_length(model: BertForMultipleChoice, tokenizer: Tokenizer) -> int:
    """The fine-tuning max_length saved with the model, else as long as both tokenizer and model allow."""
    saved = model.config.task_settings(TASK)
    if saved:
        return saved["max_length"]
    return min(tokenizer.model_max_length, model.config.max_position_embeddings)


def encode(examples: Sequence[MultipleChoiceExample], tokenizer: Tokenizer, max_length: int,
           source: str) -> list[Feature]:
    """One feature per example: input_ids (and token_type_ids, when the tokenizer has them) are lists with
    one sequence per choice."""
    contexts = [e.context for e in examples for _ in e.endings]
    endings = [ending for e in examples for ending in e.endings]
    encoded = tokenizer(contexts, endings, max_length=max_length, padding=False, return_tensors=None)
    if encoded.num_truncated:
        logger.warning("%s: %d of %d (context, ending) pairs were longer than %d tokens and were truncated "
                       "(longest first)", source, encoded.num_truncated, len(endings), max_length)
    features, start = [], 0
    for example in examples:
        end = start + len(example.endings)
        feature: Feature = {key: column[start:end] for key, column in
                            (("input_ids", encoded.input_ids), ("token_type_ids", encoded.token_type_ids))
                            if column is not None}
        if example.label is not None:
            feature["labels"] = example.label
        features.append(feature)
        start = end
    return features


@torch.no_grad()
def predict_logits(model: BertForMultipleChoice, features: Sequence[Feature], pad_token_id: int,
                   batch_size: int = 32) -> list[np.ndarray]:
    """Each example's (choices,) logits, in input order; a batch holds examples with equally many choices."""
    logits: list[np.ndarray] = [np.empty(0)] * len(features)
    by_choices: dict[int, list[int]] = defaultdict(list)
    for i, feature in enumerate(features):
        by_choices[len(feature["input_ids"])].append(i)
    for indices in by_choices.values():
        for batch, out in forward_batches(model, [features[i] for i in indices], pad_token_id, batch_size):
            for j, row in zip(batch, out):
                logits[indices[j]] = row
    return logits


def evaluate(model: BertForMultipleChoice, features: Sequence[Feature], pad_token_id: int) -> dict[str, float]:
    """Accuracy and mean cross-entropy over labelled examples (a file has one number of choices)."""
    logits = torch.from_numpy(np.stack(predict_logits(model, features, pad_token_id)))
    labels = torch.tensor([f["labels"] for f in features])
    return {"loss": float(F.cross_entropy(logits, labels)), "accuracy": accuracy(logits.argmax(-1), labels)}


def evaluate_file(model: BertForMultipleChoice, tokenizer: Tokenizer, data_file: str | os.PathLike, *,
                  max_length: int | None = None, context_column: str | None = None) -> dict[str, float]:
    """`evaluate` on a SWAG-style file, with the model's saved max_length and context column by default."""
    saved = model.config.task_settings(TASK)
    examples = read_multiple_choice(data_file, context_column=context_column or saved.get("context_column", "context"))
    features = encode(examples, tokenizer, max_length or default_max_length(model, tokenizer), str(data_file))
    return {"examples": len(examples), **evaluate(model, features, tokenizer.pad_token_id)}


def predict(model: BertForMultipleChoice, tokenizer: Tokenizer, contexts: Sequence[str],
            endings: Sequence[Sequence[str]], max_length: int | None = None) -> list[dict[str, Any]]:
    """For each context: the index and text of the most probable ending and every ending's probability."""
    if len(contexts) != len(endings):
        raise ValueError(f"got {len(contexts)} contexts but {len(endings)} lists of endings")
    for i, options in enumerate(endings):
        if isinstance(options, str) or len(options) < 2:
            raise ValueError(f"context {i}: give a list of at least two endings, got {options!r}")
    if not contexts:
        return []
    examples = [MultipleChoiceExample(c, list(e), None, i + 1) for i, (c, e) in enumerate(zip(contexts, endings))]
    features = encode(examples, tokenizer, max_length or default_max_length(model, tokenizer), "<input>")
    results = []
    for example, row in zip(examples, predict_logits(model, features, tokenizer.pad_token_id)):
        probs = torch.from_numpy(row).softmax(-1)
        best = int(probs.argmax())
        results.append({"label": best, "ending": example.endings[best], "scores": [round(float(p), 6) for p in probs]})
    return results


def finetune(model_dir: str | Path, train_file: str | Path, eval_file: str | Path | None, args: TrainArgs, *,
             max_length: int = 128, context_column: str = "context") -> TrainResult:
    """Fine-tune a pretrained encoder on a SWAG-style file; the best model lands in args.output_dir."""
    # Read and check everything before a model is loaded or a file written.
    train_examples = read_multiple_choice(train_file, context_column=context_column)
    eval_examples = read_multiple_choice(eval_file, context_column=context_column) if eval_file else []
    checkpoint.check_max_length(model_dir, max_length)
    tokenizer = checkpoint.model_tokenizer(model_dir)
    train_features = encode(train_examples, tokenizer, max_length, str(train_file))
    eval_features = encode(eval_examples, tokenizer, max_length, str(eval_file)) if eval_examples else []
    prepare_output_dir(args, inputs={"--model": model_dir, "--train": train_file, "--eval": eval_file},
                       settings={"task": TASK, "max_length": max_length, "context_column": context_column})

    seed_everything(args.seed)  # the new scoring layer's initialisation
    model = BertForMultipleChoice.from_pretrained(model_dir, attn_implementation="sdpa")
    model.config.extra["bertkit"] = {"task": TASK, "max_length": max_length, "context_column": context_column}
    if not eval_features:
        warn_no_eval_data()
        eval_features = train_features
    args.metric, args.greater_is_better = "accuracy", True
    logger.info("%s: %d training examples, %d choices each", train_file, len(train_features),
                len(train_examples[0].endings))
    return fit(model, train_features, args, lambda m: evaluate(m, eval_features, tokenizer.pad_token_id),
               tokenizer.pad_token_id, tokenizer)
