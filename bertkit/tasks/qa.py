"""Extractive question answering (SQuAD v1.1 / v2.0): data -> windows -> spans -> EM/F1.

A feature is the question and a context window in the tokenizer's pair layout: BERT's
``[CLS] question [SEP] context-window [SEP]`` (token types 0 then 1), RoBERTa's
``<s> question </s></s> context-window </s>`` (no token types). Question and
context are tokenised once each; the question is cut to ``max_query_length`` tokens and the context
is covered by overlapping windows (``doc_stride`` shared tokens, as transformers' run_qa). Answers
are predicted as token spans and mapped back to characters of the original context through the
tokenizer's offsets, so accents, CJK and odd spacing come back exactly as written.

The windows equal transformers' ``tokenizer(question, context, truncation="only_second",
stride=doc_stride, return_overflowing_tokens=True)``. transformers' run_qa never cuts the question
(a long one leaves no room and fails); here, as in BERT's run_squad, it is cut to max_query_length.
"""

from __future__ import annotations

import logging
import math
import os
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import checkpoint
from ..batching import Feature
from ..checkpoint import check_max_length
from ..heads import BertForQuestionAnswering
from ..infer import forward_outputs
from ..metrics import squad_metrics
from ..readers import QAExample, read_squad
from ..tokenizer import Tokenizer
from ..train import TrainArgs, TrainResult, fit, prepare_output_dir, seed_everything, warn_no_eval_data
from ..windows import Span, most_central_window, window_spans

logger = logging.getLogger("bertkit")

CharSpan = tuple[int, int]  # [start, end) in characters of the original text


@dataclass(frozen=True)
class QASettings:
    """How examples become features and logits become answers; saved in config.json["bertkit"]."""

    max_length: int = 384  # tokens per feature, specials included
    doc_stride: int = 128  # context tokens shared by consecutive windows
    max_query_length: int = 64  # question tokens kept (the rest is cut)
    version_2: bool = False  # SQuAD 2.0: questions may have no answer ("")
    max_answer_length: int = 30  # longest predicted answer, in tokens
    n_best: int = 20  # start and end candidates per window (and answers kept for the probability)
    null_threshold: float = 0.0  # v2: answer "" when null score - best span score exceeds this

    def __post_init__(self) -> None:
        for name in ("max_length", "max_query_length", "max_answer_length", "n_best"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        room = self.max_length - self.max_query_length - 3  # the smallest window a question can leave
        if not 0 <= self.doc_stride < room:
            raise ValueError(f"doc_stride {self.doc_stride} must be at least 0 and smaller than max_length - "
                             f"max_query_length - 3 = {room} (the smallest context window)")

    @classmethod
    def from_model(cls, model: BertForQuestionAnswering, **overrides: Any) -> QASettings:
        """The settings the model was trained with (config.json's "bertkit"), then `overrides` not None."""
        saved = model.config.task_settings("qa")
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown QA setting(s): {', '.join(sorted(unknown))}")
        values = {k: v for k, v in saved.items() if k in names}
        values.setdefault("max_length", min(cls.max_length, model.config.max_position_embeddings))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_config(self) -> dict[str, Any]:
        return {"task": "qa", **asdict(self)}


# --------------------------------------------------------------------------- features

def _content_tokens(tokenizer: Tokenizer, texts: Sequence[str]) -> tuple[list[list[int]], list[list[CharSpan]]]:
    """Ids and character offsets of each text, without special tokens."""
    if not texts:
        return [], []
    encoded = tokenizer(list(texts), padding=False, truncation=False, return_tensors=None, return_offsets=True,
                        add_special_tokens=False)
    return encoded.input_ids, [[tuple(o) for o in offsets] for offsets in encoded.offsets]


def answer_token_span(offsets: Sequence[CharSpan], char_start: int, char_end: int) -> tuple[int, int] | None:
    """First and last token overlapping characters [char_start, char_end); tokens that an answer starts
    or ends inside are taken whole. None when no token overlaps (the answer is only whitespace)."""
    first = bisect_right([end for _, end in offsets], char_start)  # first token ending after char_start
    last = bisect_left([start for start, _ in offsets], char_end) - 1  # last token starting before char_end
    return (first, last) if first <= last else None


def encode(examples: Sequence[QAExample], tokenizer: Tokenizer, settings: QASettings, *, targets: bool = True,
           source: str = "<input>") -> list[Feature]:
    """One feature per context window of each example, in example order.

    Besides the model inputs a feature holds ``example`` (index into `examples`), ``window`` (its
    [start, end) in context tokens), ``context_start`` (where the window begins in input_ids) and
    ``offsets`` (character spans of the window's tokens). With `targets`, ``start_positions`` /
    ``end_positions`` point at the first gold answer when it lies wholly inside the window, else at
    the first token ([CLS], <s>: 0), as BERT and transformers train (impossible questions always point there).
    """
    q_ids, _ = _content_tokens(tokenizer, [e.question for e in examples])
    contexts = list(dict.fromkeys(e.context for e in examples))  # SQuAD asks many questions per paragraph
    c_ids, c_offsets = (dict(zip(contexts, column)) for column in _content_tokens(tokenizer, contexts))
    layout = tokenizer.layout(pair=True)
    features: list[Feature] = []
    cut = windowed = unreachable = 0
    for i, example in enumerate(examples):
        question = q_ids[i][:settings.max_query_length]
        cut += len(question) < len(q_ids[i])
        ids, offsets = c_ids[example.context], c_offsets[example.context]
        spans = window_spans(len(ids), settings.max_length - len(question) - layout.num_special_tokens,
                             settings.doc_stride)
        windowed += len(spans) > 1
        answer = None
        if targets and example.answers and not example.is_impossible:
            text, char_start = example.answers[0]
            answer = answer_token_span(offsets, char_start, char_start + len(text))
        inside = [answer is not None and start <= answer[0] and answer[1] < end for start, end in spans]
        unreachable += targets and bool(example.answers) and not example.is_impossible and not any(inside)
        context_start = layout.second_start(len(question))
        for (start, end), answer_inside in zip(spans, inside):
            feature: Feature = {
                **tokenizer.build_inputs(question, ids[start:end]),
                "example": i, "window": (start, end), "context_start": context_start, "offsets": offsets[start:end],
            }
            if targets:
                feature["start_positions"] = context_start + answer[0] - start if answer_inside else 0
                feature["end_positions"] = context_start + answer[1] - start if answer_inside else 0
            features.append(feature)
    if cut:
        logger.warning("%s: %d of %d questions were longer than %d tokens and were cut", source, cut, len(examples),
                       settings.max_query_length)
    if windowed:
        logger.info("%s: %d of %d questions have a context longer than one window of %d tokens; it is read "
                    "as overlapping windows (%d features in all, doc_stride %d)", source, windowed, len(examples),
                    settings.max_length, len(features), settings.doc_stride)
    if unreachable:
        logger.warning("%s: the first answer of %d question(s) lies in no single window (or covers no token); "
                       "their target is the first token in every window", source, unreachable)
    return features


# --------------------------------------------------------------------------- logits -> answers

def _top(logits: np.ndarray, k: int) -> list[int]:
    """Indices of the k largest values, the earlier first on ties."""
    return np.argsort(-logits, kind="stable")[:k].tolist()


def _softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def postprocess(examples: Sequence[QAExample], features: Sequence[Feature], start_logits: Sequence[Any],
                end_logits: Sequence[Any], n_best: int = 20, max_answer_length: int = 30, version_2: bool = False,
                null_threshold: float = 0.0) -> dict[str, dict[str, Any]]:
    """Best answer per example id: ``{"answer", "start", "end", "score"}`` (characters of the context).

    Candidate spans pair each window's `n_best` start and end tokens: both in the context part,
    start <= end, at most `max_answer_length` tokens, and the start token read in the window where
    it is most central (BERT's run_squad rule, so overlapping windows do not vote twice). A span
    scores start + end logit. v2: the null score is the lowest [CLS] start + end over the windows,
    and "" (start/end None) is predicted when it beats the best span by more than `null_threshold`.
    ``score`` is the softmax probability of the prediction among the `n_best` best spans (and, v2,
    the null answer).
    """
    owned: dict[int, list[int]] = defaultdict(list)
    for f, feature in enumerate(features):
        owned[feature["example"]].append(f)
    predictions: dict[str, dict[str, Any]] = {}
    for e, example in enumerate(examples):
        windows = owned[e]
        spans: list[Span] = [features[f]["window"] for f in windows]
        owner = most_central_window(spans, spans[-1][1]) if spans else []
        candidates: list[tuple[float, int, int]] = []  # (score, char start, char end)
        null_score = math.inf
        for w, f in enumerate(windows):
            feature = features[f]
            n = len(feature["input_ids"])
            starts = np.asarray(start_logits[f][:n], dtype=np.float64)
            ends = np.asarray(end_logits[f][:n], dtype=np.float64)
            null_score = min(null_score, float(starts[0] + ends[0]))
            first, offsets, window_start = feature["context_start"], feature["offsets"], feature["window"][0]
            last = first + len(offsets) - 1
            top_ends = _top(ends, n_best)
            for a in _top(starts, n_best):
                if not first <= a <= last or owner[window_start + a - first] != w:
                    continue
                for b in top_ends:
                    if a <= b <= last and b - a < max_answer_length:
                        candidates.append((float(starts[a] + ends[b]), offsets[a - first][0], offsets[b - first][1]))
        candidates = sorted(candidates, key=lambda c: -c[0])[:n_best]
        scores = [c[0] for c in candidates] + ([null_score] if version_2 and spans else [])
        probs = _softmax(scores) if scores else []
        no_answer = not candidates or (version_2 and null_score - candidates[0][0] > null_threshold)
        if no_answer:
            predictions[example.id] = {"answer": "", "start": None, "end": None,
                                       "score": probs[-1] if version_2 and probs else 0.0}
        else:
            _, char_start, char_end = candidates[0]
            predictions[example.id] = {"answer": example.context[char_start:char_end], "start": char_start,
                                       "end": char_end, "score": probs[0]}
    return predictions


# --------------------------------------------------------------------------- model

@torch.no_grad()
def predict_logits(model: BertForQuestionAnswering, features: Sequence[Feature], pad_token_id: int,
                   batch_size: int = 64) -> tuple[list[np.ndarray], list[np.ndarray], float | None]:
    """Per feature, its start and end logits (unpadded), batching by length; and the mean loss over
    features when they carry start/end positions (else None)."""
    starts: list[np.ndarray] = [np.empty(0)] * len(features)
    ends: list[np.ndarray] = [np.empty(0)] * len(features)
    loss_sum, with_targets = 0.0, bool(features) and "start_positions" in features[0]
    for batch, out in forward_outputs(model, features, pad_token_id, batch_size, with_targets):
        if with_targets:
            loss_sum += float(out.loss) * len(batch)
        start_rows, end_rows = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        for row, i in enumerate(batch):
            n = len(features[i]["input_ids"])
            starts[i], ends[i] = start_rows[row, :n], end_rows[row, :n]
    return starts, ends, loss_sum / len(features) if with_targets else None


def _answers(examples: Sequence[QAExample], features: Sequence[Feature], starts: Sequence[np.ndarray],
             ends: Sequence[np.ndarray], settings: QASettings) -> dict[str, dict[str, Any]]:
    return postprocess(examples, features, starts, ends, settings.n_best, settings.max_answer_length,
                       settings.version_2, settings.null_threshold)


def references(examples: Sequence[QAExample]) -> dict[str, list[str]]:
    """Gold answer texts per id, [] for an impossible question (squad_metrics' no-answer)."""
    return {e.id: [text for text, _ in e.answers] for e in examples}


def evaluate(model: BertForQuestionAnswering, examples: Sequence[QAExample], features: Sequence[Feature],
             pad_token_id: int, settings: QASettings, batch_size: int = 64) -> dict[str, float]:
    """squad_metrics of the predicted answers (percent) plus the mean eval loss over features."""
    starts, ends, loss = predict_logits(model, features, pad_token_id, batch_size)
    predictions = _answers(examples, features, starts, ends, settings)
    metrics = squad_metrics({qid: p["answer"] for qid, p in predictions.items()}, references(examples))
    return {**metrics, "loss": loss} if loss is not None else metrics


def _warn_if_v2_data(examples: Sequence[QAExample], settings: QASettings, source: str) -> None:
    impossible = sum(e.is_impossible for e in examples)
    if impossible and not settings.version_2:
        logger.warning("%s: %d question(s) have no answer (SQuAD 2.0), but the model was trained for SQuAD 1.1 "
                       "and always answers", source, impossible)


def evaluate_file(model: BertForQuestionAnswering, tokenizer: Tokenizer, data_file: str | os.PathLike, *,
                  settings: QASettings | None = None, batch_size: int = 64) -> dict[str, float]:
    """EM/F1 (squad_metrics' keys) and loss of `model` on a SQuAD file; settings default to the model's."""
    settings = settings or QASettings.from_model(model)
    examples = read_squad(data_file)
    _warn_if_v2_data(examples, settings, str(data_file))
    features = encode(examples, tokenizer, settings, source=str(data_file))
    return evaluate(model, examples, features, tokenizer.pad_token_id, settings, batch_size)


def predict(model: BertForQuestionAnswering, tokenizer: Tokenizer, questions: Sequence[str],
            contexts: Sequence[str], *, settings: QASettings | None = None,
            batch_size: int = 64) -> list[dict[str, Any]]:
    """Per (question, context): ``{"answer", "start", "end", "score"}``; start/end index the context's
    characters (None, with answer "", when a v2 model finds no answer)."""
    if len(questions) != len(contexts):
        raise ValueError(f"got {len(questions)} questions but {len(contexts)} contexts")
    settings = settings or QASettings.from_model(model)
    examples = [QAExample(str(i), q, c, [], False) for i, (q, c) in enumerate(zip(questions, contexts))]
    features = encode(examples, tokenizer, settings, targets=False)
    starts, ends, _ = predict_logits(model, features, tokenizer.pad_token_id, batch_size)
    predictions = _answers(examples, features, starts, ends, settings)
    return [predictions[e.id] for e in examples]


def finetune(model_dir: str | Path, train_file: str | Path, eval_file: str | Path | None, args: TrainArgs, *,
             max_length: int = 384, doc_stride: int = 128, max_query_length: int = 64, version_2: bool | None = None,
             max_answer_length: int = 30, n_best: int = 20, null_threshold: float = 0.0) -> TrainResult:
    """Fine-tune a pretrained encoder on SQuAD JSON; the model with the best eval F1 lands in args.output_dir.

    `version_2` defaults to whether any training question is impossible.
    """
    # Read and check everything before a model is loaded or a file written.
    train_examples = read_squad(train_file)
    eval_examples = read_squad(eval_file) if eval_file else []
    has_impossible = any(e.is_impossible for e in train_examples)
    if version_2 is None:
        version_2 = has_impossible
    elif has_impossible and not version_2:
        first = next(e for e in train_examples if e.is_impossible)
        raise ValueError(f"{train_file}: {first.where}: an impossible (SQuAD 2.0) question, but version_2=False")
    settings = QASettings(max_length, doc_stride, max_query_length, version_2, max_answer_length, n_best,
                          null_threshold)
    check_max_length(model_dir, max_length)
    tokenizer = checkpoint.model_tokenizer(model_dir)
    train_features = encode(train_examples, tokenizer, settings, source=str(train_file))
    if eval_examples:
        _warn_if_v2_data(eval_examples, settings, str(eval_file))
        eval_features = encode(eval_examples, tokenizer, settings, source=str(eval_file))
    else:
        warn_no_eval_data()
        eval_examples, eval_features = train_examples, train_features
    prepare_output_dir(args, inputs={"--model": model_dir, "--train": train_file, "--eval": eval_file},
                       settings=settings.to_config())

    seed_everything(args.seed)  # the new qa_outputs layer's initialisation
    model = BertForQuestionAnswering.from_pretrained(model_dir, attn_implementation="sdpa")
    model.config.extra["bertkit"] = settings.to_config()
    args.metric, args.greater_is_better = "f1", True
    logger.info("%s: %d questions, %d features (SQuAD %s)", train_file, len(train_examples), len(train_features),
                "2.0" if version_2 else "1.1")
    return fit(model, train_features, args,
               lambda m: evaluate(m, eval_examples, eval_features, tokenizer.pad_token_id, settings),
               tokenizer.pad_token_id, tokenizer)


__all__ = ["QASettings", "answer_token_span", "encode", "evaluate", "evaluate_file", "finetune", "postprocess",
           "predict", "predict_logits", "references"]
