"""Byte-level BPE (GPT-2's and RoBERTa's), built from the Rust ``tokenizers`` primitives.

A RoBERTa tokenizer is a BPE model over the 256 byte symbols of ``pre_tokenizers.ByteLevel`` (so
nothing is ever unknown), the ByteLevel pre-tokenizer (GPT-2's splitting regex; a space is part of
the word after it and shows as "Ġ") and decoder, and ``RobertaProcessing``: ``<s> A </s>`` and
``<s> A </s></s> B </s>``, offsets trimmed of the space, no token types. This is what transformers'
RobertaTokenizer builds from ``vocab.json`` + ``merges.txt``, except for one thing: its ``<mask>``
matches with lstrip (the space before it belongs to the mask), as fairseq's RoBERTa and transformers 4
have it, so that "a <mask> b" reads the mask where a whole "Ġword" token stood.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tokenizers import AddedToken, decoders, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE

BOS, PAD, EOS, UNK, MASK = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
# RoBERTa's ids 0..4, in this order.
SPECIAL_TOKENS: tuple[str, ...] = (BOS, PAD, EOS, UNK, MASK)
WORD_START = "Ġ"  # the byte-level symbol of a space: the first piece of a word after a space starts with it


def read_merges(merges_file: Path) -> list[tuple[str, str]]:
    """merges.txt as GPT-2 writes it: an optional "#version" line, then "left right" per line."""
    merges = []
    for number, line in enumerate(merges_file.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip() or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{merges_file}: line {number}: expected two symbols separated by a space, got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def read_vocab_json(vocab_file: Path) -> dict[str, int]:
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise ValueError(f"{vocab_file}: expected a JSON object of token -> id")
    return vocab


def byte_level_backend(
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    *,
    cls: str,
    sep: str,
    specials: Sequence[str],
    mask: str | None,
    add_prefix_space: bool,
    trim_offsets: bool,
) -> Backend:
    """A RoBERTa tokenizer for ``vocab`` and ``merges``; ``specials`` become special added tokens,
    ``mask`` among them with lstrip."""
    for token in (cls, sep, *specials):
        if token not in vocab:
            raise ValueError(f"special token {token!r} is not in the vocabulary")
    # The model as transformers' RobertaTokenizer builds it: no unk (every byte has a symbol), no prefixes.
    backend = Backend(BPE(vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
                          fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=t == mask)
                                for t in dict.fromkeys(specials)])
    backend.post_processor = processors.RobertaProcessing((sep, vocab[sep]), (cls, vocab[cls]),
                                                          trim_offsets=trim_offsets, add_prefix_space=add_prefix_space)
    return backend


def train_byte_level(
    paths: Sequence[Path],
    *,
    vocab_size: int,
    min_frequency: int,
    special_tokens: Sequence[str],
    show_progress: bool,
) -> Backend:
    """A RoBERTa tokenizer trained on ``paths``: the special tokens (RoBERTa's five first) get ids
    0..len(special_tokens)-1, then the 256 byte symbols, then the merges."""
    trainer_backend = Backend(BPE())
    trainer_backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, seen or not: nothing is unknown
        show_progress=show_progress,
    )
    trainer_backend.train([str(p) for p in paths], trainer)
    model = json.loads(trainer_backend.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # A fresh tokenizer from the final vocabulary, set up exactly as loading vocab.json + merges.txt does.
    return byte_level_backend(model["vocab"], merges, cls=BOS, sep=EOS, specials=special_tokens, mask=MASK,
                              add_prefix_space=False, trim_offsets=True)
