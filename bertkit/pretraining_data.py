"""Pretraining examples from a prepared corpus: BERT's sentence pairs (NSP), ALBERT's sentence order
(SOP), or RoBERTa's runs of whole sentences (MLM only): DOC-SENTENCES, which stop at the end of a document,
or FULL-SENTENCES (`cross_documents`), where a run that reaches its document's end goes on into the next one,
a separator between them (so an example spans at most two documents).

The plan follows Google's create_pretraining_data.py. A document's sentences are gathered into a
chunk until it reaches the target length (max_length minus the special tokens; with probability
`short_seq_prob` a random shorter target, so the model also sees short inputs). The chunk is cut at
a random sentence boundary into segment A and segment B. For NSP, B is then, with probability 1/2,
replaced by a run of sentences from a random *other* document (label 1, "random"), and the chunk's
unused sentences are put back for the next example. For SOP, A and B swap places with probability
1/2 (label 1, "swapped"). The longer segment is cut until the pair fits, a token at a time from its
front or back at random. Two departures from Google's script, both to keep the pairs exactly
50/50: a one-sentence chunk is split inside its sentence when it needs a real continuation (Google
made it a random pair), and a random B never comes from the same document (Google's ten tries could
fail).

An example is stored as token ranges into the memory-mapped corpus (9 integers), so planning a
corpus costs no token copies; tokens are read, laid out with the tokenizer's special tokens (BERT's
``[CLS] A [SEP] B [SEP]``, RoBERTa's ``<s> A </s></s> B </s>``) and masked when a batch asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .batching import Feature, collate
from .corpus import Corpus
from .masking import Masker, example_rng
from .tokenizer import Tokenizer

OBJECTIVES = ("nsp", "sop", "mlm")
# Columns of the plan: segment A and segment B, each (first sentence, end sentence, tokens skipped at
# the front of that run, tokens kept), then the sentence-relation label (-1 = none).
A0, A1, A_SKIP, A_KEEP, B0, B1, B_SKIP, B_KEEP, LABEL = range(9)


@dataclass(frozen=True)
class ExampleSettings:
    objective: str = "nsp"  # nsp (BERT) | sop (ALBERT) | mlm (no sentence task)
    max_length: int = 128  # tokens per example, special tokens ([CLS], [SEP]s) included
    short_seq_prob: float = 0.1  # share of chunks given a random shorter target length
    # mlm only: RoBERTa's FULL-SENTENCES, where a run that reaches the end of its document goes on into the next,
    # a separator between the two (laid out as the tokenizer's pair); off: DOC-SENTENCES, runs stop at the end.
    cross_documents: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r} must be one of {OBJECTIVES}")
        if self.max_length < 8:
            raise ValueError(f"max_length={self.max_length} is too short for a sentence pair (at least 8)")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob={self.short_seq_prob} must lie in [0, 1]")
        if self.cross_documents and self.objective != "mlm":
            raise ValueError(f"cross_documents packs runs for mlm only; {self.objective} pairs are its own")

    @property
    def pairs(self) -> bool:
        """Whether examples may hold two segments (NSP, SOP; mlm runs that cross a document boundary) rather than
        one run of sentences."""
        return self.objective != "mlm" or self.cross_documents

    @property
    def specials(self) -> int:
        """BERT's special tokens per example (another tokenizer's: `Tokenizer.num_special_tokens(pairs)`)."""
        return 3 if self.pairs else 2


def _fit_pair(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Lengths after Google's truncate_seq_pair (cut the longer segment, B on ties, a token at a time until the
    pair fits), in closed form: the longer one is cut down to the other first, then B and A in turn."""
    excess = len_a + len_b - budget
    if excess <= 0:
        return len_a, len_b
    gap = min(excess, abs(len_a - len_b))
    if len_a > len_b:
        len_a -= gap
    else:
        len_b -= gap
    excess -= gap
    return len_a - excess // 2, len_b - (excess + 1) // 2


class _Planner:
    def __init__(self, corpus: Corpus, documents: np.ndarray, settings: ExampleSettings, rng: np.random.Generator,
                 specials: int):
        self.corpus, self.documents, self.settings, self.rng = corpus, documents, settings, rng
        self.lengths = corpus.sentence_lengths
        self.budget = settings.max_length - specials
        self.rows: list[tuple[int, ...]] = []
        self.carried: tuple[int, int, int, int] | None = None  # cross_documents: a run awaiting the next document

    def target(self) -> int:
        if self.rng.random() < self.settings.short_seq_prob:
            return int(self.rng.integers(2, self.budget + 1))
        return self.budget

    def run_length(self, first: int, end: int) -> int:
        return int(self.lengths[first:end].sum())

    def random_segment(self, this_position: int, wanted: int) -> tuple[int, int]:
        """Sentences from a random other document, from a random start, until `wanted` tokens."""
        other = int(self.rng.integers(len(self.documents) - 1))
        other += other >= this_position  # uniform over the other documents
        sentences = self.corpus.document_sentences(int(self.documents[other]))
        first = int(self.rng.integers(sentences.start, sentences.stop))
        end, total = first, 0
        while end < sentences.stop and total < max(wanted, 1):
            total += int(self.lengths[end])
            end += 1
        return first, end

    def emit(self, a: tuple[int, int, int, int], b: tuple[int, int, int, int] | None, label: int) -> None:
        """Cut the pair to the budget (random share from the front of each segment) and record it."""
        a0, a1, a_skip, len_a = a
        b0, b1, b_skip, len_b = b if b is not None else (0, 0, 0, 0)
        fit_a, fit_b = _fit_pair(len_a, len_b, self.budget)
        a_skip += int(self.rng.binomial(len_a - fit_a, 0.5)) if b is not None else 0  # one segment: keep the start
        b_skip += int(self.rng.binomial(len_b - fit_b, 0.5))
        self.rows.append((a0, a1, a_skip, fit_a, b0, b1, b_skip, fit_b, label))

    def document(self, position: int) -> None:
        sentences = self.corpus.document_sentences(int(self.documents[position]))
        objective = self.settings.objective
        carried, self.carried = self.carried, None
        start, i, target = sentences.start, sentences.start, self.target()
        total = carried[3] if carried else 0
        while i < sentences.stop:
            total += int(self.lengths[i])
            if i == sentences.stop - 1 or total >= target:
                end = i + 1
                if objective != "mlm":
                    i = self.pair(position, start, end, target)
                elif carried is not None:  # the last document's run, then this one's first sentences
                    self.emit(carried, (start, end, 0, total - carried[3]), -1)
                    carried = None
                elif total < target and self.settings.cross_documents and position + 1 < len(self.documents):
                    self.carried = (start, end, 0, total)  # goes on into the next document
                else:
                    self.emit((start, end, 0, total), None, -1)
                start, total, target = i + 1, 0, self.target()
            i += 1
        if carried is not None:  # this document had no sentences: the carried run stands alone
            self.emit(carried, None, -1)

    def pair(self, position: int, start: int, end: int, target: int) -> int:
        """Record one NSP/SOP example from sentences [start, end); returns the last sentence consumed."""
        swap_or_random = self.rng.random() < 0.5
        if end - start >= 2:
            a_end = int(self.rng.integers(start + 1, end))
            a = (start, a_end, 0, self.run_length(start, a_end))
            b = (a_end, end, 0, self.run_length(a_end, end))
        else:  # one sentence: split it inside, so that it still has a real continuation
            length = int(self.lengths[start])
            if length < 2:
                return start  # a one-token chunk makes no pair
            cut = int(self.rng.integers(1, length))
            a, b = (start, end, 0, cut), (start, end, cut, length - cut)
        if not swap_or_random:
            self.emit(a, b, 0)
        elif self.settings.objective == "sop":
            self.emit(b, a, 1)
        else:
            if end - start >= 2:  # B's sentences go back for the next example
                end = a[1]
            else:
                a = (start, end, 0, a[3] + b[3])  # the whole sentence is A
            first, stop = self.random_segment(position, target - a[3])
            self.emit(a, (first, stop, 0, self.run_length(first, stop)), 1)
        return end - 1


def plan_examples(corpus: Corpus, documents: Sequence[int] | np.ndarray, settings: ExampleSettings,
                  seed: int, specials: int | None = None) -> np.ndarray:
    """The examples of `documents` (indices into the corpus) as an (N, 9) int64 plan; deterministic for a seed.
    `specials`: the special tokens each example gets (default BERT's, `settings.specials`)."""
    documents = np.asarray(documents, dtype=np.int64)
    if settings.objective == "nsp" and len(documents) < 2:
        raise ValueError(f"next-sentence prediction needs at least two documents for random pairs; got {len(documents)} "
                         "(use --objective sop or mlm, or give more documents)")
    planner = _Planner(corpus, documents, settings, np.random.default_rng([seed, 7919]),
                       settings.specials if specials is None else specials)
    for position in range(len(documents)):
        planner.document(position)
    return np.asarray(planner.rows, dtype=np.int64).reshape(-1, 9)


class PretrainingDataset:
    """Examples of a plan, laid out by `tokenizer` (its special tokens; token types when it has them) and
    masked on access. `set_epoch` (called by the training engine) draws fresh masks each epoch unless
    `static` is set."""

    def __init__(self, corpus: Corpus, plan: np.ndarray, masker: Masker, tokenizer: Tokenizer, *,
                 seed: int, static: bool = False) -> None:
        self.corpus, self.plan, self.masker, self.tokenizer = corpus, plan, masker, tokenizer
        self.seed, self.static = seed, static
        self.epoch = 0
        has_b = plan[:, B_KEEP] > 0
        specials = np.where(has_b, tokenizer.num_special_tokens(pair=True), tokenizer.num_special_tokens())
        self.lengths = (plan[:, A_KEEP] + plan[:, B_KEEP] + specials).tolist()  # read by the engine's batching

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.plan)

    def segment(self, first: int, end: int, skip: int, keep: int) -> np.ndarray:
        return self.corpus.tokens(first, end)[skip:skip + keep]

    def tokens(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, token types) of example `index` before masking, in the tokenizer's layout (BERT: [CLS] A [SEP]
        (B [SEP])); the types are those of the layout even when the tokenizer returns none."""
        row = self.plan[index]
        b = self.segment(*row[B0:LABEL]).tolist() if row[B_KEEP] > 0 else None
        ids, types = self.tokenizer.layout(b is not None).build(self.segment(*row[A0:B0]).tolist(), b)
        return np.asarray(ids, dtype=np.int64), np.asarray(types, dtype=np.int64)

    def __getitem__(self, index: int) -> Feature:
        ids, types = self.tokens(index)
        masked, labels = self.masker(ids, example_rng(self.seed, 0 if self.static else self.epoch, index))
        feature: Feature = {"input_ids": masked.tolist(), "labels": labels.tolist()}
        if self.tokenizer.has_token_types:
            feature["token_type_ids"] = types.tolist()
        if self.plan[index, LABEL] >= 0:
            feature["next_sentence_label"] = int(self.plan[index, LABEL])
        return feature


def pretraining_collate(features: Sequence[Feature], pad_token_id: int) -> dict[str, Any]:
    """Padded batch with MLM labels (and sentence-relation labels); the MLM head scores masked positions only."""
    batch: dict[str, Any] = collate(features, pad_token_id)
    if "next_sentence_label" in features[0]:
        batch["next_sentence_label"] = torch.tensor([f["next_sentence_label"] for f in features], dtype=torch.long)
    batch["masked_positions_only"] = True
    return batch
