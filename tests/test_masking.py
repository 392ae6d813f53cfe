"""MLM masking: the 15% / 80-10-10 statistics over 10^5 tokens, specials untouched, whole words, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from bertkit.masking import IGNORE, Masker, MaskingSettings, example_rng

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
VOCAB = 200
CONTINUATION = np.zeros(VOCAB, dtype=bool)
CONTINUATION[150:] = True  # ids 150.. are "##pieces"


def masker(**settings) -> Masker:
    return Masker(MaskingSettings(**settings), VOCAB, MASK, {PAD, UNK, CLS, SEP, MASK}, CONTINUATION)


def sequences(n_tokens: int, seed: int = 0) -> list[np.ndarray]:
    """[CLS] A [SEP] B [SEP] [PAD]... with word-start ids 5..149 followed by 0-3 continuation pieces."""
    rng = np.random.default_rng(seed)
    out, total = [], 0
    while total < n_tokens:
        def segment() -> list[int]:
            ids: list[int] = []
            for _ in range(rng.integers(3, 40)):
                ids += [int(rng.integers(5, 150))] + rng.integers(150, VOCAB, rng.integers(0, 4)).tolist()
            return ids
        ids = [CLS, *segment(), SEP, *segment(), SEP] + [PAD] * int(rng.integers(0, 20))
        out.append(np.asarray(ids))
        total += len(ids)
    return out


@pytest.mark.parametrize("whole_word", [False, True])
def test_rates_over_100k_tokens(whole_word: bool) -> None:
    m = masker(whole_word=whole_word)
    maskable = targets = as_mask = as_random = kept = 0
    for index, ids in enumerate(sequences(100_000)):
        masked, labels = m(ids, example_rng(1, 0, index))
        special = np.isin(ids, [PAD, UNK, CLS, SEP, MASK])
        chosen = labels != IGNORE
        assert not (chosen & special).any(), "a special or pad token was chosen"
        assert (masked[~chosen] == ids[~chosen]).all(), "a token that is not a target changed"
        assert (labels[chosen] == ids[chosen]).all(), "labels must hold the original tokens"
        maskable += int((~special).sum())
        targets += int(chosen.sum())
        as_mask += int((masked[chosen] == MASK).sum())
        changed = chosen & (masked != ids) & (masked != MASK)
        assert not np.isin(masked[changed], [PAD, UNK, CLS, SEP]).any(), "a random replacement was a special token"
        as_random += int(changed.sum())
        kept += int((chosen & (masked == ids)).sum())
    assert maskable > 80_000
    assert abs(targets / maskable - 0.15) < 0.01
    # A random replacement equal to the original counts as kept: expected 10% + 10%/145.
    assert abs(as_mask / targets - 0.8) < 0.01
    assert abs(as_random / targets - 0.1) < 0.01
    assert abs(kept / targets - 0.1) < 0.01


def test_whole_word_masking_takes_every_piece_of_a_chosen_word() -> None:
    m = masker(whole_word=True)
    words_seen = 0
    for index, ids in enumerate(sequences(20_000, seed=3)):
        _, labels = m(ids, example_rng(2, 0, index))
        chosen = labels != IGNORE
        start = None
        for pos, token in enumerate(ids):  # walk words: a start id then its continuations
            if 5 <= token < 150:
                start = pos
            if token >= 150:
                assert chosen[pos] == chosen[start], f"sequence {index}: piece {pos} split from its word at {start}"
            words_seen += 5 <= token < 150
    assert words_seen > 2000
    # Plain masking does split words (so the test above can tell the two apart).
    plain = masker()
    split = 0
    for index, ids in enumerate(sequences(5_000, seed=3)):
        _, labels = plain(ids, example_rng(2, 0, index))
        chosen = labels != IGNORE
        split += int(sum(chosen[p] != chosen[p - 1] for p in range(1, len(ids)) if ids[p] >= 150))
    assert split > 0


def test_count_is_exact_per_sequence_and_capped() -> None:
    ids = np.asarray([CLS] + list(range(5, 105)) + [SEP])  # 100 maskable tokens
    _, labels = masker()(ids, example_rng(0, 0, 0))
    assert (labels != IGNORE).sum() == 15
    _, labels = masker(max_predictions=7)(ids, example_rng(0, 0, 0))
    assert (labels != IGNORE).sum() == 7
    _, labels = masker(probability=0.3)(ids, example_rng(0, 0, 0))
    assert (labels != IGNORE).sum() == 30
    short = np.asarray([CLS, 7, SEP])
    _, labels = masker()(short, example_rng(0, 0, 0))
    assert labels.tolist() == [IGNORE, 7, IGNORE]  # at least one target, never a special


def test_masks_depend_only_on_seed_epoch_and_example() -> None:
    ids = sequences(300)[0]
    first = masker()(ids, example_rng(5, 0, 9))
    again = masker()(ids, example_rng(5, 0, 9))
    next_epoch = masker()(ids, example_rng(5, 1, 9))
    assert all((a == b).all() for a, b in zip(first, again))
    assert not (first[1] == next_epoch[1]).all()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="probability"):
        MaskingSettings(probability=0.0)
    with pytest.raises(ValueError, match="sum to at most 1"):
        MaskingSettings(replace_with_mask=0.9, replace_with_random=0.2)
    with pytest.raises(ValueError, match="whole-word"):
        Masker(MaskingSettings(whole_word=True), VOCAB, MASK, {PAD})


def test_whole_words_of_byte_level_bpe(bpe_dir) -> None:
    """RoBERTa's words start with "Ġ" (the space before them): a word's pieces are chosen together."""
    from bertkit import Tokenizer

    tokenizer = Tokenizer.from_pretrained(bpe_dir)
    m = Masker.for_tokenizer(MaskingSettings(whole_word=True, probability=0.3), tokenizer)
    ids = np.asarray(tokenizer.encode("Extraordinarily long words such as antidisestablishmentarianism appear in naïve "
                                      "café reviews, and the cat sat on the mat."))
    special = tokenizer.all_special_ids  # a special token ends a word: "Extraordinarily" after <s> starts one
    starts = [i for i, t in enumerate(ids) if not tokenizer.continues_word[t] or ids[i - 1] in special]
    word_of = np.searchsorted(starts, np.arange(len(ids)), side="right") - 1
    assert len(starts) < len(ids) - 6  # many words are several pieces
    for seed in range(20):
        chosen = m.choose(ids, example_rng(seed, 0, 0))
        words = set(word_of[chosen].tolist())
        assert chosen.tolist() == [i for i in range(len(ids)) if word_of[i] in words]  # whole words only
        assert 0 not in chosen and len(ids) - 1 not in chosen  # never <s> or </s>
