"""Corpus preparation for BERT pretraining: raw UTF-8 text -> documents -> sentences -> token ids on disk.

Masking and sentence-pair examples are made at training time from what this module writes once, so
a training step costs no parsing, and a corpus larger than memory works because the token ids stay
memory-mapped::

    prepare_corpus(["wiki.txt", "books.txt"], tokenizer, "corpus/")   # once
    corpus = Corpus("corpus/")                                          # every run: opens in a moment
    for s in corpus.document_sentences(7): corpus.sentence(s)           # int64 ids, no [CLS]/[SEP]

Documents: every file starts a new document, and inside a file one or more blank (whitespace-only)
lines separate documents. A document's lines are joined with a space, so hard-wrapped text is read
as running text and no sentence ends at a line end.

Sentences: :func:`split_sentences` is a small rule-based splitter, not a dependency. ``blingfire``
(the usual fast splitter) installs and splits well, but its last release is from 2021 and its
"any platform" wheel carries a 42 MB x86-64-only shared library, so it cannot load on ARM Linux.
The rules here find 99.7% of blingfire's boundaries in the State of the Union speeches and in Moby
Dick (and blingfire 99.3-99.8% of theirs); most of the differences are blingfire splitting after
"Mr." before a name. Splitting those 12 MB takes 0.35 s in one process against ~9 s of tokenising,
and it runs in a process pool next to the tokenizer, so it costs no time.

On disk (``out_dir``)::

    manifest.json                 format version, tokenizer fingerprint, sources, counts, shards, settings
    shard-00000/tokens.npy            uint16 ids (uint32 when the vocabulary exceeds 65,536 tokens)
    shard-00000/sentence_offsets.npy  int64, n_sentences + 1: sentence i is tokens[o[i]:o[i+1]]
    shard-00000/document_offsets.npy  int64, n_documents + 1: document j is sentences [d[j], d[j+1])
    shard-00001/...

A shard is closed as soon as it holds ``shard_tokens`` tokens; documents never span shards. The
directory is built in a staging directory and renamed into place, so an interrupted or failed run
leaves nothing behind. The shards depend only on the input files, the tokenizer and
``shard_tokens``: the number of workers and the chunk size change nothing, byte for byte.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import multiprocessing
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm.auto import tqdm

from .files import atomic_directory
from .readers import DataError
from .tokenizer import Tokenizer

__all__ = ["Corpus", "CorpusStats", "prepare_corpus", "read_documents", "split_sentences", "vocab_sha256"]

FORMAT = "bertkit-corpus"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITTER = "bertkit.corpus.split_sentences/1"  # bump when the rules change: old corpora then say so

# A chunk also ends at this many characters, so that a few huge documents cannot fill the memory.
_CHUNK_CHARS = 8_000_000
# Sentences per call of the Rust batch encoder: enough to keep its threads busy, few enough that the
# Encoding objects (~100 bytes a token) stay small. On SOTU, 4,096 grows the memory by 60 MB and
# 16,384 by 180 MB, at the same speed.
_ENCODE_BATCH = 4_096


@dataclass
class CorpusStats:
    """What :func:`prepare_corpus` wrote."""

    documents: int
    sentences: int
    tokens: int
    shards: int


# --------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------

# Terminal punctuation, then closing quotes/brackets, then the whitespace a boundary needs.
_CANDIDATE = re.compile(r"([.!?…]+)([\"'”’)\]»]*)\s+")
_OPENERS = "\"'“‘([«"
# Never the end of a sentence when a capitalised word follows ("Mr. Smith", "e.g. Paris").
_ABBREVIATIONS = frozenset(
    "mr mrs ms messrs mme mlle dr prof rev hon st sr jr gen col maj capt lt sgt cmdr adm gov sen rep "
    "sens reps pres supt fr mt ft e.g i.e etc vs cf viz al".split()
)
# Not the end of a sentence when a number follows ("No. 5", "Jan. 12", "Fig. 3").
_BEFORE_NUMBER = frozenset(
    "no nos nr vol vols fig figs art arts sec ch p pp jan feb mar apr jun jul aug sep sept oct nov dec".split()
)


def split_sentences(text: str) -> list[str]:
    """One document's text -> its sentences (stripped, none empty).

    A sentence ends at ``.``, ``!``, ``?`` or ``…`` (or a run of them), possibly followed by closing
    quotes or brackets, when whitespace and then an uppercase letter or a digit follow (an opening
    quote or bracket may come first). A lone ``.`` does not end a sentence after a known
    abbreviation (Mr. Dr. St. e.g. i.e. etc. vs. ...), after No./Fig./Jan. ... before a number,
    after an initial ("George W. Bush"; not "I") or after a capitalised dotted acronym (U.S., D.C.,
    Ph.D.). Text that starts its sentences in lowercase is not split; the rules are written for
    English and other cased scripts.
    """
    sentences = []
    start = 0
    for match in _CANDIDATE.finditer(text):
        if _ends_sentence(text, match):
            sentences.append(text[start:match.end(2)].strip())
            start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    following = text[match.end():match.end() + 2]
    first = following[1:2] if following[:1] in _OPENERS else following[:1]
    if not (first.isupper() or first.istitle() or first.isdigit()):
        return False  # end of text, or a lowercase continuation ("?" she asked)
    if match.group(1) != "." or match.group(2):
        return True
    word = _word_before(text, match.start())
    lowered = word.lower()
    if lowered in _ABBREVIATIONS or (first.isdigit() and lowered in _BEFORE_NUMBER):
        return False
    if len(word) == 1 and word.isupper() and word != "I":
        return False  # an initial
    return not ("." in word and word[0].isupper())  # U.S., D.C., Ph.D.


def _word_before(text: str, end: int) -> str:
    """The letters, digits and dots just before ``end``: "Mr" in '("Mr.', "U.S" in "U.S."."""
    start = end
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "."):
        start -= 1
    return text[start:end]


# --------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------


def read_documents(file: Path) -> Iterator[str]:
    """One file -> its documents' texts (lines stripped and joined with a space), read lazily.

    Blank or whitespace-only lines separate documents. Raises a ``ValueError`` (a
    :class:`~bertkit.readers.DataError`) naming the file and the line where the bytes are not UTF-8.
    """
    for text, _ in _read_documents(Path(file)):
        yield text


def _read_documents(file: Path) -> Iterator[tuple[str, int]]:
    """(document text, bytes of the file read so far) for each document of ``file``."""
    lines: list[str] = []
    position = 0
    with open(file, "rb") as f:
        # Binary lines split on \n only (str.splitlines would also split on U+2028, \x1c, ...), and
        # decoding line by line lets an error name its line.
        for number, raw in enumerate(f, start=1):
            position += len(raw)
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise DataError(f"invalid UTF-8 byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line; "
                                "corpus files must be UTF-8 text", path=file, line=number) from None
            if number == 1:
                line = line.removeprefix("\ufeff").strip()  # a byte order mark
            if line:
                lines.append(line)
            elif lines:
                yield " ".join(lines), position
                lines = []
    if lines:
        yield " ".join(lines), position


@dataclass
class _Chunk:
    texts: list[str]  # the documents' texts
    position: int  # bytes of the whole corpus read once these documents are


def _chunks(files: Sequence[Path], max_documents: int) -> Iterator[_Chunk]:
    """The corpus's documents in groups of at most ``max_documents`` (or about ``_CHUNK_CHARS``)."""
    texts: list[str] = []
    chars = 0
    done = 0  # bytes of the files already finished
    for file in files:
        for text, position in _read_documents(file):
            texts.append(text)
            chars += len(text)
            if len(texts) >= max_documents or chars >= _CHUNK_CHARS:
                yield _Chunk(texts, done + position)
                texts, chars = [], 0
        done += file.stat().st_size
    if texts:
        yield _Chunk(texts, done)


def _split_chunks(chunks: Iterable[_Chunk], pool: Pool | None,
                  workers: int) -> Iterator[tuple[_Chunk, list[list[str]]]]:
    """Each chunk with its documents' sentences, in order.

    With a pool, the next chunk is split while the caller tokenises this one; one chunk ahead at
    most, so that memory stays bounded (``Pool.imap`` would read the whole corpus ahead).
    """
    if pool is None:
        for chunk in chunks:
            yield chunk, [split_sentences(text) for text in chunk.texts]
        return
    pending = None
    for chunk in chunks:
        job = pool.map_async(split_sentences, chunk.texts, chunksize=math.ceil(len(chunk.texts) / (4 * workers)))
        if pending is not None:
            yield pending[0], pending[1].get()
        pending = chunk, job
    if pending is not None:
        yield pending[0], pending[1].get()


@contextmanager
def _pool(workers: int) -> Iterator[Pool | None]:
    if workers == 1:
        yield None
        return
    # Forked before prepare_corpus tokenises anything: the workers only run split_sentences and
    # never inherit a Rust thread pool that this call started.
    with multiprocessing.get_context().Pool(workers) as pool:
        yield pool


# --------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in it, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def vocab_sha256(tokenizer: Tokenizer) -> str:
    """sha256 of the vocabulary written as vocab.txt is (one token a line, in id order).

    For a tokenizer saved with ``save_pretrained`` this is ``sha256sum vocab.txt``.
    """
    by_id = sorted(tokenizer.vocab.items(), key=lambda item: item[1])
    return hashlib.sha256("".join(token + "\n" for token, _ in by_id).encode("utf-8")).hexdigest()


@dataclass
class _Tokenized:
    tokens: np.ndarray  # (T,) ids of all kept sentences, concatenated
    sentence_lengths: np.ndarray  # (S,) int64, every one > 0
    document_sentences: np.ndarray  # (D,) int64 sentences per kept document, every one > 0


def _tokenize(tokenizer: Tokenizer, documents: list[list[str]], dtype: np.dtype) -> _Tokenized:
    """Ids of the documents' sentences, dropping sentences that tokenise to nothing and then empty documents.

    A sentence after the first of its document is tokenised with the space that came before it in the text
    when the tokenizer sees that space (byte-level BPE: "ĠThe" inside a text, "The" at its start), so that
    the concatenated ids read as the running text did."""
    space = " " if tokenizer.leading_space_matters else ""
    sentences = [space + s if i else s for document in documents for i, s in enumerate(document)]
    tokens, lengths = [], []
    for start in range(0, len(sentences), _ENCODE_BATCH):
        encodings = tokenizer._encode(sentences[start:start + _ENCODE_BATCH], add_special_tokens=False,
                                      truncation=None, max_length=None, pad_to=False).encodings
        ids = [e.ids for e in encodings]
        batch_lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        tokens.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(batch_lengths.sum())))
        lengths.append(batch_lengths)
    sentence_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    kept = sentence_lengths > 0
    document_of = np.repeat(np.arange(len(documents)), [len(d) for d in documents])
    per_document = np.bincount(document_of[kept], minlength=len(documents))
    return _Tokenized(
        tokens=np.concatenate(tokens) if tokens else np.zeros(0, dtype),
        sentence_lengths=sentence_lengths[kept],
        document_sentences=per_document[per_document > 0],
    )


# --------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------


class _NpyAppender:
    """A 1-D .npy file written piece by piece; the header gets the final length on close.

    numpy pads the header so that the length may grow in place (the header keeps its size).
    """

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self._file: BinaryIO = open(path, "wb")
        self._dtype = dtype
        self.length = 0
        self._header_size = self._write_header()

    def _write_header(self) -> int:
        np.lib.format.write_array_header_1_0(self._file, {
            "descr": np.lib.format.dtype_to_descr(self._dtype), "fortran_order": False, "shape": (self.length,)})
        return self._file.tell()

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self._dtype)
        self._file.write(values.data)
        self.length += len(values)

    def close(self) -> None:
        self._file.seek(0)
        if self._write_header() != self._header_size:
            raise RuntimeError(f"the .npy header of {self._file.name} changed size; cannot finish it in place")
        self._file.close()


class _Shard:
    """One shard-NNNNN directory being written."""

    def __init__(self, directory: Path, dtype: np.dtype) -> None:
        directory.mkdir()
        self.name = directory.name
        self.tokens = _NpyAppender(directory / "tokens.npy", dtype)
        self.sentence_offsets = _NpyAppender(directory / "sentence_offsets.npy", np.dtype(np.int64))
        self.document_offsets = _NpyAppender(directory / "document_offsets.npy", np.dtype(np.int64))
        self.sentence_offsets.append(np.zeros(1))
        self.document_offsets.append(np.zeros(1))

    def append(self, tokens: np.ndarray, sentence_lengths: np.ndarray, document_sentences: np.ndarray) -> None:
        """Append whole documents; offsets continue from what the shard already holds."""
        sentences_before = self.sentence_offsets.length - 1
        self.sentence_offsets.append(self.tokens.length + np.cumsum(sentence_lengths))
        self.document_offsets.append(sentences_before + np.cumsum(document_sentences))
        self.tokens.append(tokens)

    def close(self) -> dict[str, Any]:
        counts = {"name": self.name, "documents": self.document_offsets.length - 1,
                  "sentences": self.sentence_offsets.length - 1, "tokens": self.tokens.length}
        for array in (self.tokens, self.sentence_offsets, self.document_offsets):
            array.close()
        return counts


class _ShardWriter:
    """Appends documents to shard-00000, shard-00001, ...; a shard closes once it holds >= shard_tokens tokens."""

    def __init__(self, directory: Path, dtype: np.dtype, shard_tokens: int) -> None:
        self._directory = directory
        self._dtype = dtype
        self._shard_tokens = shard_tokens
        self._current: _Shard | None = None
        self.shards: list[dict[str, Any]] = []  # counts of the closed shards

    def add(self, batch: _Tokenized) -> None:
        sentence_end = np.cumsum(batch.document_sentences)  # (D,) one past each document's last sentence
        token_end = np.cumsum(batch.sentence_lengths)  # (S,)
        document_token_end = token_end[sentence_end - 1]  # (D,)
        first = 0  # the first document not written yet
        while first < len(sentence_end):
            shard = self._current or self._open()
            written = int(document_token_end[first - 1]) if first else 0
            room = self._shard_tokens - shard.tokens.length  # > 0: a full shard is closed at once
            # The shard takes documents up to the one that fills it.
            stop = min(int(np.searchsorted(document_token_end, written + room)) + 1, len(sentence_end))
            sentences = slice(int(sentence_end[first - 1]) if first else 0, int(sentence_end[stop - 1]))
            shard.append(batch.tokens[written:int(document_token_end[stop - 1])], batch.sentence_lengths[sentences],
                         batch.document_sentences[first:stop])
            if shard.tokens.length >= self._shard_tokens:
                self._close()
            first = stop

    def _open(self) -> _Shard:
        self._current = _Shard(self._directory / f"shard-{len(self.shards):05d}", self._dtype)
        return self._current

    def _close(self) -> None:
        assert self._current is not None
        self.shards.append(self._current.close())
        self._current = None

    def finish(self) -> list[dict[str, Any]]:
        if self._current is not None:
            self._close()
        return self.shards


# --------------------------------------------------------------------------
# prepare_corpus
# --------------------------------------------------------------------------


def _check_files(files: Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(files, (str, os.PathLike)):
        raise TypeError("files must be a list of paths, not one path")
    paths = [Path(f) for f in files]
    if not paths:
        raise ValueError("no corpus files given")
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"corpus file not found: {path}")
        if path.is_dir():
            raise IsADirectoryError(f"corpus file is a directory: {path} (list the text files inside it)")
    return paths


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"output directory {out_dir} is not empty; pass overwrite=True to replace it")


def _check_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def prepare_corpus(files: Sequence[str | os.PathLike], tokenizer: Tokenizer, out_dir: str | os.PathLike, *,
                   shard_tokens: int = 50_000_000, workers: int | None = None, chunk_documents: int = 2_000,
                   progress: bool = True, overwrite: bool = False) -> CorpusStats:
    """Split ``files`` into documents and sentences, tokenise them and write sharded token arrays to ``out_dir``.

    Streams: at most two chunks of ``chunk_documents`` documents are in memory at a time.
    ``workers`` processes split sentences (default: every core); the Rust tokenizer uses its own
    threads. ``out_dir`` must be absent or empty unless ``overwrite``; it appears complete or not
    at all. See the module docstring for the layout.
    """
    paths = _check_files(files)
    _check_positive(shard_tokens=shard_tokens, workers=workers, chunk_documents=chunk_documents)
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    workers = workers or os.cpu_count() or 1
    dtype = token_dtype(tokenizer.vocab_size)
    sizes = [path.stat().st_size for path in paths]
    documents = sentences = 0

    with (_pool(workers) as pool,
          atomic_directory(out, keep_old=lambda name: False) as staging,
          tqdm(total=sum(sizes), unit="B", unit_scale=True, unit_divisor=1024, desc="prepare corpus",
               disable=not progress) as bar):
        writer = _ShardWriter(staging, dtype, shard_tokens)
        for chunk, split in _split_chunks(_chunks(paths, chunk_documents), pool, workers):
            batch = _tokenize(tokenizer, split, dtype)
            writer.add(batch)
            documents += len(batch.document_sentences)
            sentences += len(batch.sentence_lengths)
            bar.update(chunk.position - bar.n)
            bar.set_postfix(documents=documents, sentences=sentences, refresh=False)
        shards = writer.finish()
        if not shards:
            raise ValueError("the corpus has no documents (every file is empty, blank or has no tokens): "
                             + ", ".join(map(str, paths)))
        stats = CorpusStats(documents=documents, sentences=sentences,
                            tokens=sum(s["tokens"] for s in shards), shards=len(shards))
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "token_dtype": dtype.name,
            "tokenizer": {"vocab_size": tokenizer.vocab_size, "vocab_sha256": vocab_sha256(tokenizer),
                          "lowercase": tokenizer.lowercase},
            "sources": [{"path": os.path.abspath(p), "bytes": size} for p, size in zip(paths, sizes)],
            "documents": stats.documents,
            "sentences": stats.sentences,
            "tokens": stats.tokens,
            "shards": shards,
            # The number of workers changes nothing in the output, so it is not recorded: the
            # same inputs give the same directory, byte for byte, however many cores prepared it.
            "settings": {"shard_tokens": shard_tokens, "chunk_documents": chunk_documents,
                         "sentence_splitter": SPLITTER},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return stats


# --------------------------------------------------------------------------
# Reading a prepared corpus
# --------------------------------------------------------------------------


class Corpus:
    """A prepared corpus opened read-only (memory-mapped); global document/sentence indices across shards.

    Opening reads the small offset arrays of every shard (8 bytes a sentence) and checks them
    against the manifest; the token ids stay on disk. Pickling stores only the directory, so
    DataLoader workers reopen the maps instead of copying the tokens.
    """

    directory: Path
    manifest: dict
    num_documents: int
    num_sentences: int
    num_tokens: int
    vocab_size: int
    vocab_sha256: str
    lowercase: bool
    sentence_lengths: np.ndarray  # (num_sentences,) int32, global order
    document_offsets: np.ndarray  # (num_documents + 1,) int64, into global sentence indices

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.manifest = _read_manifest(self.directory)
        dtype = np.dtype(self.manifest["token_dtype"])
        self._tokens: list[np.ndarray] = []
        self._sentence_offsets: list[np.ndarray] = []
        lengths, document_offsets = [], [np.zeros(1, np.int64)]
        first_sentence = [0]  # global index of each shard's first sentence, then the total
        for shard in self.manifest["shards"]:
            tokens, sentence_offsets, shard_documents = _open_shard(self.directory, shard, dtype)
            self._tokens.append(tokens)
            self._sentence_offsets.append(sentence_offsets)
            lengths.append(np.diff(sentence_offsets).astype(np.int32))
            document_offsets.append(shard_documents[1:] + first_sentence[-1])
            first_sentence.append(first_sentence[-1] + shard["sentences"])
        self._first_sentence = np.array(first_sentence, dtype=np.int64)
        self.sentence_lengths = np.concatenate(lengths)
        self.document_offsets = np.concatenate(document_offsets)
        self.num_documents = len(self.document_offsets) - 1
        self.num_sentences = len(self.sentence_lengths)
        self.num_tokens = sum(len(t) for t in self._tokens)
        totals = (self.num_documents, self.num_sentences, self.num_tokens)
        expected = (self.manifest["documents"], self.manifest["sentences"], self.manifest["tokens"])
        if totals != expected:
            raise _corrupt(self.directory, f"the shards hold {totals} documents/sentences/tokens, "
                                           f"the manifest says {expected}")
        tokenizer = self.manifest["tokenizer"]
        self.vocab_size = int(tokenizer["vocab_size"])
        self.vocab_sha256 = str(tokenizer["vocab_sha256"])
        self.lowercase = bool(tokenizer["lowercase"])

    def document_sentences(self, doc: int) -> range:
        """Global sentence indices of document ``doc``."""
        if not 0 <= doc < self.num_documents:
            raise IndexError(f"document {doc} out of range (the corpus has {self.num_documents})")
        return range(int(self.document_offsets[doc]), int(self.document_offsets[doc + 1]))

    def tokens(self, start_sentence: int, stop_sentence: int) -> np.ndarray:
        """int64 ids of global sentences [start, stop), concatenated; the range must lie within one shard
        (one document always does)."""
        if not 0 <= start_sentence <= stop_sentence <= self.num_sentences:
            raise IndexError(f"sentences [{start_sentence}, {stop_sentence}) out of range "
                             f"(the corpus has {self.num_sentences})")
        if start_sentence == stop_sentence:
            return np.zeros(0, np.int64)
        shard = int(np.searchsorted(self._first_sentence, start_sentence, side="right")) - 1
        base = int(self._first_sentence[shard])
        if stop_sentence > self._first_sentence[shard + 1]:
            raise ValueError(f"sentences [{start_sentence}, {stop_sentence}) span shards {shard} and {shard + 1}; "
                             "ask for the sentences of one shard at a time (a document never spans shards)")
        offsets = self._sentence_offsets[shard]
        return self._tokens[shard][offsets[start_sentence - base]:offsets[stop_sentence - base]].astype(np.int64)

    def sentence(self, index: int) -> np.ndarray:
        """int64 ids of one sentence."""
        return self.tokens(index, index + 1)

    def check_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Raise ValueError unless ``tokenizer`` has the vocabulary and casing the corpus was prepared with."""
        if vocab_sha256(tokenizer) != self.vocab_sha256 or tokenizer.vocab_size != self.vocab_size:
            raise ValueError(f"the corpus {self.directory} was tokenised with another vocabulary "
                             f"({self.vocab_size} tokens, sha256 {self.vocab_sha256[:12]}...) than this tokenizer's "
                             f"({tokenizer.vocab_size} tokens, sha256 {vocab_sha256(tokenizer)[:12]}...)")
        if tokenizer.lowercase != self.lowercase:
            raise ValueError(f"the corpus {self.directory} was tokenised with lowercase={self.lowercase}, "
                             f"this tokenizer has lowercase={tokenizer.lowercase}")

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"])

    def __repr__(self) -> str:
        return (f"Corpus({str(self.directory)!r}, documents={self.num_documents}, sentences={self.num_sentences}, "
                f"tokens={self.num_tokens}, shards={len(self._tokens)})")


def _corrupt(directory: Path, reason: str) -> ValueError:
    return ValueError(f"{directory} is not a valid prepared corpus: {reason}")


def _read_manifest(directory: Path) -> dict:
    if not directory.is_dir():
        raise FileNotFoundError(f"corpus directory not found: {directory}")
    path = directory / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a prepared corpus: it has no {MANIFEST} "
                                "(make one with prepare_corpus)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt(directory, f"{MANIFEST} is not JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _corrupt(directory, f"{MANIFEST} is not a {FORMAT} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise _corrupt(directory, f"format version {manifest.get('version')!r}; this bertkit reads version "
                                  f"{FORMAT_VERSION} (prepare the corpus again)")
    missing = {"token_dtype", "tokenizer", "documents", "sentences", "tokens", "shards"} - manifest.keys()
    if missing:
        raise _corrupt(directory, f"{MANIFEST} lacks {', '.join(sorted(missing))}")
    if not manifest["shards"]:
        raise _corrupt(directory, "it has no shards")
    for shard in manifest["shards"]:
        if not isinstance(shard, dict) or not {"name", "documents", "sentences", "tokens"} <= shard.keys():
            raise _corrupt(directory, f"shard entry {shard!r} lacks name/documents/sentences/tokens")
    expected = token_dtype(manifest["tokenizer"]["vocab_size"])
    if manifest["token_dtype"] != expected.name:
        raise _corrupt(directory, f"token dtype {manifest['token_dtype']!r}, expected {expected.name!r}")
    return manifest


def _open_shard(directory: Path, shard: dict, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, sentence_offsets, document_offsets) of one shard, memory-mapped and checked."""
    path = directory / shard["name"]
    arrays = []
    for name, kind, length in (("tokens", dtype, shard["tokens"]),
                               ("sentence_offsets", np.dtype(np.int64), shard["sentences"] + 1),
                               ("document_offsets", np.dtype(np.int64), shard["documents"] + 1)):
        file = path / f"{name}.npy"
        if not file.is_file():
            raise FileNotFoundError(f"corpus shard file missing: {file}")
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise _corrupt(directory, f"{file} is not a .npy array ({e})") from None
        if array.dtype != kind or array.shape != (length,):
            raise _corrupt(directory, f"{file} holds {array.dtype} {array.shape}, the manifest says {kind} ({length},)")
        arrays.append(array)
    tokens, sentence_offsets, document_offsets = arrays
    for name, offsets, end in (("sentence", sentence_offsets, len(tokens)),
                               ("document", document_offsets, len(sentence_offsets) - 1)):
        # Offsets rise strictly: no empty sentence or document is ever written.
        if offsets[0] != 0 or offsets[-1] != end or np.any(np.diff(offsets) <= 0):
            raise _corrupt(directory, f"{path.name}/{name}_offsets.npy is not 0, rising, ..., {end}")
    return tokens, sentence_offsets, document_offsets
