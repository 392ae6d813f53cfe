"""Evaluation metrics for the BERT tasks: pure functions over Python lists and numpy arrays.

Each family matches a reference implementation, which the tests check against when it is installed
(none is needed at run time; numpy is the only dependency):

- classification: ``accuracy``, ``macro_f1``, ``matthews_corrcoef`` as scikit-learn's
  ``accuracy_score``, ``f1_score(average="macro", zero_division=0)`` and ``matthews_corrcoef``;
- multi-label: ``multilabel_metrics`` (micro/macro F1 as scikit-learn on indicator matrices, and
  subset accuracy);
- regression: ``pearson``, ``spearman`` (average ranks for ties) as ``scipy.stats``, and
  ``regression_metrics``; an undefined correlation (a constant input) is 0.0, silently;
- NER: ``get_entities`` and ``entity_scores`` as seqeval's default (conlleval-compatible) mode;
- extractive QA: ``normalize_answer``, ``exact_match``, ``f1_score`` and ``squad_metrics`` as the
  official SQuAD v2.0 evaluation script.

Scores are fractions in [0, 1] except ``squad_metrics``, which reports percentages as the official
script does. Mismatched lengths and empty inputs raise ``ValueError``.
"""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Any, Hashable, Iterable, Mapping, Sequence, Union

import numpy as np

__all__ = [
    "accuracy",
    "classification_metrics",
    "entity_scores",
    "exact_match",
    "f1_score",
    "get_entities",
    "macro_f1",
    "matthews_corrcoef",
    "multilabel_metrics",
    "normalize_answer",
    "pearson",
    "regression_metrics",
    "spearman",
    "squad_metrics",
]

ArrayLike = Union[Sequence[Any], np.ndarray]
Entity = tuple[str, int, int]


# --------------------------------------------------------------------------- helpers


def _as_list(x: Any, name: str) -> list:
    """A 1-D list of Python scalars from a list, tuple, numpy array or tensor."""
    if isinstance(x, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of labels, not a string")
    if hasattr(x, "tolist"):
        x = x.tolist()
    out = list(x)
    for item in out:
        if isinstance(item, (list, tuple, np.ndarray)):
            raise ValueError(f"{name} must be 1-D (class ids, not scores or one-hot rows)")
    return out


def _check_pair(a: Sequence, b: Sequence, names: tuple[str, str]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{names[0]} and {names[1]} differ in length: {len(a)} != {len(b)}")
    if len(a) == 0:
        raise ValueError(f"{names[0]} and {names[1]} are empty")


def _sorted_if_possible(items: Iterable[Hashable]) -> list:
    items = list(items)
    try:
        return sorted(items)
    except TypeError:  # mixed, unorderable label types: the order does not change the mean
        return items


def _f1_from_counts(tp: int, n_pred: int, n_true: int) -> float:
    """scikit-learn's F1 = 2·tp / (n_true + n_pred), with zero_division=0 (0.0 when both are 0)."""
    denom = n_true + n_pred
    return 2.0 * tp / denom if denom else 0.0


# --------------------------------------------------------------------------- classification


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of positions where the predicted class equals the true one."""
    p, t = _as_list(preds, "preds"), _as_list(labels, "labels")
    _check_pair(p, t, ("preds", "labels"))
    return sum(a == b for a, b in zip(p, t)) / len(t)


def macro_f1(preds: ArrayLike, labels: ArrayLike, labels_set: Iterable[Hashable] | None = None) -> float:
    """Unweighted mean of per-class F1, as ``sklearn.metrics.f1_score(average="macro")``.

    The classes are ``labels_set`` when given (classes outside it are left out of the mean; a class
    in it that is neither predicted nor true scores 0), else every class seen in ``preds`` or
    ``labels``. A class that is never predicted has precision 0 (zero_division=0), so F1 0.
    """
    p, t = _as_list(preds, "preds"), _as_list(labels, "labels")
    _check_pair(p, t, ("preds", "labels"))
    if labels_set is None:
        classes = _sorted_if_possible(set(p) | set(t))
    else:
        classes = _sorted_if_possible(dict.fromkeys(_as_list(labels_set, "labels_set")))
        if not classes:
            raise ValueError("labels_set is empty")
    n_pred = collections.Counter(p)
    n_true = collections.Counter(t)
    tp = collections.Counter(a for a, b in zip(p, t) if a == b)
    return float(np.mean([_f1_from_counts(tp[c], n_pred[c], n_true[c]) for c in classes]))


def matthews_corrcoef(preds: ArrayLike, labels: ArrayLike) -> float:
    """Multiclass Matthews correlation (Gorodkin's R_K), as ``sklearn.metrics.matthews_corrcoef``.

    With C the confusion matrix, t_k / p_k the true / predicted counts of class k, c = trace(C) and
    s = n samples: MCC = (c·s − Σ t_k·p_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)); 0.0 when the
    denominator is 0 (a single class predicted, or a single class true).
    """
    p, t = _as_list(preds, "preds"), _as_list(labels, "labels")
    _check_pair(p, t, ("preds", "labels"))
    n_pred = collections.Counter(p)
    n_true = collections.Counter(t)
    s = len(t)
    c = sum(a == b for a, b in zip(p, t))
    classes = set(n_pred) | set(n_true)
    # Python ints: exact, and no overflow for any size.
    cov_tp = c * s - sum(n_true[k] * n_pred[k] for k in classes)
    cov_pp = s * s - sum(v * v for v in n_pred.values())
    cov_tt = s * s - sum(v * v for v in n_true.values())
    if cov_pp * cov_tt == 0:
        return 0.0
    return float(cov_tp / math.sqrt(float(cov_pp) * float(cov_tt)))


def classification_metrics(preds: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """{"accuracy", "macro_f1", "mcc"} for single-label classification."""
    return {
        "accuracy": accuracy(preds, labels),
        "macro_f1": macro_f1(preds, labels),
        "mcc": matthews_corrcoef(preds, labels),
    }


# --------------------------------------------------------------------------- multi-label


def _indicator(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except ValueError as e:  # ragged rows
        raise ValueError(f"{name} must be a 2-D 0/1 matrix: {e}") from None
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D 0/1 matrix (samples × labels), got {a.ndim}-D")
    if a.dtype != bool:
        if a.dtype.kind not in "biuf" or not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must hold only 0/1 (threshold scores before calling)")
        a = a.astype(bool)
    return a


def multilabel_metrics(pred_matrix: ArrayLike, label_matrix: ArrayLike) -> dict[str, float]:
    """{"micro_f1", "macro_f1", "subset_accuracy"} of two (samples × labels) 0/1 matrices.

    As scikit-learn on indicator matrices: micro-F1 pools tp/fp/fn over every cell; macro-F1 is the
    mean over *all* columns, a column with no true and no predicted positive scoring 0
    (zero_division=0); subset accuracy is the fraction of rows predicted exactly.
    """
    p, t = _indicator(pred_matrix, "pred_matrix"), _indicator(label_matrix, "label_matrix")
    if p.shape != t.shape:
        raise ValueError(f"pred_matrix and label_matrix differ in shape: {p.shape} != {t.shape}")
    if p.size == 0:
        raise ValueError("pred_matrix and label_matrix are empty")
    tp = (p & t).sum(axis=0)
    n_pred = p.sum(axis=0)
    n_true = t.sum(axis=0)
    return {
        "micro_f1": _f1_from_counts(int(tp.sum()), int(n_pred.sum()), int(n_true.sum())),
        "macro_f1": float(np.mean([_f1_from_counts(int(a), int(b), int(c)) for a, b, c in zip(tp, n_pred, n_true)])),
        "subset_accuracy": float((p == t).all(axis=1).mean()),
    }


# --------------------------------------------------------------------------- regression


def _floats(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got {a.ndim}-D")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _float_pair(x: Any, y: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _floats(x, names[0]), _floats(y, names[1])
    _check_pair(a, b, names)
    return a, b


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    # scipy.stats.pearsonr returns NaN (with a warning) for a constant input; here it is 0.0.
    if (x == x[0]).all() or (y == y[0]).all():
        return 0.0
    xm, ym = x - x.mean(), y - y.mean()
    nx, ny = np.linalg.norm(xm), np.linalg.norm(ym)
    if nx == 0.0 or ny == 0.0:
        return 0.0
    r = float(np.dot(xm / nx, ym / ny))
    return max(-1.0, min(1.0, r))


def _rank(a: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the average of their ranks (scipy.stats.rankdata's "average")."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start index of each run of equal values in the sorted array.
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], len(a)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation, as ``scipy.stats.pearsonr``; 0.0 when either input is constant."""
    a, b = _float_pair(x, y, ("x", "y"))
    return _pearson(a, b)


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation (tied values get their average rank), as ``scipy.stats.spearmanr``;
    0.0 when either input is constant."""
    a, b = _float_pair(x, y, ("x", "y"))
    return _pearson(_rank(a), _rank(b))


def regression_metrics(preds: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """{"pearson", "spearman", "mse"} (STS-B style)."""
    p, t = _float_pair(preds, labels, ("preds", "labels"))
    return {
        "pearson": _pearson(p, t),
        "spearman": _pearson(_rank(p), _rank(t)),
        "mse": float(np.mean((p - t) ** 2)),
    }


# --------------------------------------------------------------------------- NER (seqeval default mode)

_TAG = re.compile(r"^([BIESLU])(?:-(.+))?$", re.DOTALL)
_BILOU = {"L": "E", "U": "S"}


def _split_tag(tag: Any) -> tuple[str, str]:
    """("B", "PER") from "B-PER"; untyped tags ("B", "I", ...) get seqeval's type "_"."""
    if tag == "O":
        return "O", "_"
    m = _TAG.match(tag) if isinstance(tag, str) else None
    if m is None:
        raise ValueError(
            f"unsupported tag {tag!r}: expected 'O' or a prefix-style tag B/I/E/S/L/U, "
            "optionally followed by '-TYPE' (suffix style such as 'PER-B' is not supported)"
        )
    return _BILOU.get(m.group(1), m.group(1)), m.group(2) or "_"


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """seqeval's end_of_chunk: did a chunk end just before this token?"""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag != "O" and prev_type != type_


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """seqeval's start_of_chunk: does a chunk start at this token?"""
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag != "O" and prev_type != type_


def get_entities(tags: Sequence[str]) -> list[Entity]:
    """Chunks of one tag sequence as ``(type, start, end_inclusive)``, in order.

    Exactly seqeval's default-mode ``get_entities`` (conlleval's chunk rules) for prefix-style tags:

    - a chunk starts at B-X and S-X, at I-X / E-X after O, E- or S-, and at any tag whose type
      differs from the previous token's (so I-X after B-Y starts a new X chunk: IOB1 works);
    - a chunk ends after E-X and S-X, before B-, S- and O, and before a change of type;
    - BILOU's L- and U- are read as E- and S- (seqeval does not know them);
    - tags without a type ("B", "I") have type "_", as in seqeval.

    Only "O" and prefix tags are accepted; anything else (suffix style "PER-B", "X-PER") raises
    ``ValueError`` where seqeval would warn and carry on.
    """
    tags = _as_list(tags, "tags")
    chunks: list[Entity] = []
    prev_tag, prev_type, begin = "O", "_", 0
    for i, raw in enumerate([*tags, "O"]):
        tag, type_ = _split_tag(raw)
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    """seqeval's precision, recall, F1, each 0.0 where its denominator is 0."""
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_scores(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level scores of predicted tag sequences, as seqeval's default (non-strict) mode.

    An entity counts as correct when its type, start and end all match a true one. Returns micro
    "precision", "recall", "f1" over all entities and "per_type" {type: {"precision", "recall",
    "f1", "support"}} (support = number of true entities of that type), types sorted. A score whose
    denominator is 0 is 0.0 (seqeval's zero_division default).
    """
    true_seqs, pred_seqs = list(true_seqs), list(pred_seqs)
    _check_pair(true_seqs, pred_seqs, ("true_seqs", "pred_seqs"))
    true_ents: dict[str, set] = collections.defaultdict(set)
    pred_ents: dict[str, set] = collections.defaultdict(set)
    for n, (t, p) in enumerate(zip(true_seqs, pred_seqs)):
        if isinstance(t, str) or isinstance(p, str):
            raise ValueError("true_seqs and pred_seqs must be lists of tag lists, not lists of strings")
        if len(t) != len(p):
            raise ValueError(f"sequence {n} differs in length: {len(t)} true tags, {len(p)} predicted")
        for type_, start, end in get_entities(t):
            true_ents[type_].add((n, start, end))
        for type_, start, end in get_entities(p):
            pred_ents[type_].add((n, start, end))
    per_type: dict[str, dict[str, float]] = {}
    tp_all = pred_all = true_all = 0
    for type_ in sorted(set(true_ents) | set(pred_ents)):
        tp = len(true_ents[type_] & pred_ents[type_])
        n_pred, n_true = len(pred_ents[type_]), len(true_ents[type_])
        precision, recall, f1 = _prf(tp, n_pred, n_true)
        per_type[type_] = {"precision": precision, "recall": recall, "f1": f1, "support": n_true}
        tp_all, pred_all, true_all = tp_all + tp, pred_all + n_pred, true_all + n_true
    precision, recall, f1 = _prf(tp_all, pred_all, true_all)
    return {"precision": precision, "recall": recall, "f1": f1, "per_type": per_type}


# --------------------------------------------------------------------------- SQuAD (official v2.0 script)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """The official SQuAD normalisation: lower case, drop ASCII punctuation, drop the articles
    a/an/the (whole words), collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _tokens(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def _compute_exact(gold: str, pred: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(pred))


def _compute_f1(gold: str, pred: str) -> float:
    """v2.0's compute_f1: token-bag F1; if either side normalises to nothing, 1 iff both do."""
    gold_toks, pred_toks = _tokens(gold), _tokens(pred)
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    num_same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _gold_answers(ground_truths: str | Sequence[str]) -> list[str]:
    """v2.0's gold list: answers that normalise to nothing are dropped; none left means the only
    correct answer is the empty string (a no-answer question)."""
    if isinstance(ground_truths, str):
        ground_truths = [ground_truths]
    return [a for a in ground_truths if normalize_answer(a)] or [""]


def exact_match(prediction: str, ground_truths: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    An empty ``ground_truths`` (or one whose answers all normalise to "") marks a no-answer
    question: only a prediction that normalises to "" is right (SQuAD v2.0).
    """
    return float(max(_compute_exact(g, prediction) for g in _gold_answers(ground_truths)))


def f1_score(prediction: str, ground_truths: str | Sequence[str]) -> float:
    """Token-level F1 (bag of normalised tokens), the max over gold answers, in [0, 1].

    SQuAD v2.0 semantics: when the prediction or a gold answer normalises to nothing, its F1 is its
    exact match (the v1.1 script scored that pair 0 even when both were empty).
    """
    return max(_compute_f1(g, prediction) for g in _gold_answers(ground_truths))


def squad_metrics(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """SQuAD v1.1 / v2.0 scores in percent, as the official v2.0 evaluation script.

    ``references`` maps each question id to its gold answer texts; an empty list marks a
    no-answer question (gold ""). Every referenced id needs a prediction (``ValueError`` otherwise);
    predictions for other ids are ignored. Returns "exact_match", "f1", "total", and, when both
    answerable and unanswerable questions are present, "HasAns_exact", "HasAns_f1", "HasAns_total",
    "NoAns_exact", "NoAns_f1", "NoAns_total". (The official script emits each of these groups
    whenever that kind of question exists, even alone.)
    """
    if not references:
        raise ValueError("references is empty")
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} question(s) have no prediction, e.g. {missing[0]!r}")
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    has_ans: list[str] = []
    no_ans: list[str] = []
    for qid, answers in references.items():
        if isinstance(answers, str):
            answers = [answers]
        pred = predictions[qid]
        exact[qid] = exact_match(pred, answers)
        f1[qid] = f1_score(pred, answers)
        # As the official script: a question is answerable when its answer list is non-empty.
        (has_ans if len(answers) > 0 else no_ans).append(qid)

    def summary(qids: Sequence[str]) -> tuple[float, float, int]:
        n = len(qids)
        return 100.0 * sum(exact[q] for q in qids) / n, 100.0 * sum(f1[q] for q in qids) / n, n

    out: dict[str, float] = {}
    out["exact_match"], out["f1"], out["total"] = summary(list(references))
    if has_ans and no_ans:
        for prefix, qids in (("HasAns", has_ans), ("NoAns", no_ans)):
            out[f"{prefix}_exact"], out[f"{prefix}_f1"], out[f"{prefix}_total"] = summary(qids)
    return out
