"""Every family's tokenizer directory against transformers' AutoTokenizer on the same directory.

Fixtures are trained here on a few paragraphs of mixed text with ``tokenizers`` and saved by
transformers itself, in the layouts it writes: RoBERTa (byte-level BPE; tokenizer.json, and an old-style
directory of vocab.json + merges.txt), XLM-R and ALBERT (Unigram), DistilBERT (WordPiece, no token
types). The texts are the edge cases of tests/fixtures/tokenizer_edge_cases.jsonl (accents, emoji, CJK,
odd whitespace, leading spaces, long words), alone and as pairs, with truncation and padding.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bertkit.tokenizer import Layout, Tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "tokenizer_edge_cases.jsonl"
CASES: list[str] = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").split("\n") if line]
# transformers reads an empty second text as no pair at all (its truthiness test): compared apart.
PAIRS: list[tuple[str, str]] = [(a, b) for i, a in enumerate(CASES) if (b := CASES[(i + 7) % len(CASES)])]
MESSY = ["Hello <mask> world", "Hello<mask>world", "  two leading spaces", "tabs\tand\nnewlines\r\n",
         "a" * 300, " Leading space, then ünïcödé 東京 😀👍🏽!"]
CORPUS = """\
The quick brown fox jumps over the lazy dog. Hello world, this is a tiny corpus for tiny tokenizers.
Extraordinarily long words such as antidisestablishmentarianism and pneumonoultramicroscopic appear.

Ünïcödé text: café, naïve, résumé, Ångström, coöperate; Greek ΟΔΟΣ and Cyrillic Москва.
日本語のテキスト、東京と大阪。中文分词测试。한국어 텍스트입니다. Emoji 😀👍🏽 and numbers 3.14 1,000 42.

She sells sea-shells by the sea-shore; he doesn't. What's the weather like in New York today?
"""


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers", reason="transformers (the oracle) not installed")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kinds")
    (root / "corpus.txt").write_text(CORPUS * 3, encoding="utf-8")
    return root


def _unigram_vocab(root: Path, specials: list[str], unk: str, normalizer=None) -> list[tuple[str, float]]:
    """(piece, score) pairs of a small SentencePiece-style Unigram model, `specials` first."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, pre_tokenizers, trainers

    backend = Backend(models.Unigram())
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token=unk, show_progress=False)
    backend.train([str(root / "corpus.txt")], trainer)
    return [tuple(piece) for piece in json.loads(backend.to_str())["model"]["vocab"]]


@pytest.fixture(scope="module")
def roberta_files(root: Path) -> Path:
    """An old-style RoBERTa directory: vocab.json + merges.txt and a config.json naming the model type."""
    from tokenizers import ByteLevelBPETokenizer

    trained = ByteLevelBPETokenizer()
    trained.train([str(root / "corpus.txt")], vocab_size=500, min_frequency=1, show_progress=False,
                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    directory = root / "roberta-files"
    directory.mkdir()
    trained.save_model(str(directory))
    (directory / "config.json").write_text('{"model_type": "roberta"}', encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def roberta_dir(root: Path, roberta_files: Path, transformers) -> Path:
    """The same vocabulary saved by transformers' RobertaTokenizer (tokenizer.json + tokenizer_config.json).
    Its <mask> gets lstrip, as in the hub's roberta-base tokenizer.json (transformers 5 keeps it from there)."""
    directory = root / "roberta"
    transformers.RobertaTokenizer.from_pretrained(roberta_files).save_pretrained(directory)
    spec = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    for token in spec["added_tokens"]:
        token["lstrip"] = token["content"] == "<mask>"
    (directory / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def xlmr_dir(root: Path, transformers) -> Path:
    directory = root / "xlmr"
    vocab = _unigram_vocab(root, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>")
    transformers.XLMRobertaTokenizer(vocab=vocab).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def albert_dir(root: Path, transformers) -> Path:
    from tokenizers import normalizers

    directory = root / "albert"
    albert_normalizer = normalizers.Sequence([normalizers.Replace("``", '"'), normalizers.Replace("''", '"'),
                                              normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()])
    vocab = _unigram_vocab(root, ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], "<unk>", albert_normalizer)
    transformers.AlbertTokenizer(vocab=vocab).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def distilbert_dir(root: Path, transformers) -> Path:
    from tokenizers import BertWordPieceTokenizer

    trained = BertWordPieceTokenizer()
    trained.train([str(root / "corpus.txt")], vocab_size=400, min_frequency=1, show_progress=False)
    directory = root / "distilbert"
    transformers.DistilBertTokenizer(vocab=trained.get_vocab()).save_pretrained(directory)
    return directory


def auto(transformers, directory: Path, **kwargs):
    return transformers.AutoTokenizer.from_pretrained(str(directory), **kwargs)


def assert_matches(ours: Tokenizer, theirs, texts=CASES + MESSY, pairs=PAIRS, token_types: bool | None = None) -> None:
    """Ids, attention masks, offsets, word and sequence ids of every text; pairs cut longest-first to several
    lengths and padded; token types present exactly when transformers returns them (or as `token_types`)."""
    types = ("token_type_ids" in theirs("a")) if token_types is None else token_types
    assert ours.has_token_types is types
    for text in texts:
        mine = ours(text, return_tensors=None, return_offsets=True, return_word_ids=True)
        ref = theirs(text, return_offsets_mapping=True)
        assert mine.input_ids[0] == ref["input_ids"], text
        assert mine.attention_mask[0] == ref["attention_mask"], text
        assert mine.offsets[0] == [tuple(o) for o in ref["offset_mapping"]], text
        assert (mine.word_ids[0], mine.sequence_ids[0]) == (ref.word_ids(), ref.sequence_ids()), text
        assert set(mine.keys()) == {"input_ids", "attention_mask", *(["token_type_ids"] if types else [])}
        if types and "token_type_ids" in ref:
            assert mine.token_type_ids[0] == ref["token_type_ids"], text
    firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    for max_length in (9, 16, 40):
        mine = ours(firsts, seconds, max_length=max_length, return_tensors=None, return_offsets=True)
        ref = theirs(firsts, seconds, max_length=max_length, truncation="longest_first", padding="longest",
                     return_offsets_mapping=True)
        for i in range(len(pairs)):
            assert mine.input_ids[i] == ref["input_ids"][i], (max_length, pairs[i])
            assert mine.attention_mask[i] == ref["attention_mask"][i], (max_length, pairs[i])
            assert mine.offsets[i] == [tuple(o) for o in ref["offset_mapping"][i]], (max_length, pairs[i])
            assert mine.sequence_ids[i] == ref.sequence_ids(i), (max_length, pairs[i])
            if types and "token_type_ids" in ref:
                assert mine.token_type_ids[i] == ref["token_type_ids"][i], (max_length, pairs[i])
        assert mine.num_truncated == sum(len(ours.encode(a, b)) > max_length for a, b in pairs)


def pieces(tokenizer: Tokenizer, text: str) -> list[str]:
    """The vocabulary entries of `text` (Encoding.tokens shows an lstrip token with the space it took)."""
    return tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False))


def words(tokenizer: Tokenizer, text: str) -> list[str]:
    """`text`'s pieces grouped into words as Tokenizer.continues_word says, each word decoded."""
    groups: list[list[int]] = []
    for index in tokenizer.encode(text, add_special_tokens=False):
        if tokenizer.continues_word[index] and groups:
            groups[-1].append(index)
        else:
            groups.append([index])
    return [tokenizer.decode(group) for group in groups]


# --------------------------------------------------------------------------
# RoBERTa: byte-level BPE
# --------------------------------------------------------------------------


def test_roberta_matches_transformers(roberta_dir: Path, transformers) -> None:
    ours, theirs = Tokenizer.from_pretrained(roberta_dir), auto(transformers, roberta_dir)
    assert ours.kind == "bpe" and ours.vocab == theirs.get_vocab() and ours.model_input_names == ("input_ids",
                                                                                                  "attention_mask")
    assert_matches(ours, theirs)
    assert (ours.cls_token, ours.sep_token, ours.pad_token, ours.mask_token, ours.unk_token) == (
        "<s>", "</s>", "<pad>", "<mask>", "<unk>")
    assert (ours.cls_token_id, ours.pad_token_id, ours.sep_token_id, ours.unk_token_id, ours.mask_token_id) == (
        0, 1, 2, 3, 4)
    assert ours.all_special_ids == frozenset(theirs.all_special_ids) == frozenset(range(5))
    # lstrip: the space before the mask belongs to it (no lone "Ġ" piece)
    assert pieces(ours, "Hello <mask> world") == [*pieces(ours, "Hello"), "<mask>", *pieces(ours, " world")]
    # The layout, read from RobertaProcessing: <s> A </s> and <s> A </s></s> B </s>, token types all 0.
    assert ours.layout() == Layout(((0, 0),), (), ((2, 0),), 0, None)
    assert ours.layout(pair=True) == Layout(((0, 0),), ((2, 0), (2, 0)), ((2, 0),), 0, 0)
    assert ours.build_inputs([7, 8], [9]) == {"input_ids": [0, 7, 8, 2, 2, 9, 2]}
    assert ours.num_special_tokens() == 2 and ours.num_special_tokens(pair=True) == 4
    for text in ("Hello world", "", "antidisestablishmentarianism"):
        assert ours.decode(ours.encode(text)) == theirs.decode(theirs(text)["input_ids"], skip_special_tokens=True)


def test_roberta_padding_and_tensors(roberta_dir: Path, transformers) -> None:
    ours, theirs = Tokenizer.from_pretrained(roberta_dir), auto(transformers, roberta_dir)
    texts = ["Hello world", "The quick brown fox jumps over the lazy dog."]
    mine = ours(texts, padding="max_length", max_length=16)
    ref = theirs(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    assert torch.equal(mine.input_ids, ref["input_ids"]) and torch.equal(mine.attention_mask, ref["attention_mask"])
    assert mine.token_type_ids is None and set(dict(**mine)) == {"input_ids", "attention_mask"}
    assert mine.input_ids[0, -1].item() == ours.pad_token_id == 1
    assert mine.to("cpu").token_type_ids is None


def test_roberta_words_start_with_their_space(roberta_dir: Path) -> None:
    ours = Tokenizer.from_pretrained(roberta_dir)
    assert words(ours, "Hello world, antidisestablishmentarianism!") == [
        "Hello", " world,", " antidisestablishmentarianism!"]  # punctuation continues a word, as fairseq counts
    assert words(ours, "naïve 東京\nnext") == ["naïve", " 東京\nnext"]  # only a space starts a word (fairseq too)
    assert words(ours, " Hello") == [" Hello"]
    specials = [ours.continues_word[i] for i in sorted(ours.all_special_ids)]
    assert specials == [False] * 5
    assert ours.leading_space_matters  # "Hello" at the start, "ĠHello" after a space
    assert ours.encode("Hello", add_special_tokens=False) != ours.encode(" Hello", add_special_tokens=False)


def test_roberta_vocab_files_alone_match_transformers_but_for_the_mask(roberta_files: Path, roberta_dir: Path,
                                                                      transformers) -> None:
    """vocab.json + merges.txt is read as transformers' RobertaTokenizer reads it, except that <mask> takes the
    space before it (transformers 5 drops lstrip here; its tokenizer.json, fairseq and transformers 4 keep it)."""
    ours, theirs = Tokenizer.from_pretrained(roberta_files), auto(transformers, roberta_files)
    assert ours.kind == "bpe" and ours.vocab == theirs.get_vocab() and not ours.has_token_types
    assert_matches(ours, theirs, texts=[t for t in CASES + MESSY if " <mask>" not in t],
                   pairs=[p for p in PAIRS if " <mask>" not in p[0] + p[1]])
    hello, world = pieces(ours, "Hello"), pieces(ours, " world")
    assert pieces(ours, "Hello <mask> world") == [*hello, "<mask>", *world]
    assert theirs.convert_ids_to_tokens(theirs("Hello <mask> world")["input_ids"][1:-1]) == [*hello, "Ġ", "<mask>",
                                                                                             *world]
    from_json = Tokenizer.from_pretrained(roberta_dir)  # the same vocabulary with its tokenizer.json
    for text in CASES + MESSY:
        assert ours.encode(text) == from_json.encode(text), text


def test_roberta_add_prefix_space_from_the_config(roberta_dir: Path, root: Path, transformers) -> None:
    directory = root / "roberta-prefix-space"
    shutil.copytree(roberta_dir, directory)
    config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    (directory / "tokenizer_config.json").write_text(json.dumps({**config, "add_prefix_space": True}))
    ours, theirs = Tokenizer.from_pretrained(directory), auto(transformers, directory)
    assert ours.tokenize("Hello") == Tokenizer.from_pretrained(roberta_dir).tokenize(" Hello")
    assert ours.tokenize("Hello")[0].startswith("Ġ") and not ours.leading_space_matters
    assert_matches(ours, theirs, texts=CASES[:30], pairs=PAIRS[:30])


def test_roberta_pre_split_words_match_transformers(roberta_dir: Path, transformers) -> None:
    """Words read as RoBERTa reads them inside running text: each with its space (add_prefix_space=True)."""
    ours, theirs = Tokenizer.from_pretrained(roberta_dir), auto(transformers, roberta_dir, add_prefix_space=True)
    sentences = [["Hello", "world", ",", "naïve", "東京"], ["antidisestablishmentarianism", "😀", "3.14"]]
    mine = ours.encode_words(sentences)
    for i, sentence in enumerate(sentences):
        ref = theirs(sentence, is_split_into_words=True, return_offsets_mapping=True)
        assert mine.input_ids[i] == ref["input_ids"]
        assert mine.word_ids[i] == ref.word_ids()
        assert mine.offsets[i] == [tuple(o) for o in ref["offset_mapping"]]
    assert ours.convert_ids_to_tokens(mine.input_ids[0][1]).startswith("Ġ")  # "Hello", the first word, too
    assert ours.encode_words(sentences, add_special_tokens=False).input_ids[0] == mine.input_ids[0][1:-1]
    assert mine.token_type_ids is None


def test_empty_second_text_is_still_a_pair(roberta_dir: Path, transformers) -> None:
    """An empty second text keeps its separators; transformers drops the pair (it tests the text's truthiness)."""
    ours, theirs = Tokenizer.from_pretrained(roberta_dir), auto(transformers, roberta_dir)
    assert ours.encode("Hello", "") == [0, *ours.encode("Hello", add_special_tokens=False), 2, 2, 2]
    assert theirs("Hello", "")["input_ids"] == theirs("Hello")["input_ids"] == ours.encode("Hello")


# --------------------------------------------------------------------------
# XLM-R and ALBERT: Unigram (SentencePiece converted to tokenizer.json)
# --------------------------------------------------------------------------


def test_xlmr_matches_transformers(xlmr_dir: Path, transformers) -> None:
    ours, theirs = Tokenizer.from_pretrained(xlmr_dir), auto(transformers, xlmr_dir)
    assert ours.kind == "unigram" and ours.vocab == theirs.get_vocab()
    assert_matches(ours, theirs)
    assert (ours.cls_token_id, ours.pad_token_id, ours.sep_token_id, ours.unk_token_id, ours.mask_token_id) == (
        0, 1, 2, 3, 4)
    assert ours.layout(pair=True) == Layout(((0, 0),), ((2, 0), (2, 0)), ((2, 0),), 0, 0)
    assert words(ours, "Hello world, naïve") == ["Hello", "world,", "naïve"]
    assert not ours.leading_space_matters  # Metaspace marks every first word
    for text in ("Hello world", "naïve café"):
        assert ours.decode(ours.encode(text)) == theirs.decode(theirs(text)["input_ids"], skip_special_tokens=True)


def test_albert_matches_transformers_but_keeps_token_types(albert_dir: Path, transformers) -> None:
    """ALBERT is BERT-laid-out over a lowercasing Unigram. Its model takes token types (type_vocab_size 2,
    pretrained with sentence-order segments); transformers 5's AlbertTokenizer no longer returns them."""
    ours, theirs = Tokenizer.from_pretrained(albert_dir), auto(transformers, albert_dir)
    assert "token_type_ids" not in theirs("a")
    assert_matches(ours, theirs, token_types=True)
    assert (ours.cls_token, ours.sep_token, ours.pad_token, ours.mask_token, ours.unk_token) == (
        "[CLS]", "[SEP]", "<pad>", "[MASK]", "<unk>")
    assert ours.layout(pair=True) == Layout(((2, 0),), ((3, 0),), ((3, 1),), 0, 1)
    pair = ours(["Hello"], ["world"], return_tensors=None)
    first = len(ours.encode("Hello"))
    assert pair.token_type_ids[0] == [0] * first + [1] * (len(pair.input_ids[0]) - first)
    assert ours.lowercase and words(ours, "Hello, Naïve") == ["hello,", "naive"]
    assert not Tokenizer.from_pretrained(albert_dir, token_type_ids=False).has_token_types  # a family may say no


# --------------------------------------------------------------------------
# DistilBERT: BERT's WordPiece without token types
# --------------------------------------------------------------------------


def test_distilbert_matches_transformers(distilbert_dir: Path, transformers) -> None:
    """The exact BERT pipeline (not the stock BertNormalizer transformers runs) and Google's pair cut (an odd
    leftover token stays with the first text; transformers gives it to the second when that is as long or longer):
    compared where they agree."""
    ours, theirs = Tokenizer.from_pretrained(distilbert_dir), auto(transformers, distilbert_dir)
    assert ours.kind == "wordpiece" and not ours.has_token_types and ours.vocab == theirs.get_vocab()
    plain = [t for t in CASES + MESSY if t.isascii() or t in ("Café", "naïve résumé coöperate", "中文分词测试")]
    assert_matches(ours, theirs, texts=plain, pairs=[("Hello, world! The quick brown fox jumps.", "a b"),
                                                     ("The lazy dog, unaffable and quick.", "sea")])
    assert ours.tokenize("Hello, quickly foxes") == ["hello", ",", "quick", "##ly", "fox", "##es"]
    assert words(ours, "Hello, quickly foxes") == ["hello", ",", "quickly", "foxes"]
    assert not ours.leading_space_matters
    a, b = "the lazy dog", "the quick brown fox jumps over the lazy dog"
    n1 = len(ours.encode(a, add_special_tokens=False))
    max_length = 2 * n1 - 1 + 3  # cut B to A's length, then one more token must go
    mine = ours([a], [b], max_length=max_length, return_tensors=None, return_word_ids=True).sequence_ids[0]
    ref = theirs(a, b, max_length=max_length, truncation="longest_first").sequence_ids()
    assert (mine.count(0), mine.count(1)) == (n1, n1 - 1) and (ref.count(0), ref.count(1)) == (n1 - 1, n1)


# --------------------------------------------------------------------------
# token types, special tokens and files
# --------------------------------------------------------------------------


SMALL_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]


@pytest.mark.parametrize(("files", "expected"), [
    ({}, True),  # BERT's vocab.txt alone
    ({"config.json": {"model_type": "distilbert"}}, False),
    ({"config.json": {"model_type": "electra"}}, True),
    ({"config.json": {"model_type": "roberta"}}, False),
    ({"tokenizer_config.json": {"tokenizer_class": "DistilBertTokenizerFast"}}, False),
    ({"tokenizer_config.json": {"tokenizer_class": "ElectraTokenizer"}, "config.json": {"model_type": "roberta"}}, True),
    ({"tokenizer_config.json": {"model_input_names": ["input_ids", "attention_mask"],
                                "tokenizer_class": "BertTokenizer"}}, False),
])
def test_token_types_follow_the_directory(tmp_path: Path, files: dict, expected: bool) -> None:
    (tmp_path / "vocab.txt").write_text("\n".join(SMALL_VOCAB) + "\n", encoding="utf-8")
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content), encoding="utf-8")
    tokenizer = Tokenizer.from_pretrained(tmp_path)
    assert tokenizer.has_token_types is expected
    encoded = tokenizer("hello", "world", return_tensors=None)
    assert encoded.input_ids == [[2, 5, 3, 6, 3]]
    assert encoded.token_type_ids == ([[0, 0, 0, 1, 1]] if expected else None)
    assert Tokenizer.from_pretrained(tmp_path, token_type_ids=not expected).has_token_types is (not expected)


def test_save_pretrained_round_trips_every_kind(roberta_dir: Path, xlmr_dir: Path, albert_dir: Path,
                                                distilbert_dir: Path, tmp_path: Path, transformers) -> None:
    for source in (roberta_dir, xlmr_dir, albert_dir, distilbert_dir):
        ours = Tokenizer.from_pretrained(source)
        saved = tmp_path / source.name
        saved.mkdir()
        ours.save_pretrained(saved)
        again, theirs = Tokenizer.from_pretrained(saved), auto(transformers, saved)
        assert again.has_token_types is ours.has_token_types and again.special_tokens == ours.special_tokens
        assert again.model_input_names == ours.model_input_names
        for text in CASES:  # transformers runs the saved tokenizer.json (or rebuilds the very same pipeline)
            assert again.encode(text) == ours.encode(text) == theirs(text)["input_ids"], (source.name, text)
        assert ("token_type_ids" in theirs("a")) is ours.has_token_types, source.name
    names = sorted(p.name for p in (tmp_path / roberta_dir.name).iterdir())
    assert names == ["merges.txt", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json"]


def test_sentencepiece_files_alone_are_named(tmp_path: Path) -> None:
    (tmp_path / "spiece.model").write_bytes(b"\x00")
    with pytest.raises(ValueError, match=r"spiece\.model.*tokenizer\.json"):
        Tokenizer.from_pretrained(tmp_path)


def test_missing_special_token_is_named(tmp_path: Path, roberta_files: Path) -> None:
    shutil.copy(roberta_files / "merges.txt", tmp_path / "merges.txt")
    vocab = json.loads((roberta_files / "vocab.json").read_text(encoding="utf-8"))
    del vocab["<mask>"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.json: no mask token.*<mask>"):
        Tokenizer.from_pretrained(tmp_path)


# --------------------------------------------------------------------------
# training a RoBERTa vocabulary
# --------------------------------------------------------------------------


def test_train_bpe_loads_in_transformers_with_the_same_ids(root: Path, tmp_path: Path, transformers) -> None:
    from bertkit.cli import main

    main(["vocab", "--kind", "bpe", "--input", str(root / "corpus.txt"), "--output", str(tmp_path / "bpe"),
          "--vocab-size", "400", "--min-frequency", "1", "--special-tokens", "<url>", "--quiet"])
    directory = tmp_path / "bpe"
    assert sorted(p.name for p in directory.iterdir()) == [
        "merges.txt", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json"]
    config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "RobertaTokenizer" and config["model_input_names"] == ["input_ids",
                                                                                              "attention_mask"]
    assert (config["add_prefix_space"], config["trim_offsets"]) == (False, True)
    ours, theirs = Tokenizer.from_pretrained(directory), auto(transformers, directory)
    assert type(theirs).__name__ == "RobertaTokenizer" and ours.vocab == theirs.get_vocab()
    assert ours.convert_ids_to_tokens(list(range(6))) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<url>"]
    assert ours.vocab_size <= 400 and ours.all_special_ids == frozenset(range(6))
    assert_matches(ours, theirs)
    assert theirs.tokenize("Hello <mask> world") == ours.tokenize("Hello <mask> world")
    assert pieces(ours, "Hello <mask> world") == [*pieces(ours, "Hello"), "<mask>", *pieces(ours, " world")]
    # The older files alone give the same tokenizer.
    files_only = tmp_path / "files-only"
    files_only.mkdir()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(directory / name, files_only / name)
    alone = Tokenizer.from_pretrained(files_only)
    for text in CASES + MESSY:
        assert alone.encode(text) == ours.encode(text), text


def test_train_bpe_from_python(root: Path) -> None:
    tokenizer = Tokenizer.train([root / "corpus.txt"], kind="bpe", vocab_size=300, min_frequency=1,
                                show_progress=False)
    assert (tokenizer.kind, tokenizer.has_token_types, tokenizer.lowercase) == ("bpe", False, False)
    text = "naïve café 東京 😀 — unseen characters are bytes: ꙮ"
    ids = tokenizer.encode(text)
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == text
    with pytest.raises(ValueError, match="cased"):
        Tokenizer.train([root / "corpus.txt"], kind="bpe", lowercase=True, show_progress=False)
    with pytest.raises(ValueError, match="kind"):
        Tokenizer.train([root / "corpus.txt"], kind="sentencepiece", show_progress=False)
