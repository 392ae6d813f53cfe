"""BERT WordPiece tokenization, built from the Rust ``tokenizers`` primitives.

The pipeline mirrors ``tokenizers.implementations.BertWordPieceTokenizer``
(normalizer -> pre-tokenizer -> WordPiece -> TemplateProcessing, WordPiece
decoder), but the normalizer and pre-tokenizer are composed from smaller
primitives so that ids match the original Python BERT tokenizer
(``transformers``' ``BertTokenizerLegacy``: BasicTokenizer + WordpieceTokenizer)
exactly.  The stock ``BertNormalizer``/``BertPreTokenizer`` differ from it in
several ways (measured with tokenizers 0.23 against Python 3.11, Unicode 14):

* The reference NFC-normalises the whole text, cased models included, so a
  decomposed ``e`` + U+0301 becomes ``é``.  The stock normalizer never does.
* ``str.lower`` is context sensitive: a capital sigma at the end of a word
  becomes final sigma ``ς`` ("ΟΔΟΣ" -> "οδος"); per-character lowercasing gives
  ``σ``.
* The stock character classes come from old Unicode tables inside the Rust
  crates: they keep unassigned code points (the reference drops every category
  C* character), miss ~100 newer punctuation characters and ~400 newer
  nonspacing marks, and treat U+2B820..U+2B91F as non-Chinese (a range typo).

So the character classes here (control / whitespace / punctuation / Mn /
cased / case-ignorable) are generated from the running Python's
``unicodedata`` -- the very tables the reference consults -- and handed to
``Replace``/``Split`` steps as regular expressions.  Everything stays
serialisable: ``tokenizer.json`` written by :meth:`Tokenizer.save_pretrained`
loads in plain ``tokenizers`` and reproduces the same ids.

Known residual difference (cannot be expressed with serialisable primitives):
the Rust NFC/NFD code lacks the canonical combining class of 98 combining
marks added in Unicode 11-14 (07FD, 0898-089F, 08CA-08D3, 09FE, 0C3C,
0D3B-0D3C, 0EBA, 1715, 1ABF-1ACE, 1DF6-1DFA, A82C, 10D24-10D27, 10EAB-10EAC,
10F46-10F50, 10F82-10F85, 11070, 1133B, 1145E, 11839-1183A, 1193D-1193E,
11943, 119E0, 11A34, 11A47, 11A99, 11D42, 11D44-11D45, 11D97, 16FF0-16FF1,
1E130-1E136, 1E2AE, 1E2EC-1E2EF) and treats them as starters.  When, after
canonical decomposition, such a mark sits next to another combining mark
(combining class != 0), the reference reorders/composes the marks and this
tokenizer does not, so ids can differ.  With accent stripping (the uncased
default) the Mn marks are deleted anyway, so only sequences with two spacing
marks of nonzero class, one of them U+1715, U+1193D, U+16FF0 or U+16FF1, can
still differ; an exhaustive check of every code point in several mark
contexts found differences in cased mode only.  Text without such mark
sequences is unaffected.  :func:`combining_marks_unknown_to_backend` returns
the set for the installed ``tokenizers``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from tokenizers import AddedToken, Encoding, Regex, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as _Backend
from tokenizers.models import WordPiece

if TYPE_CHECKING:
    import torch

PathLike = Union[str, "os.PathLike[str]"]

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)
CONTINUATION_PREFIX = "##"
DEFAULT_MODEL_MAX_LENGTH = 512

# HF writes int(1e30) as model_max_length when a checkpoint does not set one.
_UNSET_MAX_LENGTH_THRESHOLD = 1_000_000

# BasicTokenizer._is_punctuation counts all non-alphanumeric ASCII as punctuation.
_ASCII_PUNCTUATION = frozenset(
    chr(c) for first, last in ((33, 47), (58, 64), (91, 96), (123, 126)) for c in range(first, last + 1)
)

# BasicTokenizer._is_chinese_char.
_CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

_CAPITAL_SIGMA, _FINAL_SIGMA = "\u03a3", "\u03c2"


# --------------------------------------------------------------------------
# Unicode tables, generated from the running Python's unicodedata
# --------------------------------------------------------------------------


def _char_class(codepoints: Iterable[int]) -> str:
    """Regex character class (Oniguruma syntax) matching exactly ``codepoints``."""
    parts: list[str] = []
    start = prev = None
    for cp in sorted(codepoints):
        if prev is not None and cp == prev + 1:
            prev = cp
            continue
        if start is not None:
            parts.append(_class_range(start, prev))
        start = prev = cp
    if start is not None:
        parts.append(_class_range(start, prev))
    return "[" + "".join(parts) + "]"


def _class_range(first: int, last: int) -> str:
    return f"\\x{{{first:X}}}" if first == last else f"\\x{{{first:X}}}-\\x{{{last:X}}}"


@dataclasses.dataclass(frozen=True)
class _UnicodeTables:
    removed: str  # regex class: dropped by BasicTokenizer._clean_text
    whitespace: str  # regex class: turned into " " by _clean_text
    punctuation: str  # regex class: BasicTokenizer._is_punctuation
    cjk: str  # regex class: BasicTokenizer._is_chinese_char
    nonspacing_marks: str  # regex class: category Mn (_run_strip_accents)
    final_sigma: str  # regex: capital sigma in str.lower's Final_Sigma context
    nfc_fixes: tuple[tuple[str, str], ...]  # compositions the Rust tables lack
    nfd_fixes: tuple[tuple[str, str], ...]  # decompositions the Rust tables lack


@functools.lru_cache(maxsize=None)
def _unicode_tables() -> _UnicodeTables:
    """The character classes: built once per machine, then read from the cache (building them scans all
    1.1M code points, about 2 s of every process start on a slow CPU). The cache file's name carries
    everything they depend on: Python's Unicode version and the tokenizers version."""
    cache = _unicode_cache_file()
    try:
        fields = json.loads(cache.read_text(encoding="utf-8"))
        return _UnicodeTables(**{k: tuple(map(tuple, v)) if k.endswith("_fixes") else v for k, v in fields.items()})
    except (OSError, ValueError, TypeError):  # absent, unreadable or from another bertkit: build it
        pass
    tables = _build_unicode_tables()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        staging.write_text(json.dumps(dataclasses.asdict(tables)), encoding="utf-8")
        os.replace(staging, cache)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:  # a read-only home: build again next time
        pass
    return tables


def _unicode_cache_file() -> Path:
    import tokenizers

    root = os.environ.get("BERTKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bertkit"
    return Path(root) / f"unicode-tables-{unicodedata.unidata_version}-tokenizers-{tokenizers.__version__}.json"


def _build_unicode_tables() -> _UnicodeTables:
    removed: list[int] = []
    whitespace: list[int] = []
    punctuation: list[int] = []
    nonspacing: list[int] = []
    cased: list[int] = []  # cased and not case-ignorable
    case_ignorable: list[int] = []
    decomposable: list[str] = []
    category = unicodedata.category
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates cannot occur in a Rust string
            continue
        ch = chr(cp)
        cat = category(ch)
        # _clean_text: _is_whitespace is checked after the removal test, but the
        # two sets only overlap in \t\n\r, which are whitespace.
        if ch in "\t\n\r" or cat == "Zs":
            whitespace.append(cp)
            continue
        if cp == 0 or cp == 0xFFFD or cat[0] == "C":
            removed.append(cp)
            continue
        if cat[0] == "P" or ch in _ASCII_PUNCTUATION:
            punctuation.append(cp)
        elif cat == "Mn":
            nonspacing.append(cp)
        # Python does not expose the Cased / Case_Ignorable properties that
        # str.lower uses for final sigma, so probe str.lower itself:
        # X + "Σ" ends in "ς" iff X is cased and not case-ignorable;
        # "A" + X + "Σ" ends in "ς" iff X is cased or case-ignorable.
        if (ch + _CAPITAL_SIGMA).lower()[-1] == _FINAL_SIGMA:
            cased.append(cp)
        elif ("A" + ch + _CAPITAL_SIGMA).lower()[-1] == _FINAL_SIGMA:
            case_ignorable.append(cp)
        decomposition = unicodedata.decomposition(ch)
        if decomposition and not decomposition.startswith("<"):
            decomposable.append(ch)

    cased_class, ignorable_class = _char_class(cased), _char_class(case_ignorable)
    # CPython's handle_capital_sigma: skipping case-ignorable characters, the
    # previous character is cased and the next one is not.
    final_sigma = f"(?<={cased_class}{ignorable_class}*)\\x{{3A3}}(?!{ignorable_class}*{cased_class})"

    nfc_fixes, nfd_fixes = _normalization_fixes(decomposable)
    return _UnicodeTables(
        removed=_char_class(removed),
        whitespace=_char_class(whitespace),
        punctuation=_char_class(punctuation),
        cjk=_char_class(cp for lo, hi in _CJK_RANGES for cp in range(lo, hi + 1)),
        nonspacing_marks=_char_class(nonspacing),
        final_sigma=final_sigma,
        nfc_fixes=nfc_fixes,
        nfd_fixes=nfd_fixes,
    )


def _normalization_fixes(decomposable: list[str]) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """Literal replacements for canonical (de)compositions the Rust tables lack.

    With tokenizers 0.23 and Unicode 14 this is just U+11938 (DIVES AKURU VOWEL
    SIGN O = U+11935 U+11930).  Both halves are starters, so a literal
    replacement is exact.
    """
    rust_nfc, rust_nfd = normalizers.NFC(), normalizers.NFD()
    nfc: dict[str, str] = {}
    nfd: dict[str, str] = {}
    for ch in decomposable:
        decomposed = unicodedata.normalize("NFD", ch)
        composed = unicodedata.normalize("NFC", decomposed)
        if rust_nfd.normalize_str(ch) != decomposed:
            nfd[ch] = decomposed
        if rust_nfc.normalize_str(ch) != unicodedata.normalize("NFC", ch):
            nfc[ch] = unicodedata.normalize("NFC", ch)
        seen = rust_nfc.normalize_str(decomposed)
        if seen != composed:
            nfc[seen] = composed
    return tuple(nfc.items()), tuple(nfd.items())


def combining_marks_unknown_to_backend() -> frozenset[str]:
    """Combining marks whose canonical combining class the Rust NFC/NFD lacks.

    These are the marks behind the one documented residual difference from the
    reference (see the module docstring).
    """
    rust_nfd = normalizers.NFD()
    unknown = set()
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        ccc = unicodedata.combining(ch)
        if not ccc:
            continue
        # A mark the backend knows is reordered before U+0345 (ccc 240) or after
        # U+0334 (ccc 1); an unknown one is treated as a starter and stays put.
        probe = "\u0345" + ch if ccc < 240 else ch + "\u0334"
        if rust_nfd.normalize_str(probe) == probe:
            unknown.add(ch)
    return frozenset(unknown)


def _reference_normalizer(lowercase: bool, strip_accents: bool | None) -> normalizers.Normalizer:
    """BasicTokenizer's text clean-up, NFC, lowercasing and accent stripping."""
    tables = _unicode_tables()
    steps: list[normalizers.Normalizer] = [
        # _clean_text: drop NUL, U+FFFD and all of category C* except \t\n\r ...
        normalizers.Replace(Regex(tables.removed), ""),
        # ... and map \t\n\r and category Zs to a plain space.
        normalizers.Replace(Regex(tables.whitespace), " "),
        # tokenize() NFC-normalises the whole text, whatever the casing.
        normalizers.NFC(),
        *(normalizers.Replace(src, dst) for src, dst in tables.nfc_fixes),
    ]
    if lowercase:
        # str.lower maps a word-final capital sigma to "ς"; the per-character
        # Lowercase step would give "σ", so rewrite those sigmas first.
        steps.append(normalizers.Replace(Regex(tables.final_sigma), _FINAL_SIGMA))
        steps.append(normalizers.Lowercase())
    if strip_accents if strip_accents is not None else lowercase:
        # _run_strip_accents: NFD, then drop category Mn only (StripAccents()
        # would also drop Mc/Me, e.g. Devanagari vowel signs).  No recomposition.
        steps.append(normalizers.NFD())
        steps.extend(normalizers.Replace(src, dst) for src, dst in tables.nfd_fixes)
        steps.append(normalizers.Replace(Regex(tables.nonspacing_marks), ""))
    return normalizers.Sequence(steps)


def _reference_pre_tokenizer(tokenize_chinese_chars: bool) -> pre_tokenizers.PreTokenizer:
    """Whitespace split, then every punctuation (and CJK) character on its own."""
    tables = _unicode_tables()
    isolated = tables.punctuation
    if tokenize_chinese_chars:
        # The reference pads CJK characters with spaces before NFC; isolating
        # them here is equivalent (they never compose, and they are neither
        # cased nor case-ignorable, so they bound the final-sigma context too).
        isolated = tables.punctuation[:-1] + tables.cjk[1:]
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(isolated), behavior="isolated"),
        ]
    )


def _install_pipeline(
    backend: _Backend,
    *,
    lowercase: bool,
    strip_accents: bool | None,
    tokenize_chinese_chars: bool,
    vocab: dict[str, int],
) -> None:
    backend.normalizer = _reference_normalizer(lowercase, strip_accents)
    backend.pre_tokenizer = _reference_pre_tokenizer(tokenize_chinese_chars)
    _install_specials(backend, vocab)


def _install_specials(backend: _Backend, vocab: dict[str, int]) -> None:
    # Specials are matched in the raw text before normalisation, like the
    # reference's added-token trie ("a[MASK]b" -> a [MASK] b).
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    backend.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX, cleanup=True)


def _load_vocab(vocab_file: Path) -> dict[str, int]:
    """Read vocab.txt exactly like the reference's load_vocab (a later duplicate wins)."""
    with open(vocab_file, encoding="utf-8") as reader:
        return {line.rstrip("\n"): index for index, line in enumerate(reader.readlines())}


def _check_specials(vocab: dict[str, int], source: object) -> None:
    for token in (UNK, CLS, SEP, PAD, MASK):
        if token not in vocab:
            raise ValueError(f"vocabulary {source} has no {token} token; BERT needs {', '.join(SPECIAL_TOKENS)}")


def _check_text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def _as_batch(values: str | Sequence[str], name: str) -> list[str]:
    if isinstance(values, str):
        return [values]
    if not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a str or a sequence of str, got {type(values).__name__}")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(value).__name__}")
    return list(values)


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# transformers' clean_up_tokenization (clean_up_tokenization_spaces=True).
_CLEAN_UP = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def _sequence_ids(encoding: Encoding) -> list[int | None]:
    # Derived from the BERT template rather than Encoding.sequence_ids, which
    # loses the first sequence after post_process() (Tokenizer._encode's pair path).
    return [None if special else type_id for special, type_id in zip(encoding.special_tokens_mask, encoding.type_ids)]


def _longest_first_lengths(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """Lengths after the reference's "longest_first" pair truncation.

    Tokens come off the longer sequence until both are equal, then off both;
    an odd leftover stays with the first sequence.
    """
    remove = n1 + n2 - budget
    if remove <= 0:
        return n1, n2
    unequal = min(abs(n1 - n2), remove)  # only from the longer one
    even = remove - unequal  # split between both, the extra one from the pair
    if n1 > n2:
        return n1 - unequal - even // 2, n2 - (even - even // 2)
    return n1 - even // 2, n2 - unequal - (even - even // 2)


@dataclasses.dataclass
class BatchEncoding:
    """Model inputs for a batch, plus optional alignment information.

    ``input_ids``, ``attention_mask`` and ``token_type_ids`` are ``(B, T)``
    LongTensors (or lists of lists with ``return_tensors=None``).  ``offsets``
    are ``(start, end)`` character offsets into the original text -- into the
    pair text for tokens of the second sequence -- and ``(0, 0)`` for special
    and padding tokens.  ``word_ids`` / ``sequence_ids`` are ``None`` there.
    ``num_truncated`` counts the inputs that lost tokens to truncation.

    ``enc["input_ids"]`` works, and ``model(**enc)`` passes the three model
    inputs.
    """

    input_ids: torch.Tensor | list[list[int]]
    attention_mask: torch.Tensor | list[list[int]]
    token_type_ids: torch.Tensor | list[list[int]]
    offsets: list[list[tuple[int, int]]] | None = None
    word_ids: list[list[int | None]] | None = None
    sequence_ids: list[list[int | None]] | None = None
    num_truncated: int = 0

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        """The model inputs, so that ``model(**enc)`` works."""
        return _MODEL_INPUTS

    def to(self, device: torch.device | str) -> BatchEncoding:
        """Copy with the tensors moved to ``device``."""
        if not hasattr(self.input_ids, "to"):
            raise TypeError("this BatchEncoding holds lists (return_tensors=None); there is nothing to move")
        return dataclasses.replace(self, **{k: getattr(self, k).to(device) for k in _MODEL_INPUTS})


Padding = Union[bool, Literal["longest", "max_length"]]
Truncation = Union[bool, Literal["longest_first", "only_first", "only_second"]]

_TRUNCATION_STRATEGIES: dict[Any, str | None] = {
    True: "longest_first",
    False: None,
    "longest_first": "longest_first",
    "only_first": "only_first",
    "only_second": "only_second",
}


def _batch_encoding(encodings: list[Encoding], offsets: bool, word_ids: bool, num_truncated: int) -> BatchEncoding:
    """The encodings as lists, with the alignment that was asked for."""
    return BatchEncoding(
        input_ids=[e.ids for e in encodings],
        attention_mask=[e.attention_mask for e in encodings],
        token_type_ids=[e.type_ids for e in encodings],
        offsets=[e.offsets for e in encodings] if offsets else None,
        word_ids=[e.word_ids for e in encodings] if word_ids else None,
        sequence_ids=[_sequence_ids(e) for e in encodings] if offsets or word_ids else None,
        num_truncated=num_truncated,
    )


class Tokenizer:
    """BERT WordPiece tokenizer with the ids of the original BERT tokenizer.

    Build one with :meth:`from_pretrained`, :meth:`from_vocab` or :meth:`train`.
    """

    def __init__(
        self,
        backend: _Backend,
        *,
        lowercase: bool,
        strip_accents: bool | None,
        tokenize_chinese_chars: bool,
        model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
        source: object = "<in memory>",
    ) -> None:
        vocab = backend.get_vocab(with_added_tokens=True)
        _check_specials(vocab, source)
        # Truncation and padding are configured per call (under the lock).
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self._vocab = vocab
        self._lowercase = lowercase
        self._strip_accents = strip_accents
        self._tokenize_chinese_chars = tokenize_chinese_chars
        self._model_max_length = int(model_max_length)
        # BERT's five plus any extra special tokens the vocabulary was trained with ([URL], <e1>, ...).
        added = backend.get_added_tokens_decoder()
        self._extra_specials = tuple(t.content for i, t in sorted(added.items())
                                     if t.special and t.content not in SPECIAL_TOKENS)
        self._special_ids = frozenset(vocab[t] for t in (*SPECIAL_TOKENS, *self._extra_specials))
        # The backend's truncation/padding settings are shared state.
        self._lock = threading.Lock()

    # ---- construction -------------------------------------------------------

    @classmethod
    def from_vocab(
        cls,
        vocab_file: PathLike,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
        model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
    ) -> Tokenizer:
        """Tokenizer for a BERT ``vocab.txt`` (one token per line, id = line number)."""
        path = Path(vocab_file)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        vocab = _load_vocab(path)
        _check_specials(vocab, path)
        backend = _Backend(
            WordPiece(
                vocab,
                unk_token=UNK,
                max_input_chars_per_word=max_input_chars_per_word,
                continuing_subword_prefix=CONTINUATION_PREFIX,
            )
        )
        _install_pipeline(
            backend,
            lowercase=lowercase,
            strip_accents=strip_accents,
            tokenize_chinese_chars=tokenize_chinese_chars,
            vocab=vocab,
        )
        return cls(
            backend,
            lowercase=lowercase,
            strip_accents=strip_accents,
            tokenize_chinese_chars=tokenize_chinese_chars,
            model_max_length=model_max_length,
            source=path,
        )

    @classmethod
    def from_pretrained(cls, directory: PathLike) -> Tokenizer:
        """Load from a Hugging Face style directory; never touches the network.

        Uses ``tokenizer.json`` when present, else ``vocab.txt``;
        ``tokenizer_config.json`` (optional) supplies ``do_lower_case``,
        ``strip_accents``, ``tokenize_chinese_chars`` and ``model_max_length``.
        A stock BERT ``tokenizer.json`` (BertNormalizer + BertPreTokenizer, as
        written by ``transformers``) keeps its vocabulary but gets the exact
        reference pipeline, so both files give the same ids.
        """
        path = Path(directory)
        if not path.is_dir():
            raise FileNotFoundError(f"tokenizer directory not found: {path}")
        config: dict[str, Any] = {}
        config_file = path / "tokenizer_config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
        max_length = config.get("model_max_length")
        if not isinstance(max_length, int) or max_length > _UNSET_MAX_LENGTH_THRESHOLD:
            max_length = DEFAULT_MODEL_MAX_LENGTH

        if (path / "tokenizer.json").is_file():
            return cls._from_tokenizer_json(path / "tokenizer.json", config, max_length)
        if (path / "vocab.txt").is_file():
            return cls.from_vocab(
                path / "vocab.txt",
                lowercase=config.get("do_lower_case", True),
                strip_accents=config.get("strip_accents"),
                tokenize_chinese_chars=config.get("tokenize_chinese_chars", True),
                model_max_length=max_length,
            )
        raise FileNotFoundError(f"neither tokenizer.json nor vocab.txt found in {path}")

    @classmethod
    def _from_tokenizer_json(cls, file: Path, config: dict[str, Any], max_length: int) -> Tokenizer:
        backend = _Backend.from_file(str(file))
        spec = json.loads(file.read_text(encoding="utf-8"))
        if (spec.get("model") or {}).get("type") != "WordPiece":
            raise ValueError(f"{file} does not hold a WordPiece model")
        normalizer = spec.get("normalizer") or {}
        pre_tokenizer = spec.get("pre_tokenizer") or {}
        steps = {step.get("type") for step in normalizer.get("normalizers", [normalizer])}
        stock = normalizer.get("type") == "BertNormalizer" and pre_tokenizer.get("type") == "BertPreTokenizer"
        # tokenizer_config.json wins over the file, as in transformers.
        lowercase = config.get("do_lower_case", normalizer.get("lowercase") if stock else "Lowercase" in steps)
        strip_accents = config.get("strip_accents", normalizer.get("strip_accents") if stock else None)
        chinese = config.get("tokenize_chinese_chars", normalizer.get("handle_chinese_chars", True))
        vocab = backend.get_vocab(with_added_tokens=True)
        _check_specials(vocab, file)
        if stock:
            # The stock pipeline only approximates the original tokenizer (see
            # the module docstring); swap in the exact one, keep the model.
            _install_pipeline(
                backend, lowercase=lowercase, strip_accents=strip_accents, tokenize_chinese_chars=chinese, vocab=vocab
            )
        else:
            _install_specials(backend, vocab)
        return cls(
            backend,
            lowercase=lowercase,
            strip_accents=strip_accents,
            tokenize_chinese_chars=chinese,
            model_max_length=max_length,
            source=file,
        )

    @classmethod
    def train(
        cls,
        files: Sequence[PathLike],
        *,
        vocab_size: int = 30522,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        min_frequency: int = 2,
        limit_alphabet: int = 1000,
        special_tokens: Sequence[str] = SPECIAL_TOKENS,
        show_progress: bool = True,
    ) -> Tokenizer:
        """Train a WordPiece vocabulary on plain UTF-8 text files.

        The special tokens get ids ``0..len(special_tokens)-1`` in order. Those beyond BERT's five
        (e.g. ``[URL]``) are, like them, matched whole in the raw text and never split or masked.
        """
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        special_tokens = list(dict.fromkeys([*SPECIAL_TOKENS, *special_tokens]))  # BERT's five always, first
        for token in special_tokens:
            if not token.strip() or token != token.strip():
                raise ValueError(f"special token {token!r} is empty or has surrounding spaces")
        paths = [Path(f) for f in files]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"training file not found: {p}")
        backend = _Backend(WordPiece(unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX))
        # Train on exactly the text the finished tokenizer will see.
        backend.normalizer = _reference_normalizer(lowercase, strip_accents)
        backend.pre_tokenizer = _reference_pre_tokenizer(True)
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            limit_alphabet=limit_alphabet,
            special_tokens=special_tokens,
            continuing_subword_prefix=CONTINUATION_PREFIX,
            show_progress=show_progress,
        )
        backend.train([str(p) for p in paths], trainer)
        vocab = backend.get_vocab(with_added_tokens=True)
        _check_specials(vocab, "trained from " + ", ".join(map(str, paths)))
        # A fresh model from the final vocabulary, set up exactly like from_vocab's.
        trained = _Backend(WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX))
        _install_pipeline(
            trained, lowercase=lowercase, strip_accents=strip_accents, tokenize_chinese_chars=True, vocab=vocab
        )
        trained.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens[len(SPECIAL_TOKENS):]])
        return cls(trained, lowercase=lowercase, strip_accents=strip_accents, tokenize_chinese_chars=True)

    # ---- encoding -----------------------------------------------------------

    def _encode(
        self,
        inputs: list[str] | list[tuple[str, str]],
        *,
        add_special_tokens: bool,
        truncation: str | None,
        max_length: int | None,
        pad_to: int | None | Literal[False],
        is_pretokenized: bool = False,
    ) -> tuple[list[Encoding], int]:
        """Encode a batch with the Rust batch encoder; returns (encodings, how many were cut).
        With `is_pretokenized` each input is a list of words."""
        is_pair = bool(inputs) and isinstance(inputs[0], tuple)
        specials = self._backend.num_special_tokens_to_add(is_pair) if add_special_tokens else 0
        if truncation is not None:
            if max_length is None or max_length <= specials:
                raise ValueError(f"max_length={max_length!r} leaves no room next to the {specials} special tokens")
        with self._lock:
            self._backend.no_truncation()
            self._backend.no_padding()
            if is_pair and truncation == "longest_first":
                # tokenizers gives an odd leftover token to the longer input,
                # the reference always to the first one: cut in Python.
                firsts = self._backend.encode_batch([a for a, _ in inputs], add_special_tokens=False)
                seconds = self._backend.encode_batch([b for _, b in inputs], add_special_tokens=False)
                encodings, num_truncated = [], 0
                for first, second in zip(firsts, seconds):
                    n1, n2 = _longest_first_lengths(len(first), len(second), max_length - specials)
                    num_truncated += (n1, n2) != (len(first), len(second))
                    first.truncate(n1)
                    second.truncate(n2)
                    encodings.append(self._backend.post_process(first, second, add_special_tokens=add_special_tokens))
                if pad_to is not False:
                    length = pad_to if pad_to is not None else max(len(e) for e in encodings)
                    for e in encodings:
                        e.pad(length, direction="right", pad_id=self.pad_token_id, pad_type_id=0, pad_token=PAD)
                return encodings, num_truncated
            if truncation is not None:
                self._backend.enable_truncation(max_length, strategy=truncation)
            if pad_to is not False:
                self._backend.enable_padding(
                    direction="right", pad_id=self.pad_token_id, pad_type_id=0, pad_token=PAD, length=pad_to
                )
            try:
                encodings = self._backend.encode_batch(inputs, add_special_tokens=add_special_tokens,
                                                       is_pretokenized=is_pretokenized)
            except Exception as exc:  # tokenizers raises a bare Exception
                raise ValueError(f"cannot truncate with {truncation!r} to max_length={max_length}: {exc}") from exc
            return encodings, sum(1 for e in encodings if e.overflowing)

    def encode(
        self,
        text: str,
        pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        max_length: int | None = None,
    ) -> list[int]:
        """Ids of ``[CLS] text [SEP]`` (or ``[CLS] text [SEP] pair [SEP]``).

        With ``max_length`` the longer sequence is cut first ("longest_first").
        """
        _check_text(text, "text")
        inputs: list[Any] = [text] if pair is None else [(text, _check_text(pair, "pair"))]
        truncation = None if max_length is None else "longest_first"
        (encoding,), _ = self._encode(
            inputs, add_special_tokens=add_special_tokens, truncation=truncation, max_length=max_length, pad_to=False
        )
        return encoding.ids

    def tokenize(self, text: str) -> list[str]:
        """The wordpieces of ``text``, without special tokens added."""
        _check_text(text, "text")
        (encoding,), _ = self._encode([text], add_special_tokens=False, truncation=None, max_length=None, pad_to=False)
        return encoding.tokens

    def __call__(
        self,
        texts: str | Sequence[str],
        pairs: str | Sequence[str] | None = None,
        *,
        max_length: int | None = None,
        padding: Padding = "longest",
        truncation: Truncation = True,
        return_tensors: Literal["pt"] | None = "pt",
        return_offsets: bool = False,
        return_word_ids: bool = False,
    ) -> BatchEncoding:
        """Encode a batch (a single str is a batch of one) for the model.

        ``max_length`` defaults to :attr:`model_max_length`; it bounds
        truncation and is the target length of ``padding="max_length"``.
        """
        batch = _as_batch(texts, "texts")
        if not batch:
            raise ValueError("texts is empty")
        inputs: list[Any] = batch
        if pairs is not None:
            if isinstance(texts, str) != isinstance(pairs, str):
                raise TypeError("texts and pairs must both be a str or both be sequences")
            second = _as_batch(pairs, "pairs")
            if len(second) != len(batch):
                raise ValueError(f"got {len(batch)} texts but {len(second)} pairs")
            inputs = list(zip(batch, second))
        if max_length is None:
            max_length = self._model_max_length
        if truncation not in _TRUNCATION_STRATEGIES:
            raise ValueError(
                f"truncation must be a bool, 'longest_first', 'only_first' or 'only_second', got {truncation!r}"
            )
        strategy = _TRUNCATION_STRATEGIES[truncation]
        if padding is True or padding == "longest":
            pad_to: int | None | Literal[False] = None
        elif padding == "max_length":
            pad_to = max_length
        elif padding is False:
            pad_to = False
        else:
            raise ValueError(f"padding must be 'longest', 'max_length' or a bool, got {padding!r}")
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")

        encodings, num_truncated = self._encode(
            inputs, add_special_tokens=True, truncation=strategy, max_length=max_length, pad_to=pad_to
        )
        encoded = _batch_encoding(encodings, return_offsets, return_word_ids, num_truncated)
        if return_tensors == "pt":
            lengths = {len(row) for row in encoded.input_ids}
            if len(lengths) > 1:
                raise ValueError(
                    f"sequences have different lengths ({min(lengths)}..{max(lengths)}); "
                    "pad them (padding='longest') or return lists (return_tensors=None)"
                )
            import torch

            encoded = dataclasses.replace(encoded, **{k: torch.tensor(encoded[k], dtype=torch.long)
                                                      for k in _MODEL_INPUTS})
        return encoded

    def encode_words(self, batch: Sequence[Sequence[str]]) -> BatchEncoding:
        """Encode sentences already split into words (CoNLL tokens) as ``[CLS] pieces [SEP]`` lists.

        Each word goes through the same normalizer and pre-tokenizer as running text (so "U.S."
        still gives u . s .); ``word_ids`` name the word each piece came from and ``offsets`` are
        character spans inside that word. A word that normalises to nothing (only control or
        zero-width characters) gets no piece. No truncation and no padding: the caller decides
        what to do with long sentences. The ids are those of transformers' BERT tokenizer with
        ``is_split_into_words=True``.
        """
        if isinstance(batch, str) or not isinstance(batch, Sequence):
            raise TypeError(f"batch must be a sequence of word lists, got {type(batch).__name__}")
        sentences = []
        for i, words in enumerate(batch):
            if isinstance(words, str):  # a sentence given as one string: ambiguous, refuse it
                raise TypeError(f"batch[{i}] must be a sequence of words, got a str")
            sentences.append(_as_batch(words, f"batch[{i}]"))
        encodings, _ = self._encode(sentences, add_special_tokens=True, truncation=None, max_length=None,
                                    pad_to=False, is_pretokenized=True)
        return _batch_encoding(encodings, offsets=True, word_ids=True, num_truncated=0)

    # ---- decoding and vocabulary -------------------------------------------

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text for ``ids`` as BERT's tokenizer writes it: "##" pieces glued on, clean-up spacing."""
        if hasattr(ids, "tolist"):  # tensors and arrays
            ids = ids.tolist()
        special = self._special_ids if skip_special_tokens else frozenset()
        tokens = [self._id_to_token(int(i)) for i in ids if int(i) not in special]
        # The reference's convert_tokens_to_string + clean_up_tokenization.  The
        # Rust WordPiece decoder cleans up token by token, so it misses
        # patterns that span tokens ("can ' t" -> "can't").
        text = " ".join(tokens).replace(" " + CONTINUATION_PREFIX, "").strip()
        for before, after in _CLEAN_UP:
            text = text.replace(before, after)
        return text

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Vocabulary ids; unknown tokens map to ``[UNK]``'s id."""
        if isinstance(tokens, str):
            return self._vocab.get(tokens, self.unk_token_id)
        return [self._vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        """Vocabulary tokens; an id outside the vocabulary is an error."""
        if hasattr(ids, "tolist"):  # tensors, arrays and their scalars
            ids = ids.tolist()
        if isinstance(ids, int):
            return self._id_to_token(ids)
        return [self._id_to_token(int(i)) for i in ids]

    def _id_to_token(self, index: int) -> str:
        token = self._backend.id_to_token(index) if index >= 0 else None
        if token is None:
            raise ValueError(f"id {index} is not in the vocabulary (size {self.vocab_size})")
        return token

    @property
    def vocab(self) -> dict[str, int]:
        """Token -> id (a copy)."""
        return dict(self._vocab)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def pad_token_id(self) -> int:
        return self._vocab[PAD]

    @property
    def unk_token_id(self) -> int:
        return self._vocab[UNK]

    @property
    def cls_token_id(self) -> int:
        return self._vocab[CLS]

    @property
    def sep_token_id(self) -> int:
        return self._vocab[SEP]

    @property
    def mask_token_id(self) -> int:
        return self._vocab[MASK]

    @property
    def all_special_ids(self) -> frozenset[int]:
        """Ids of [PAD], [UNK], [CLS], [SEP], [MASK] and any extra special tokens."""
        return self._special_ids

    @property
    def model_max_length(self) -> int:
        return self._model_max_length

    @property
    def lowercase(self) -> bool:
        return self._lowercase

    # ---- saving -------------------------------------------------------------

    def save_pretrained(self, directory: PathLike) -> None:
        """Write vocab.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json.

        ``directory`` must exist (callers create it, e.g. atomically).  The
        result loads with :meth:`from_pretrained`, with plain ``tokenizers``
        and with ``transformers``' ``AutoTokenizer``, all with the same ids.
        The tokenizer class is ``PreTrainedTokenizerFast`` on purpose:
        transformers 5's ``BertTokenizer`` would ignore our tokenizer.json and
        rebuild the stock BertNormalizer pipeline, which differs from BERT's
        reference on final sigma, NFC in cased mode and newer Unicode.
        """
        path = Path(directory)
        if not path.is_dir():
            raise FileNotFoundError(f"directory not found: {path}")
        by_id = sorted(self._vocab.items(), key=lambda item: item[1])
        if [i for _, i in by_id] != list(range(len(by_id))):
            raise ValueError("vocabulary ids are not 0..N-1 without gaps; vocab.txt cannot represent them")
        with open(path / "vocab.txt", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(token + "\n" for token, _ in by_id)
        with self._lock:
            # Per-call settings must not leak into the file.
            self._backend.no_truncation()
            self._backend.no_padding()
            self._backend.save(str(path / "tokenizer.json"))
        specials: dict[str, Any] = {"unk_token": UNK, "sep_token": SEP, "pad_token": PAD, "cls_token": CLS,
                                    "mask_token": MASK}
        if self._extra_specials:
            specials["additional_special_tokens"] = list(self._extra_specials)
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",  # loads tokenizer.json as written (see docstring)
            "do_lower_case": self._lowercase,
            "strip_accents": self._strip_accents,
            "tokenize_chinese_chars": self._tokenize_chinese_chars,
            "do_basic_tokenize": True,
            "never_split": None,
            "model_max_length": self._model_max_length,
            "clean_up_tokenization_spaces": True,
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],  # BERT takes segment ids
            **specials,
        }
        for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", specials)):
            (path / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    # Picklable (DataLoader workers under "spawn"): the lock is recreated.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, lowercase={self._lowercase}, "
            f"strip_accents={self._strip_accents}, model_max_length={self._model_max_length})"
        )
