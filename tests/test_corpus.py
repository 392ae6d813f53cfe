"""Tests for bertkit.corpus: raw text -> documents -> sentences -> sharded token ids, and reading them back."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bertkit.corpus import (Corpus, CorpusStats, _tokenize, prepare_corpus, read_documents, split_sentences,
                            vocab_sha256)
from bertkit.tokenizer import Tokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# file name -> documents -> sentences, each sentence as split_sentences must find it again.
DOCS: dict[str, list[list[str]]] = {
    "a.txt": [
        ["The cat sat on the mat.", "Dr. Smith saw it from St. Louis!", "Was it a big cat?"],
        ["A second document starts here after a blank line.", "It has two sentences."],
    ],
    "b.txt": [
        ["Files are documents too, even without a blank line before them."],
        ["Mr. Jones moved to the U.S. in 2020.", "He liked it, e.g. the food.", '"Really?" she asked.', "Yes."],
    ],
}

WORDS = ("time people year way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business").split()


def write_files(directory: Path, files: dict[str, list[list[str]]], width: int = 24) -> list[Path]:
    """Each document hard-wrapped at ``width``; documents separated by blank and whitespace-only lines."""
    paths = []
    separators = ["\n\n", "\n \t\n\n\n", "\n\n"]
    for name, documents in files.items():
        parts = [textwrap.fill(" ".join(sentences), width) for sentences in documents]
        text = "".join(part + separators[i % len(separators)] for i, part in enumerate(parts))
        paths.append(directory / name)
        # The first file ends with a newline, the second without: a document ends at the file's end either way.
        paths[-1].write_text(text.rstrip("\n") + ("\n" if len(paths) % 2 else ""), encoding="utf-8")
    return paths


def synthetic(n_documents: int, seed: int) -> list[list[str]]:
    """Documents of 1-5 random sentences ending in . ! or ?"""
    rng = random.Random(seed)
    documents = []
    for _ in range(n_documents):
        sentences = []
        for _ in range(rng.randint(1, 5)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(2, 12))]
            sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
        documents.append(sentences)
    return documents


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    """A WordPiece vocabulary trained on the test texts (so most words are whole tokens)."""
    text = "\n".join(" ".join(s) for docs in [*DOCS.values(), synthetic(50, 0)] for s in docs)
    path = tmp_path_factory.mktemp("vocab") / "train.txt"
    path.write_text(text * 3, encoding="utf-8")
    return Tokenizer.train([path], vocab_size=300, show_progress=False)


@pytest.fixture(scope="module")
def big_corpus_files(tmp_path_factory) -> list[Path]:
    """Three files of 40 synthetic documents each."""
    directory = tmp_path_factory.mktemp("big")
    return write_files(directory, {f"part{i}.txt": synthetic(40, seed=i + 1) for i in range(3)}, width=60)


def prepare(files, tokenizer, out, **kwargs) -> CorpusStats:
    return prepare_corpus(files, tokenizer, out, progress=False, **{"workers": 1, **kwargs})


def ids(tokenizer: Tokenizer, sentence: str) -> list[int]:
    return tokenizer.encode(sentence, add_special_tokens=False)


def document_ids(corpus: Corpus, doc: int) -> list[list[int]]:
    return [corpus.sentence(s).tolist() for s in corpus.document_sentences(doc)]


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    """Staging directories atomic_directory would leave next to the output if it failed to clean up."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------
# sentence splitting and documents
# --------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
    ("Mr. Smith met Mrs. Jones and Dr. Who on St. James St. in the rain.", None),
    ("The U.S. Army and the U.N. met in Washington, D.C. today.", None),
    ("Apples, pears, etc. Were sold, e.g. Gala, i.e. Red ones, vs. Green ones.", None),
    ("George W. Bush spoke. J. R. R. Tolkien wrote.", ["George W. Bush spoke.", "J. R. R. Tolkien wrote."]),
    ("So did I. Then we left.", ["So did I.", "Then we left."]),
    ('Praise from Sens. Paul and Cory, (Rep. Steve Womack) and "Mr. Smith".', None),
    ("See No. 5 and Fig. 3 from Jan. 12 on. No. More.", ["See No. 5 and Fig. 3 from Jan. 12 on.", "No.", "More."]),
    ('He said "Stop!" Then he left.', ['He said "Stop!"', "Then he left."]),
    ('"Why?" she asked. "Because." (It was late.) It rained.',
     ['"Why?" she asked.', '"Because."', "(It was late.)", "It rained."]),
    ("Wait... What?! Really?? Yes…  Fine.", ["Wait...", "What?!", "Really??", "Yes…", "Fine."]),
    ("It cost 3.50 dollars. 12 people paid it.", ["It cost 3.50 dollars.", "12 people paid it."]),
    ("He left. 'Bye,' he said.", ["He left.", "'Bye,' he said."]),
    ("lowercase text. is not split. ever.", None),
    ("A URL like example.com. Then text.", ["A URL like example.com.", "Then text."]),
    ("  Padded.   Lines\n are joined.  ", ["Padded.", "Lines\n are joined."]),
    ("", []),
    ("   ", []),
])
def test_split_sentences(text: str, expected: list[str] | None) -> None:
    assert split_sentences(text) == (expected if expected is not None else [text])


def test_read_documents_boundaries_and_joining(tmp_path: Path) -> None:
    path = tmp_path / "doc.txt"
    path.write_bytes(
        "\ufeffFirst line of a\r\nwrapped paragraph.\r\n\r\n\n"  # BOM, CRLF, two blank lines
        "  Indented second\t\n  document.\n \t \n"  # a whitespace-only line separates too
        "Third\u2028still one line.\n\n\n".encode()  # U+2028 is no line break here
    )
    assert list(read_documents(path)) == [
        "First line of a wrapped paragraph.",
        "Indented second document.",
        "Third\u2028still one line.",
    ]


def test_read_documents_names_file_and_line_of_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"good line\n\nstill good\ncaf\xe9 au lait\n")
    documents = read_documents(path)
    assert next(documents) == "good line"  # lazily: the bad line is not read yet
    with pytest.raises(ValueError, match=r"latin1\.txt: line 4: invalid UTF-8 byte 0xe9 at byte 4"):
        next(documents)


# --------------------------------------------------------------------------
# prepare_corpus -> Corpus
# --------------------------------------------------------------------------


def test_round_trip(tmp_path: Path, tokenizer: Tokenizer) -> None:
    files = write_files(tmp_path, DOCS)
    stats = prepare(files, tokenizer, tmp_path / "out")
    corpus = Corpus(tmp_path / "out")

    expected = [doc for docs in DOCS.values() for doc in docs]  # file boundaries are document boundaries
    expected_ids = [[ids(tokenizer, s) for s in doc] for doc in expected]
    assert [document_ids(corpus, d) for d in range(corpus.num_documents)] == expected_ids
    n_sentences = sum(map(len, expected))
    n_tokens = sum(len(s) for doc in expected_ids for s in doc)
    assert stats == CorpusStats(documents=4, sentences=n_sentences, tokens=n_tokens, shards=1)
    assert (corpus.num_documents, corpus.num_sentences, corpus.num_tokens) == (4, n_sentences, n_tokens)
    assert corpus.sentence_lengths.dtype == np.int32
    assert corpus.sentence_lengths.tolist() == [len(s) for doc in expected_ids for s in doc]
    assert corpus.document_offsets.tolist() == [0, 3, 5, 6, 10]
    # A whole document in one call, and decoding gives the sentences back (lowercased).
    whole = corpus.tokens(*(lambda r: (r.start, r.stop))(corpus.document_sentences(3)))
    assert whole.dtype == np.int64 and whole.tolist() == sum(expected_ids[3], [])
    assert tokenizer.decode(corpus.sentence(1)) == "dr. smith saw it from st. louis!"


def test_manifest(tmp_path: Path, tokenizer: Tokenizer) -> None:
    files = write_files(tmp_path, DOCS)
    prepare(files, tokenizer, tmp_path / "out", shard_tokens=1000)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (tmp_path / "saved").mkdir()
    tokenizer.save_pretrained(tmp_path / "saved")
    assert manifest["format"] == "bertkit-corpus" and manifest["version"] == 1
    assert manifest["token_dtype"] == "uint16"
    vocab_file_sha256 = hashlib.sha256((tmp_path / "saved" / "vocab.txt").read_bytes()).hexdigest()
    assert manifest["tokenizer"] == {"vocab_size": tokenizer.vocab_size, "lowercase": True,
                                     "vocab_sha256": vocab_file_sha256}
    assert manifest["sources"] == [{"path": str(f.absolute()), "bytes": f.stat().st_size} for f in files]
    assert [manifest[k] for k in ("documents", "sentences")] == [4, 10]
    assert manifest["shards"] == [{"name": "shard-00000", "documents": 4, "sentences": 10,
                                   "tokens": manifest["tokens"]}]
    assert manifest["settings"]["shard_tokens"] == 1000
    shard = tmp_path / "out" / "shard-00000"
    assert sorted(p.name for p in shard.iterdir()) == ["document_offsets.npy", "sentence_offsets.npy", "tokens.npy"]
    assert np.load(shard / "document_offsets.npy").tolist() == [0, 3, 5, 6, 10]
    assert np.load(shard / "sentence_offsets.npy")[-1] == len(np.load(shard / "tokens.npy")) == manifest["tokens"]


def test_sentences_and_documents_without_tokens_are_dropped(tmp_path: Path, tokenizer: Tokenizer) -> None:
    path = tmp_path / "c.txt"
    # The normaliser removes \x07 and U+200B: the document made of them vanishes.
    path.write_text("The cat sat. The dog ran.\n\n\x07\x07 \u200b\x07\n\nWas it big?\n", encoding="utf-8")
    stats = prepare([path], tokenizer, tmp_path / "out")
    corpus = Corpus(tmp_path / "out")
    assert stats == CorpusStats(documents=2, sentences=3, tokens=corpus.num_tokens, shards=1)
    assert [document_ids(corpus, d) for d in range(2)] == [
        [ids(tokenizer, "The cat sat."), ids(tokenizer, "The dog ran.")], [ids(tokenizer, "Was it big?")]]
    # The splitter starts sentences at letters and digits, so an empty sentence inside a document
    # cannot come from a file; the tokenising step drops one all the same.
    batch = _tokenize(tokenizer, [["\u200b", "The cat sat.", "\x07"], ["\x07"], ["Was it big?"]], np.dtype(np.uint16))
    assert batch.sentence_lengths.tolist() == [len(ids(tokenizer, "The cat sat.")), len(ids(tokenizer, "Was it big?"))]
    assert batch.document_sentences.tolist() == [1, 1]
    assert batch.tokens.tolist() == ids(tokenizer, "The cat sat.") + ids(tokenizer, "Was it big?")


def test_shards_give_the_same_global_view(tmp_path: Path, tokenizer: Tokenizer, big_corpus_files) -> None:
    one = prepare(big_corpus_files, tokenizer, tmp_path / "one")
    many = prepare(big_corpus_files, tokenizer, tmp_path / "many", shard_tokens=150, chunk_documents=7)
    assert many.shards > 3 and one.shards == 1
    a, b = Corpus(tmp_path / "one"), Corpus(tmp_path / "many")
    assert (b.num_documents, b.num_sentences, b.num_tokens) == (one.documents, one.sentences, one.tokens) == \
           (120, a.num_sentences, a.num_tokens)
    np.testing.assert_array_equal(a.sentence_lengths, b.sentence_lengths)
    np.testing.assert_array_equal(a.document_offsets, b.document_offsets)
    for doc in range(a.num_documents):
        r = a.document_sentences(doc)
        np.testing.assert_array_equal(a.tokens(r.start, r.stop), b.tokens(r.start, r.stop))
    # Each shard closes with the document that brings it to shard_tokens; the last one may be short.
    shards = b.manifest["shards"]
    assert sum(s["documents"] for s in shards) == 120
    first_doc = 0
    for i, shard in enumerate(shards):
        last = b.document_sentences(first_doc + shard["documents"] - 1)
        last_tokens = int(b.sentence_lengths[last.start:last.stop].sum())
        assert shard["tokens"] - last_tokens < 150
        assert shard["tokens"] >= 150 or i == len(shards) - 1
        first_doc += shard["documents"]
    # A range across a shard boundary is refused, one inside a shard is fine.
    boundary = shards[0]["sentences"]
    with pytest.raises(ValueError, match="span shards 0 and 1"):
        b.tokens(boundary - 1, boundary + 1)
    assert len(b.tokens(boundary, boundary + 1)) == b.sentence_lengths[boundary]


def test_output_does_not_depend_on_workers_or_chunks(tmp_path: Path, tokenizer: Tokenizer, big_corpus_files) -> None:
    prepare(big_corpus_files, tokenizer, tmp_path / "w1", shard_tokens=400, workers=1)
    prepare(big_corpus_files, tokenizer, tmp_path / "w2", shard_tokens=400, workers=2, chunk_documents=9)
    prepare(big_corpus_files, tokenizer, tmp_path / "c1", shard_tokens=400, workers=2, chunk_documents=1)
    reference = tree_bytes(tmp_path / "w1")
    assert len(reference) > 4  # several shards
    for other in ("w2", "c1"):
        files = tree_bytes(tmp_path / other)
        assert files.keys() == reference.keys()
        for name, content in reference.items():
            if name == "manifest.json":  # records chunk_documents, and only that differs
                manifests = [json.loads(x) for x in (content, files[name])]
                for m in manifests:
                    del m["settings"]["chunk_documents"]
                assert manifests[0] == manifests[1]
            else:
                assert files[name] == content, name


def test_token_dtype_follows_vocab_size(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(70_000)]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([*SPECIALS, ".", *words]) + "\n", encoding="utf-8")
    big = Tokenizer.from_vocab(vocab)
    text = tmp_path / "t.txt"
    text.write_text("W69999 w3. W65536 w70000.\n", encoding="utf-8")
    prepare([text], big, tmp_path / "out")
    corpus = Corpus(tmp_path / "out")
    assert corpus.manifest["token_dtype"] == "uint32"
    assert np.load(tmp_path / "out/shard-00000/tokens.npy").dtype == np.uint32
    assert corpus.sentence(0).tolist() == [6 + 69_999, 9, 5]
    assert corpus.sentence(1).tolist() == [6 + 65_536, 1, 5]  # w70000 is unknown

    small = Tokenizer.from_vocab(_write_vocab(tmp_path / "small.txt", ["w", "."]))
    prepare([text], small, tmp_path / "small")
    assert np.load(tmp_path / "small/shard-00000/tokens.npy").dtype == np.uint16


def _write_vocab(path: Path, tokens: list[str]) -> Path:
    path.write_text("\n".join([*SPECIALS, *tokens]) + "\n", encoding="utf-8")
    return path


def test_progress_bar(tmp_path: Path, tokenizer: Tokenizer, capsys) -> None:
    files = write_files(tmp_path, DOCS)
    prepare_corpus(files, tokenizer, tmp_path / "quiet", workers=1, progress=False)
    assert capsys.readouterr().err == ""
    prepare_corpus(files, tokenizer, tmp_path / "loud", workers=1)
    err = capsys.readouterr().err
    assert "prepare corpus" in err and "documents=4" in err and "sentences=10" in err


# --------------------------------------------------------------------------
# bad input and the output directory
# --------------------------------------------------------------------------


def test_bad_input_files(tmp_path: Path, tokenizer: Tokenizer) -> None:
    good = write_files(tmp_path, DOCS)
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        prepare([*good, tmp_path / "missing.txt"], tokenizer, out)
    (tmp_path / "sub").mkdir()
    with pytest.raises(IsADirectoryError, match="sub"):
        prepare([tmp_path / "sub"], tokenizer, out)
    with pytest.raises(ValueError, match="no corpus files"):
        prepare([], tokenizer, out)
    blank, empty = tmp_path / "blank.txt", tmp_path / "empty.txt"
    blank.write_text("\n  \n\t\n", encoding="utf-8")
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no documents.*blank\.txt, .*empty\.txt"):
        prepare([blank, empty], tokenizer, out)
    with pytest.raises(ValueError, match="shard_tokens must be a positive integer"):
        prepare(good, tokenizer, out, shard_tokens=0)
    assert not out.exists() and leftovers(tmp_path) == []


def test_error_midway_leaves_nothing(tmp_path: Path, tokenizer: Tokenizer, big_corpus_files) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Fine text.\n\nMore fine text.\nThen \xff bad.\n")
    out = tmp_path / "out"
    # Several shards are written before the bad file is reached, with and without worker processes.
    for workers in (1, 2):
        with pytest.raises(ValueError, match=r"bad\.txt: line 4: invalid UTF-8 byte 0xff"):
            prepare([*big_corpus_files, bad], tokenizer, out, shard_tokens=50, chunk_documents=3, workers=workers)
        assert not out.exists() and leftovers(tmp_path) == []


def test_refuses_non_empty_output_unless_overwrite(tmp_path: Path, tokenizer: Tokenizer, big_corpus_files) -> None:
    files = write_files(tmp_path, DOCS)
    out = tmp_path / "out"
    out.mkdir()  # an empty directory is fine
    prepare(big_corpus_files, tokenizer, out, shard_tokens=200)
    assert len(Corpus(out).manifest["shards"]) > 2
    before = tree_bytes(out)
    with pytest.raises(FileExistsError, match=str(out)):
        prepare(files, tokenizer, out)
    assert tree_bytes(out) == before
    (out / "notes.txt").write_text("mine")
    prepare(files, tokenizer, out, overwrite=True)
    # Replaced as a whole: no shard or file of the old corpus survives.
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000"]
    assert Corpus(out).num_documents == 4 and leftovers(tmp_path) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        prepare(files, tokenizer, tmp_path / "file")


# --------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------


@pytest.fixture
def prepared(tmp_path: Path, tokenizer: Tokenizer) -> Path:
    prepare(write_files(tmp_path, DOCS), tokenizer, tmp_path / "out", shard_tokens=20)
    return tmp_path / "out"


def test_corpus_indexing(prepared: Path) -> None:
    corpus = Corpus(prepared)
    assert corpus.tokens(3, 3).tolist() == []
    with pytest.raises(IndexError, match="document 4 out of range"):
        corpus.document_sentences(4)
    with pytest.raises(IndexError):
        corpus.document_sentences(-1)
    with pytest.raises(IndexError, match=r"sentences \[9, 11\) out of range"):
        corpus.tokens(9, 11)
    with pytest.raises(IndexError):
        corpus.sentence(corpus.num_sentences)


def test_corpus_pickles_by_directory(prepared: Path) -> None:
    corpus = Corpus(prepared)
    data = pickle.dumps(corpus)
    assert len(data) < 500  # the directory, not the arrays
    again = pickle.loads(data)
    np.testing.assert_array_equal(again.sentence(7), corpus.sentence(7))
    np.testing.assert_array_equal(again.document_offsets, corpus.document_offsets)


def test_check_tokenizer(prepared: Path, tokenizer: Tokenizer, tmp_path: Path) -> None:
    corpus = Corpus(prepared)
    assert corpus.vocab_sha256 == vocab_sha256(tokenizer) and corpus.vocab_size == tokenizer.vocab_size
    corpus.check_tokenizer(tokenizer)
    other = Tokenizer.from_vocab(_write_vocab(tmp_path / "other.txt", ["cat", "dog"]))
    with pytest.raises(ValueError, match="another vocabulary"):
        corpus.check_tokenizer(other)
    (tmp_path / "saved").mkdir()
    tokenizer.save_pretrained(tmp_path / "saved")
    cased = Tokenizer.from_vocab(tmp_path / "saved" / "vocab.txt", lowercase=False)
    with pytest.raises(ValueError, match="lowercase=True"):
        corpus.check_tokenizer(cased)


def test_corpus_rejects_what_is_not_a_prepared_corpus(prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="corpus directory not found"):
        Corpus(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a prepared corpus: it has no manifest.json"):
        Corpus(tmp_path / "empty")

    manifest_path = prepared / "manifest.json"
    original = json.loads(manifest_path.read_text())

    def broken(change, error, match: str) -> None:
        manifest = json.loads(json.dumps(original))
        change(manifest)
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(error, match=match):
            Corpus(prepared)

    broken(lambda m: m.update(version=2), ValueError, "format version 2")
    broken(lambda m: m.update(format="other"), ValueError, "not a bertkit-corpus manifest")
    broken(lambda m: m.pop("shards"), ValueError, "lacks shards")
    broken(lambda m: m["shards"][1].pop("tokens"), ValueError, "lacks name/documents/sentences/tokens")
    broken(lambda m: m.update(token_dtype="uint32"), ValueError, "token dtype 'uint32', expected 'uint16'")
    broken(lambda m: m.update(tokens=m["tokens"] + 1), ValueError, "the manifest says")
    broken(lambda m: m["shards"][0].update(sentences=m["shards"][0]["sentences"] - 1), ValueError,
           r"sentence_offsets.npy holds int64 \(\d+,\), the manifest says")
    manifest_path.write_text(json.dumps(original))
    Corpus(prepared)  # intact again

    tokens_file = prepared / "shard-00001" / "tokens.npy"
    saved = tokens_file.read_bytes()
    tokens_file.unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001/tokens.npy"):
        Corpus(prepared)
    tokens_file.write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="tokens.npy is not a .npy array"):
        Corpus(prepared)
    tokens_file.write_bytes(saved)
    offsets = prepared / "shard-00000" / "sentence_offsets.npy"
    np.save(offsets, np.load(offsets)[::-1].copy())
    with pytest.raises(ValueError, match="sentence_offsets.npy is not 0, rising"):
        Corpus(prepared)
