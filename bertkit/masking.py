"""Masked-language-model masking, as in the BERT paper (and Google's create_pretraining_data.py).

Of a sequence's maskable tokens (every token but [CLS], [SEP], [PAD] and the other specials; <s> ... for RoBERTa),
`probability` (15%) are chosen as prediction targets, capped at `max_predictions`. Each chosen
token becomes the mask token 80% of the time, a random vocabulary token 10% of the time, and stays
unchanged 10% of the time; the model must predict the original at every chosen position.

The number of targets is exact per sequence (round(n · p), at least 1), not a coin flip per
token, so short sequences still get a target and the rate holds batch by batch. With whole-word
masking a word's pieces ("un", "##believ", "##able"; RoBERTa's "Ġun", "believ", "able") are chosen
together or not at all; the tokenizer says which pieces continue a word (Tokenizer.continues_word).

Masks come from a generator seeded by (seed, epoch, example): dynamic masking draws a fresh mask
every epoch, static masking uses epoch 0 always, and both are the same on every rank, after a
resume, and whatever the batch an example lands in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100  # label of positions the loss skips


@dataclass(frozen=True)
class MaskingSettings:
    probability: float = 0.15  # share of maskable tokens chosen as targets (RoBERTa-era work also uses 0.3-0.4)
    replace_with_mask: float = 0.8  # of the targets: shown as the mask token
    replace_with_random: float = 0.1  # of the targets: shown as a random token (the rest stay unchanged)
    max_predictions: int | None = None  # cap of targets per sequence (Google: 20 at length 128); None = no cap
    whole_word: bool = False  # choose whole words (a piece and the pieces that continue it) together

    def __post_init__(self) -> None:
        if not 0.0 < self.probability < 1.0:
            raise ValueError(f"mask probability={self.probability} must lie strictly between 0 and 1")
        if self.replace_with_mask < 0 or self.replace_with_random < 0 or self.replace_with_mask + self.replace_with_random > 1:
            raise ValueError("replace_with_mask and replace_with_random must be >= 0 and sum to at most 1")
        if self.max_predictions is not None and self.max_predictions < 1:
            raise ValueError(f"max_predictions={self.max_predictions} must be at least 1")


class Masker:
    """Masks token-id sequences for one vocabulary.

    `special_ids` are never chosen (and never drawn as random replacements); `continuation` marks
    the ids of word pieces that continue a word ("##..." in WordPiece), used by whole-word masking.
    """

    def __init__(self, settings: MaskingSettings, vocab_size: int, mask_id: int, special_ids: set[int] | frozenset[int],
                 continuation: np.ndarray | None = None) -> None:
        self.settings = settings
        self.mask_id = mask_id
        self.is_special = np.zeros(vocab_size, dtype=bool)
        self.is_special[list(special_ids)] = True
        self.replacement_ids = np.flatnonzero(~self.is_special)
        if settings.whole_word and continuation is None:
            raise ValueError("whole-word masking needs to know which vocabulary entries continue a word")
        self.continuation = continuation if continuation is not None else np.zeros(vocab_size, dtype=bool)

    @classmethod
    def for_tokenizer(cls, settings: MaskingSettings, tokenizer) -> Masker:  # noqa: ANN001 (bertkit.Tokenizer)
        # Asked for only when used: a tokenizer without word marks can still mask token by token.
        continuation = np.asarray(tokenizer.continues_word, dtype=bool) if settings.whole_word else None
        return cls(settings, tokenizer.vocab_size, tokenizer.mask_token_id, set(tokenizer.all_special_ids), continuation)

    def num_targets(self, maskable: int) -> int:
        if maskable == 0:
            return 0
        n = max(1, int(round(maskable * self.settings.probability)))
        cap = self.settings.max_predictions
        return min(n, cap) if cap is not None else n

    def choose(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sorted positions chosen as prediction targets."""
        candidates = np.flatnonzero(~self.is_special[ids])
        k = self.num_targets(len(candidates))
        if not self.settings.whole_word:
            return np.sort(rng.permutation(candidates)[:k])
        # Words: a maskable piece starts a new word unless it continues the previous maskable piece.
        starts = ~self.continuation[ids[candidates]]
        starts[1:] |= np.diff(candidates) != 1  # a special token in between also ends a word
        starts[0] = True
        word_of = np.cumsum(starts) - 1
        bounds = np.flatnonzero(np.append(starts, True))
        chosen: list[np.ndarray] = []
        total = 0
        for word in rng.permutation(len(bounds) - 1):
            size = bounds[word + 1] - bounds[word]
            if total + size > k:  # as Google's: skip a word that would overshoot, try the others
                continue
            chosen.append(candidates[word_of == word])
            total += size
            if total == k:
                break
        return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)

    def __call__(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(input ids with targets replaced, labels: the original id at targets, IGNORE elsewhere)."""
        ids = np.asarray(ids, dtype=np.int64)
        positions = self.choose(ids, rng)
        labels = np.full(len(ids), IGNORE, dtype=np.int64)
        labels[positions] = ids[positions]
        masked = ids.copy()
        draw = rng.random(len(positions))
        to_mask = draw < self.settings.replace_with_mask
        to_random = (draw >= self.settings.replace_with_mask) & (
            draw < self.settings.replace_with_mask + self.settings.replace_with_random)
        masked[positions[to_mask]] = self.mask_id
        masked[positions[to_random]] = rng.choice(self.replacement_ids, size=int(to_random.sum()))
        return masked, labels


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one example's random choices in one epoch (independent of batching and rank)."""
    return np.random.default_rng([seed, epoch, index])
