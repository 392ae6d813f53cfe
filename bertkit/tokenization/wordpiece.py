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


from __future__ import annotations

import dataclasses
import functools
import json
import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend
from tokenizers.models import WordPiece

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK)
CONTINUATION_PREFIX = "##"


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


def reference_normalizer(lowercase: bool, strip_accents: bool | None) -> normalizers.Normalizer:
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


def reference_pre_tokenizer(tokenize_chinese_chars: bool) -> pre_tokenizers.PreTokenizer:
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


def install_reference_pipeline(
    backend: Backend, *, lowercase: bool, strip_accents: bool | None, tokenize_chinese_chars: bool
) -> None:
    """Give ``backend`` (any WordPiece model) the exact reference normalizer, pre-tokenizer and decoder."""
    backend.normalizer = reference_normalizer(lowercase, strip_accents)
    backend.pre_tokenizer = reference_pre_tokenizer(tokenize_chinese_chars)
    backend.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX, cleanup=True)


def install_bert_specials(backend: Backend, vocab: dict[str, int], extra: Sequence[str] = ()) -> None:
    """BERT's five specials (and ``extra``) as special added tokens, and its [CLS] A [SEP] (B [SEP]) layout."""
    # Specials are matched in the raw text before normalisation, like the
    # reference's added-token trie ("a[MASK]b" -> a [MASK] b).
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (*SPECIAL_TOKENS, *extra)])
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )


def load_vocab(vocab_file: Path) -> dict[str, int]:
    """Read vocab.txt exactly like the reference's load_vocab (a later duplicate wins)."""
    with open(vocab_file, encoding="utf-8") as reader:
        return {line.rstrip("\n"): index for index, line in enumerate(reader.readlines())}


def check_bert_specials(vocab: dict[str, int], source: object) -> None:
    for token in (UNK, CLS, SEP, PAD, MASK):
        if token not in vocab:
            raise ValueError(f"vocabulary {source} has no {token} token; BERT needs {', '.join(SPECIAL_TOKENS)}")


def wordpiece_backend(
    vocab: dict[str, int],
    *,
    lowercase: bool,
    strip_accents: bool | None,
    tokenize_chinese_chars: bool,
    max_input_chars_per_word: int = 100,
    extra_specials: Sequence[str] = (),
) -> Backend:
    """The exact BERT tokenizer for ``vocab``: reference pipeline, BERT's specials and layout."""
    backend = Backend(
        WordPiece(
            vocab,
            unk_token=UNK,
            max_input_chars_per_word=max_input_chars_per_word,
            continuing_subword_prefix=CONTINUATION_PREFIX,
        )
    )
    install_reference_pipeline(
        backend, lowercase=lowercase, strip_accents=strip_accents, tokenize_chinese_chars=tokenize_chinese_chars
    )
    install_bert_specials(backend, vocab, extra_specials)
    return backend


def train_wordpiece(
    paths: Sequence[Path],
    *,
    vocab_size: int,
    lowercase: bool,
    strip_accents: bool | None,
    min_frequency: int,
    limit_alphabet: int,
    special_tokens: Sequence[str],
    show_progress: bool,
) -> Backend:
    """A WordPiece vocabulary trained on exactly the text the finished tokenizer will see; the special
    tokens (BERT's five first) get ids 0..len(special_tokens)-1 in order."""
    backend = Backend(WordPiece(unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX))
    backend.normalizer = reference_normalizer(lowercase, strip_accents)
    backend.pre_tokenizer = reference_pre_tokenizer(True)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        limit_alphabet=limit_alphabet,
        special_tokens=list(special_tokens),
        continuing_subword_prefix=CONTINUATION_PREFIX,
        show_progress=show_progress,
    )
    backend.train([str(p) for p in paths], trainer)
    vocab = backend.get_vocab(with_added_tokens=True)
    check_bert_specials(vocab, "trained from " + ", ".join(map(str, paths)))
    # A fresh model from the final vocabulary, set up exactly like from_vocab's.
    return wordpiece_backend(vocab, lowercase=lowercase, strip_accents=strip_accents, tokenize_chinese_chars=True,
                             extra_specials=special_tokens[len(SPECIAL_TOKENS):])


def is_stock_bert(spec: dict) -> bool:
    """A tokenizer.json with transformers' stock BERT pipeline (BertNormalizer + BertPreTokenizer)."""
    return (spec.get("normalizer") or {}).get("type") == "BertNormalizer" and (
        spec.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
