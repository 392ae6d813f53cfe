"""Where a tokenizer puts its special tokens around one text or a pair: read from its post-processor.

BERT: ``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]`` (types 0 then 1); RoBERTa and XLM-R:
``<s> A </s>`` and ``<s> A </s></s> B </s>`` (types 0); ALBERT and DeBERTa-v3 as BERT with their own
tokens. Code that cuts its own windows (QA contexts, long texts, pretraining segments) builds its inputs
with :meth:`Layout.build`, so that they look exactly as the tokenizer's own encodings do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Encoding
from tokenizers import Tokenizer as Backend

Special = tuple[int, int]  # (id, token type)


@dataclass(frozen=True)
class Layout:
    """The special tokens of one layout: before the first text, between the two (pairs only), after the last.

    ``first_type`` / ``second_type`` are the token types of the texts' own tokens (``second_type`` is None
    for the single-text layout).
    """

    prefix: tuple[Special, ...]
    middle: tuple[Special, ...]
    suffix: tuple[Special, ...]
    first_type: int
    second_type: int | None

    @property
    def is_pair(self) -> bool:
        return self.second_type is not None

    @property
    def num_special_tokens(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @property
    def first_start(self) -> int:
        """Position of the first text's first token."""
        return len(self.prefix)

    def second_start(self, first_length: int) -> int:
        """Position of the second text's first token, after a first text of ``first_length`` tokens."""
        return len(self.prefix) + first_length + len(self.middle)

    def build(self, first: Sequence[int], second: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
        """(ids, token types) of ``first`` (and ``second``) with the special tokens around them."""
        if (second is not None) != self.is_pair:
            raise ValueError("a pair layout needs two texts, a single layout one")
        parts: list[tuple[Sequence[int], Sequence[int]]] = [_unzip(self.prefix), (first, [self.first_type] * len(first))]
        if second is not None:
            parts += [_unzip(self.middle), (second, [self.second_type] * len(second))]  # type: ignore[list-item]
        parts.append(_unzip(self.suffix))
        return [i for ids, _ in parts for i in ids], [t for _, types in parts for t in types]


def _unzip(specials: tuple[Special, ...]) -> tuple[list[int], list[int]]:
    return [i for i, _ in specials], [t for _, t in specials]


def read_layouts(backend: Backend, probe: str, source: object) -> tuple[Layout, Layout]:
    """The (single, pair) layouts of ``backend``'s post-processor, whatever its kind (TemplateProcessing,
    RobertaProcessing, BertProcessing, a Sequence of them, or none).

    Measured rather than parsed: a probe text (any text that gives at least one token) is encoded alone
    and as both texts of a pair, and the specials are what the post-processor adds around its tokens.
    ``backend`` must not truncate or pad.
    """
    ids = backend.encode(probe, add_special_tokens=False).ids
    if not ids:
        raise ValueError(f"{source}: the probe text {probe!r} gives no token; cannot read the special-token layout")
    # Whole encodings, not post_process() of the parts: that loses the first text's sequence ids.
    single = _layout(backend.encode(probe), ids, None, source)
    pair = _layout(backend.encode(probe, probe), ids, ids, source)
    return single, pair


def _layout(encoding: Encoding, first: list[int], second: list[int] | None, source: object) -> Layout:
    """Cut an encoding into specials before / between / after the texts' tokens (sequence ids 0 and 1)."""
    groups: list[list[Special]] = [[]]
    types: list[int] = []
    for token_id, type_id, sequence in zip(encoding.ids, encoding.type_ids, encoding.sequence_ids):
        if sequence is None:
            groups[-1].append((token_id, type_id))
        elif sequence == len(types):  # a text's first token
            types.append(type_id)
            groups.append([])
    layout: Layout | None = None
    if len(types) == 1 and second is None:
        layout = Layout(tuple(groups[0]), (), tuple(groups[1]), types[0], None)
    elif len(types) == 2 and second is not None:
        layout = Layout(tuple(groups[0]), tuple(groups[1]), tuple(groups[2]), types[0], types[1])
    # Anything else (B before A, a text cut in two, mixed types inside a text) does not rebuild the encoding.
    if layout is None or layout.build(first, second) != (encoding.ids, encoding.type_ids):
        raise ValueError(f"{source}: the post-processor lays out the texts as {encoding.sequence_ids} "
                         f"(ids {encoding.ids}); bertkit needs specials around the first text, then the second")
    return layout
