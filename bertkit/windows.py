"""Sliding windows over token sequences longer than the model takes.

A text of `length` content tokens (no [CLS]/[SEP]) is covered by windows of at most `size` tokens;
consecutive windows share `stride` tokens (the meaning of `stride` in tokenizers and transformers,
and of SQuAD's doc_stride there). Each token is then read from the window where it sits most
centrally, i.e. with the most context on both sides: the rule BERT's SQuAD code uses to score a
token that several windows contain.
"""

from __future__ import annotations

import logging
from typing import Sequence, TypeVar

logger = logging.getLogger("bertkit")

T = TypeVar("T")
Span = tuple[int, int]  # [start, end) in content-token positions


def window_spans(length: int, size: int, stride: int) -> list[Span]:
    """Windows covering positions 0..length-1; one window when the text fits (also when it is empty)."""
    if size < 1:
        raise ValueError(f"window size {size} leaves no room for text tokens")
    if not 0 <= stride < size:
        raise ValueError(f"stride {stride} must be at least 0 and smaller than the window ({size} tokens)")
    spans = [(0, min(length, size))]
    while spans[-1][1] < length:
        start = spans[-1][1] - stride
        spans.append((start, min(length, start + size)))
    return spans


def centrality(span: Span, position: int) -> int:
    """Context on the poorer side of `position` inside `span` (larger is more central)."""
    start, end = span
    return min(position - start, end - 1 - position)


def most_central_window(spans: list[Span], length: int) -> list[int]:
    """For each position, the index of the window that holds it most centrally (the first on ties)."""
    owner = []
    first = 0  # windows start in increasing order: skip those that ended before `position`
    for position in range(length):
        while spans[first][1] <= position:
            first += 1
        best, best_score, index = first, -1, first
        while index < len(spans) and spans[index][0] <= position:
            score = centrality(spans[index], position)
            if score > best_score:
                best, best_score = index, score
            index += 1
        owner.append(best)
    return owner


MAX_WINDOWS = 16  # training windows kept per long text by default: one long document cannot swamp the rest


def spread(count: int, limit: int) -> list[int]:
    """Indices of `limit` of `count` windows, spread evenly from the first to the last (all when `limit` is 0 or
    not below `count`)."""
    if limit <= 0 or count <= limit:
        return list(range(count))
    if limit == 1:
        return [0]
    return [round(i * (count - 1) / (limit - 1)) for i in range(limit)]


def cap_windows(groups: Sequence[Sequence[T]], limit: int, source: str, what: str, lines: Sequence[int]) -> list[list[T]]:
    """Each group (one text's training windows) cut to at most `limit` windows spread evenly over it (0: no cap),
    with a warning naming the longest text cut (`lines`: each group's line in `source`)."""
    kept = [[group[i] for i in spread(len(group), limit)] for group in groups]
    capped = [i for i, group in enumerate(groups) if len(kept[i]) < len(group)]
    if capped:
        longest = max(capped, key=lambda i: len(groups[i]))
        logger.warning("%s: %d %s made more than %d windows (the longest, on line %d, made %d): training reads %d "
                       "windows spread evenly over each (--max-windows; 0 keeps every window)", source, len(capped),
                       what if len(capped) > 1 else what.removesuffix("s"), limit, lines[longest],
                       len(groups[longest]), limit)
    return kept
