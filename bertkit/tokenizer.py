"""The tokenizer of every BERT family: one wrapper over a Rust ``tokenizers`` pipeline.

Kinds (``Tokenizer.kind``, the model inside the pipeline):

* ``wordpiece`` (BERT, DistilBERT, ELECTRA): the exact original BERT tokenizer, Unicode handling
  included (:mod:`bertkit.tokenization.wordpiece`), from ``vocab.txt`` or ``tokenizer.json``. Pairs are
  cut longest-first as Google's BERT code cuts them.
* ``bpe`` (RoBERTa; GPT-2 style byte-level BPE) from ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``
  (:mod:`bertkit.tokenization.bpe`).
* ``unigram`` (XLM-R, ALBERT, DeBERTa-v3: SentencePiece models converted to ``tokenizer.json``).

Everything else is read from the directory rather than assumed: the special tokens by role and the
single / pair layout (the post-processor: :mod:`bertkit.tokenization.layout`), whether the model takes
token types (:mod:`bertkit.tokenization.specials`), and which vocabulary entries continue a word
(:attr:`Tokenizer.continues_word`: "##" for WordPiece, no leading "Ġ" / "▁" for byte-level BPE and
SentencePiece). Ids, offsets and layouts are those of transformers' ``AutoTokenizer`` on the same
directory; the differences found are listed at :meth:`Tokenizer.from_pretrained`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Union

from tokenizers import AddedToken, Encoding
from tokenizers import Tokenizer as _Backend

from .tokenization import bpe, wordpiece
from .tokenization.layout import Layout, read_layouts
from .tokenization.specials import ROLES, SpecialTokens, has_token_types, resolve_specials, token_name
from .tokenization.wordpiece import (  # noqa: F401 (the public names of the BERT kind, kept importable here)
    CLS,
    CONTINUATION_PREFIX,
    MASK,
    PAD,
    SEP,
    SPECIAL_TOKENS,
    UNK,
    combining_marks_unknown_to_backend,
)

if TYPE_CHECKING:
    import torch

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_MODEL_MAX_LENGTH = 512
KINDS = ("wordpiece", "bpe")  # what Tokenizer.train builds

# HF writes int(1e30) as model_max_length when a checkpoint does not set one.
_UNSET_MAX_LENGTH_THRESHOLD = 1_000_000
# SentencePiece model files: a later issue reads them; until then a directory must carry tokenizer.json.
_SENTENCEPIECE_FILES = ("spiece.model", "sentencepiece.bpe.model", "spm.model", "tokenizer.model")
# tokenizer_config.json keys that describe one loading of a directory, not the tokenizer: not saved again.
_TRANSIENT_CONFIG_KEYS = frozenset({"added_tokens_decoder", "auto_map", "is_local", "local_files_only",
                                    "name_or_path", "tokenizer_file"})


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


def _read_json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        return {}
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{file}: expected a JSON object")
    return content


def _components(state: Any) -> list[dict[str, Any]]:
    """A pipeline component's JSON and, for a Sequence, its members' (recursively)."""
    if not isinstance(state, dict):
        return []
    nested = state.get("pretokenizers") or state.get("normalizers") or state.get("processors") or []
    return [state, *(c for member in nested for c in _components(member))]


def _state(component: Any) -> dict[str, Any] | None:
    return json.loads(component.__getstate__()) if component is not None else None


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
    # None at specials and padding (the special-tokens mask marks both).
    return [None if special else s for special, s in zip(encoding.special_tokens_mask, encoding.sequence_ids)]


def _laid_out_sequence_ids(layout: Layout | None, first: int, second: int, length: int) -> list[int | None]:
    """Sequence ids of a pair of `first` and `second` tokens (in `layout`, or bare), padded to `length`.
    Encoding.sequence_ids cannot be used after post_process(): TemplateProcessing loses the first text's."""
    if layout is None:
        ids: list[int | None] = [0] * first + [1] * second
    else:
        ids = ([None] * len(layout.prefix) + [0] * first + [None] * len(layout.middle) + [1] * second
               + [None] * len(layout.suffix))
    return ids + [None] * (length - len(ids))


class _Encoded(NamedTuple):
    encodings: list[Encoding]
    num_truncated: int  # inputs that lost tokens
    sequence_ids: list[list[int | None]]  # per encoding: 0 / 1 for the texts' tokens, None elsewhere


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
    LongTensors (or lists of lists with ``return_tensors=None``);
    ``token_type_ids`` is None for tokenizers of models without token types
    (RoBERTa, XLM-R, DistilBERT).  ``offsets`` are ``(start, end)`` character
    offsets into the original text -- into the pair text for tokens of the
    second sequence -- and ``(0, 0)`` for special and padding tokens.
    ``word_ids`` / ``sequence_ids`` are ``None`` there.  ``num_truncated``
    counts the inputs that lost tokens to truncation.

    ``enc["input_ids"]`` works, and ``model(**enc)`` passes the model inputs.
    """

    input_ids: torch.Tensor | list[list[int]]
    attention_mask: torch.Tensor | list[list[int]]
    token_type_ids: torch.Tensor | list[list[int]] | None
    offsets: list[list[tuple[int, int]]] | None = None
    word_ids: list[list[int | None]] | None = None
    sequence_ids: list[list[int | None]] | None = None
    num_truncated: int = 0

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        """The model inputs, so that ``model(**enc)`` works (token_type_ids only when there are some)."""
        return tuple(k for k in _MODEL_INPUTS if getattr(self, k) is not None)

    def rows(self) -> list[dict[str, list[int]]]:
        """Per input, its ``input_ids`` (and ``token_type_ids`` when there are some) as lists: the features
        that ``batching.collate`` pads again (it rebuilds the attention mask)."""
        columns = {k: getattr(self, k) for k in ("input_ids", "token_type_ids") if getattr(self, k) is not None}
        columns = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in columns.items()}
        return [{k: v[i] for k, v in columns.items()} for i in range(len(columns["input_ids"]))]

    def to(self, device: torch.device | str) -> BatchEncoding:
        """Copy with the tensors moved to ``device``."""
        if not hasattr(self.input_ids, "to"):
            raise TypeError("this BatchEncoding holds lists (return_tensors=None); there is nothing to move")
        return dataclasses.replace(self, **{k: getattr(self, k).to(device) for k in self.keys()})


Padding = Union[bool, Literal["longest", "max_length"]]
Truncation = Union[bool, Literal["longest_first", "only_first", "only_second"]]

_TRUNCATION_STRATEGIES: dict[Any, str | None] = {
    True: "longest_first",
    False: None,
    "longest_first": "longest_first",
    "only_first": "only_first",
    "only_second": "only_second",
}


def _batch_encoding(encoded: _Encoded, offsets: bool, word_ids: bool, token_types: bool) -> BatchEncoding:
    """The encodings as lists, with the alignment that was asked for."""
    encodings = encoded.encodings
    return BatchEncoding(
        input_ids=[e.ids for e in encodings],
        attention_mask=[e.attention_mask for e in encodings],
        token_type_ids=[e.type_ids for e in encodings] if token_types else None,
        offsets=[e.offsets for e in encodings] if offsets else None,
        word_ids=[e.word_ids for e in encodings] if word_ids else None,
        sequence_ids=encoded.sequence_ids if offsets or word_ids else None,
        num_truncated=encoded.num_truncated,
    )


@dataclasses.dataclass(frozen=True)
class WordPieceOptions:
    """The reference BERT pipeline's settings (tokenizer_config.json's do_lower_case and friends)."""

    lowercase: bool = True
    strip_accents: bool | None = None
    tokenize_chinese_chars: bool = True


class Tokenizer:
    """A BERT-family tokenizer: WordPiece (with the ids of the original BERT tokenizer), byte-level BPE or Unigram.

    Build one with :meth:`from_pretrained`, :meth:`from_vocab` or :meth:`train`.
    """

    def __init__(
        self,
        backend: _Backend,
        *,
        wordpiece: WordPieceOptions | None = None,
        token_type_ids: bool = True,
        model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
        configs: tuple[Mapping[str, Any], ...] = (),
        source: object = "<in memory>",
    ) -> None:
        """``backend``: the pipeline, used as it is (its post-processor gives the layout). ``wordpiece``:
        the settings of the reference BERT pipeline when ``backend`` is one. ``configs``:
        tokenizer_config.json and special_tokens_map.json, which name the special tokens."""
        # Truncation and padding are configured per call (under the lock).
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self._kind = type(backend.model).__name__.lower()
        if self._kind == "wordpiece" and wordpiece is None:
            wordpiece = WordPieceOptions(lowercase=self._normalizer_lowercases())
        self._wordpiece = wordpiece if self._kind == "wordpiece" else None
        self._single, self._pair = read_layouts(backend, "a", source)
        vocab = backend.get_vocab(with_added_tokens=True)
        self._specials = resolve_specials(vocab, tuple(configs), self._named_by_pipeline(), source)
        # Specials are matched whole in the raw text (transformers adds them as special tokens too).
        added = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
        missing = [t for t in dict.fromkeys(self._specials.as_dict().values()) if t not in added]
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
        self._vocab = backend.get_vocab(with_added_tokens=True)
        # Any extra special tokens the vocabulary was trained with ([URL], <e1>, ...).
        roles = set(self._specials.as_dict().values())
        self._extra_specials = tuple(t.content for i, t in sorted(backend.get_added_tokens_decoder().items())
                                     if t.special and t.content not in roles)
        self._special_ids = frozenset(self._vocab[t] for t in (*self._specials.as_dict().values(), *self._extra_specials))
        self._token_types = bool(token_type_ids)
        self._model_max_length = int(model_max_length)
        self._config = {k: v for k, v in (configs[0] if configs else {}).items() if k not in _TRANSIENT_CONFIG_KEYS}
        self._source = source
        # The backend's truncation/padding settings are shared state.
        self._lock = threading.Lock()

    def _named_by_pipeline(self) -> dict[str, str | None]:
        """Special tokens the pipeline itself names: cls / sep at the ends of its single layout, its model's unk."""
        named: dict[str, str | None] = {"unk": getattr(self._backend.model, "unk_token", None)}
        if self._single.prefix:
            named["cls"] = self._backend.id_to_token(self._single.prefix[0][0])
        if self._single.suffix:
            named["sep"] = self._backend.id_to_token(self._single.suffix[-1][0])
        return named

    def _normalizer_lowercases(self) -> bool:
        return any(c.get("type") == "Lowercase" or (c.get("type") == "BertNormalizer" and c.get("lowercase"))
                   for c in _components(_state(self._backend.normalizer)))

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
        token_type_ids: bool = True,
    ) -> Tokenizer:
        """Tokenizer for a BERT ``vocab.txt`` (one token per line, id = line number)."""
        path = Path(vocab_file)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        vocab = wordpiece.load_vocab(path)
        wordpiece.check_bert_specials(vocab, path)
        options = WordPieceOptions(lowercase, strip_accents, tokenize_chinese_chars)
        backend = wordpiece.wordpiece_backend(vocab, **dataclasses.asdict(options),
                                              max_input_chars_per_word=max_input_chars_per_word)
        return cls(backend, wordpiece=options, token_type_ids=token_type_ids, model_max_length=model_max_length,
                   source=path)

    @classmethod
    def from_pretrained(cls, directory: PathLike, *, token_type_ids: bool | None = None) -> Tokenizer:
        """Load from a Hugging Face style directory; never touches the network.

        Reads, in this order of preference, ``tokenizer.json`` (any model kind, its pipeline as written),
        ``vocab.json`` + ``merges.txt`` (a RoBERTa tokenizer, see :mod:`bertkit.tokenization.bpe`) or
        ``vocab.txt`` (BERT). ``tokenizer_config.json`` and ``special_tokens_map.json`` (optional) name
        the special tokens and give ``model_max_length``; for WordPiece ``do_lower_case``,
        ``strip_accents`` and ``tokenize_chinese_chars``, for byte-level BPE ``add_prefix_space`` and
        ``trim_offsets``. A stock BERT ``tokenizer.json`` (BertNormalizer + BertPreTokenizer, as written
        by ``transformers``) keeps its vocabulary and layout but gets the exact reference pipeline.

        ``token_type_ids``: whether encodings carry token types; None decides as transformers does
        (tokenizer_config.json's ``model_input_names``, else its ``tokenizer_class``, else config.json's
        ``model_type``; without any, yes). Model-loading code passes what the model family takes.

        Where transformers 5's ``AutoTokenizer`` differs on the same directory (tested):
        WordPiece pairs are cut as Google's BERT cuts them (an odd leftover token stays with the first
        text; transformers gives it to the longer one) and text goes through the exact reference
        pipeline, not the stock BertNormalizer; a RoBERTa directory of only vocab.json + merges.txt gets
        ``<mask>`` with lstrip (transformers 5 drops it there, but keeps it from a tokenizer.json);
        ALBERT tokenizers return token types (transformers 5 lists none for them, although the model
        takes them); a class that transformers rebuilds from the vocabulary with its own pipeline
        (XLM-R, ALBERT) runs here as its tokenizer.json is written.
        """
        path = Path(directory)
        if not path.is_dir():
            raise FileNotFoundError(f"tokenizer directory not found: {path}")
        config = _read_json(path / "tokenizer_config.json")
        configs = (config, _read_json(path / "special_tokens_map.json"))
        max_length = config.get("model_max_length")
        if not isinstance(max_length, int) or max_length > _UNSET_MAX_LENGTH_THRESHOLD:
            max_length = DEFAULT_MODEL_MAX_LENGTH
        if token_type_ids is None:
            token_type_ids = has_token_types(config, _read_json(path / "config.json"), default=True)
        settings = dict(token_type_ids=token_type_ids, model_max_length=max_length, configs=configs)

        if (path / "tokenizer.json").is_file():
            return cls._from_tokenizer_json(path / "tokenizer.json", config, settings)
        if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            return cls._from_bpe_files(path, configs, settings)
        if (path / "vocab.txt").is_file():  # BERT's own files: its five specials by their names
            return cls.from_vocab(path / "vocab.txt", **dataclasses.asdict(_wordpiece_options(config, {})),
                                  model_max_length=max_length, token_type_ids=token_type_ids)
        for name in _SENTENCEPIECE_FILES:
            if (path / name).is_file():
                raise ValueError(f"{path / name}: SentencePiece model files are not read yet; save the tokenizer with "
                                 f"transformers once (AutoTokenizer.from_pretrained(dir).save_pretrained(dir)) to "
                                 f"write tokenizer.json")
        raise FileNotFoundError(f"neither tokenizer.json, vocab.json + merges.txt nor vocab.txt found in {path}")

    @classmethod
    def _from_tokenizer_json(cls, file: Path, config: dict[str, Any], settings: dict[str, Any]) -> Tokenizer:
        spec = json.loads(file.read_text(encoding="utf-8"))
        # tokenizer_config.json wins over the file, as in transformers.
        changed = False
        for component in _components(spec.get("pre_tokenizer")) + _components(spec.get("post_processor")):
            if component.get("type") in ("ByteLevel", "RobertaProcessing"):
                for key in ("add_prefix_space", "trim_offsets"):
                    if isinstance(config.get(key), bool) and component.get(key, config[key]) != config[key]:
                        component[key], changed = config[key], True
        backend = _Backend.from_str(json.dumps(spec)) if changed else _Backend.from_file(str(file))
        options = None
        if isinstance(backend.model, wordpiece.WordPiece):
            options = _wordpiece_options(config, spec)
            if wordpiece.is_stock_bert(spec):
                # The stock pipeline only approximates the original tokenizer (see
                # bertkit.tokenization.wordpiece); swap in the exact one, keep the model.
                wordpiece.install_reference_pipeline(backend, **dataclasses.asdict(options))
            if backend.post_processor is None:
                wordpiece.install_bert_specials(backend, backend.get_vocab(with_added_tokens=True))
        return cls(backend, wordpiece=options, source=file, **settings)

    @classmethod
    def _from_bpe_files(cls, path: Path, configs: tuple[dict[str, Any], ...], settings: dict[str, Any]) -> Tokenizer:
        vocab_file = path / "vocab.json"
        vocab = bpe.read_vocab_json(vocab_file)
        names = resolve_specials(vocab, configs, {}, vocab_file)
        config = configs[0]
        mask_setting = next((c["mask_token"] for c in configs if isinstance(c.get("mask_token"), dict)), {})
        extra = [token_name(t) for t in config.get("additional_special_tokens") or []]
        backend = bpe.byte_level_backend(
            vocab, bpe.read_merges(path / "merges.txt"), cls=names.cls, sep=names.sep,
            specials=[names.cls, names.pad, names.sep, names.unk, names.mask, *(t for t in extra if t)],
            mask=names.mask if mask_setting.get("lstrip", True) else None,
            add_prefix_space=bool(config.get("add_prefix_space", False)),
            trim_offsets=bool(config.get("trim_offsets", True)),
        )
        return cls(backend, source=vocab_file, **settings)

    @classmethod
    def train(
        cls,
        files: Sequence[PathLike],
        *,
        kind: str = "wordpiece",
        vocab_size: int = 30522,
        lowercase: bool | None = None,
        strip_accents: bool | None = None,
        min_frequency: int = 2,
        limit_alphabet: int = 1000,
        special_tokens: Sequence[str] = (),
        show_progress: bool = True,
    ) -> Tokenizer:
        """Train a vocabulary on plain UTF-8 text files.

        ``kind="wordpiece"``: BERT's (lowercased unless ``lowercase=False``; ``limit_alphabet`` initial
        characters). ``kind="bpe"``: RoBERTa's byte-level BPE, always cased, no token types.
        The kind's five special tokens ([PAD] [UNK] [CLS] [SEP] [MASK], or <s> <pad> </s> <unk> <mask>)
        come first with ids 0..4, then ``special_tokens`` (e.g. ``[URL]``), which are, like them, matched
        whole in the raw text and never split or masked.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        base = wordpiece.SPECIAL_TOKENS if kind == "wordpiece" else bpe.SPECIAL_TOKENS
        specials = list(dict.fromkeys([*base, *special_tokens]))  # the kind's five always, first
        for token in specials:
            if not token.strip() or token != token.strip():
                raise ValueError(f"special token {token!r} is empty or has surrounding spaces")
        paths = [Path(f) for f in files]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"training file not found: {p}")
        if kind == "bpe":
            if lowercase or strip_accents is not None:
                raise ValueError("a byte-level BPE vocabulary is cased, as RoBERTa's: lowercase and strip_accents "
                                 "apply to WordPiece only")
            backend = bpe.train_byte_level(paths, vocab_size=vocab_size, min_frequency=min_frequency,
                                           special_tokens=specials, show_progress=show_progress)
            return cls(backend, token_type_ids=False)
        options = WordPieceOptions(lowercase=lowercase if lowercase is not None else True, strip_accents=strip_accents)
        backend = wordpiece.train_wordpiece(paths, vocab_size=vocab_size, lowercase=options.lowercase,
                                            strip_accents=strip_accents, min_frequency=min_frequency,
                                            limit_alphabet=limit_alphabet, special_tokens=specials,
                                            show_progress=show_progress)
        return cls(backend, wordpiece=options)

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
    ) -> _Encoded:
        """Encode a batch with the Rust batch encoder. With `is_pretokenized` each input is a list of words."""
        backend = self._words_backend if is_pretokenized else self._backend
        is_pair = bool(inputs) and isinstance(inputs[0], tuple)
        specials = self.num_special_tokens(is_pair) if add_special_tokens else 0
        if truncation is not None:
            if max_length is None or max_length <= specials:
                raise ValueError(f"max_length={max_length!r} leaves no room next to the {specials} special tokens")
        padding = dict(direction="right", pad_id=self.pad_token_id, pad_type_id=0, pad_token=self.pad_token)
        with self._lock:
            backend.no_truncation()
            backend.no_padding()
            if is_pair and truncation == "longest_first" and self._wordpiece is not None:
                # tokenizers gives an odd leftover token to the longer input,
                # the reference always to the first one: cut in Python.
                firsts = backend.encode_batch([a for a, _ in inputs], add_special_tokens=False)
                seconds = backend.encode_batch([b for _, b in inputs], add_special_tokens=False)
                encodings, lengths, num_truncated = [], [], 0
                for first, second in zip(firsts, seconds):
                    n1, n2 = _longest_first_lengths(len(first), len(second), max_length - specials)
                    num_truncated += (n1, n2) != (len(first), len(second))
                    first.truncate(n1)
                    second.truncate(n2)
                    encodings.append(backend.post_process(first, second, add_special_tokens=add_special_tokens))
                    lengths.append((n1, n2))
                if pad_to is not False:
                    length = pad_to if pad_to is not None else max(len(e) for e in encodings)
                    for e in encodings:
                        e.pad(length, **padding)
                layout = self._pair if add_special_tokens else None
                return _Encoded(encodings, num_truncated, [_laid_out_sequence_ids(layout, n1, n2, len(e))
                                                           for (n1, n2), e in zip(lengths, encodings)])
            if truncation is not None:
                backend.enable_truncation(max_length, strategy=truncation)
            if pad_to is not False:
                backend.enable_padding(length=pad_to, **padding)
            try:
                encodings = backend.encode_batch(inputs, add_special_tokens=add_special_tokens,
                                                 is_pretokenized=is_pretokenized)
            except Exception as exc:  # tokenizers raises a bare Exception
                raise ValueError(f"cannot truncate with {truncation!r} to max_length={max_length}: {exc}") from exc
            finally:
                backend.no_truncation()
                backend.no_padding()
            return _Encoded(encodings, sum(1 for e in encodings if e.overflowing), [_sequence_ids(e) for e in encodings])

    @functools.cached_property
    def _words_backend(self) -> _Backend:
        """The pipeline for text already split into words: byte-level BPE marks every word's start with
        its space then (transformers' add_prefix_space=True, which RoBERTa needs for pre-split words);
        every other kind reads words as they are."""
        spec = json.loads(self._backend.to_str())
        components = _components(spec.get("pre_tokenizer")) + _components(spec.get("post_processor"))
        changed = [c for c in components if c.get("type") in ("ByteLevel", "RobertaProcessing")
                   and c.get("add_prefix_space") is False]
        if not changed:
            return self._backend
        for component in changed:
            component["add_prefix_space"] = True
        return _Backend.from_str(json.dumps(spec))

    def encode(
        self,
        text: str,
        pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        max_length: int | None = None,
    ) -> list[int]:
        """Ids of ``text`` (or of ``text`` and ``pair``) in the tokenizer's layout, e.g.
        ``[CLS] text [SEP]`` or ``<s> text </s></s> pair </s>``.

        With ``max_length`` the longer sequence is cut first ("longest_first").
        """
        _check_text(text, "text")
        inputs: list[Any] = [text] if pair is None else [(text, _check_text(pair, "pair"))]
        truncation = None if max_length is None else "longest_first"
        (encoding,), _, _ = self._encode(
            inputs, add_special_tokens=add_special_tokens, truncation=truncation, max_length=max_length, pad_to=False
        )
        return encoding.ids

    def tokenize(self, text: str) -> list[str]:
        """The pieces of ``text``, without special tokens added."""
        _check_text(text, "text")
        (encoding,), _, _ = self._encode([text], add_special_tokens=False, truncation=None, max_length=None, pad_to=False)
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
        add_special_tokens: bool = True,
    ) -> BatchEncoding:
        """Encode a batch (a single str is a batch of one) for the model.

        ``max_length`` defaults to :attr:`model_max_length`; it bounds
        truncation and is the target length of ``padding="max_length"``.
        ``add_special_tokens=False`` gives the texts' own tokens alone, for
        callers that lay out inputs themselves (:meth:`build_inputs`).
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

        encoded = _batch_encoding(
            self._encode(inputs, add_special_tokens=add_special_tokens, truncation=strategy, max_length=max_length,
                         pad_to=pad_to),
            return_offsets, return_word_ids, self._token_types,
        )
        if return_tensors == "pt":
            lengths = {len(row) for row in encoded.input_ids}
            if len(lengths) > 1:
                raise ValueError(
                    f"sequences have different lengths ({min(lengths)}..{max(lengths)}); "
                    "pad them (padding='longest') or return lists (return_tensors=None)"
                )
            import torch

            encoded = dataclasses.replace(encoded, **{k: torch.tensor(encoded[k], dtype=torch.long)
                                                      for k in encoded.keys()})
        return encoded

    def encode_words(self, batch: Sequence[Sequence[str]], *, add_special_tokens: bool = True) -> BatchEncoding:
        """Encode sentences already split into words (CoNLL tokens), as lists in the tokenizer's layout.

        Each word goes through the same normalizer and pre-tokenizer as running text (so "U.S."
        still gives u . s . in BERT); ``word_ids`` name the word each piece came from and ``offsets``
        are character spans inside that word. A word that normalises to nothing (only control or
        zero-width characters) gets no piece. Byte-level BPE reads every word as if a space came
        before it ("Ġword"), as RoBERTa saw words inside running text. No truncation and no padding:
        the caller decides what to do with long sentences. The ids are those of transformers'
        tokenizer with ``is_split_into_words=True`` (and ``add_prefix_space=True`` for byte-level BPE).
        """
        if isinstance(batch, str) or not isinstance(batch, Sequence):
            raise TypeError(f"batch must be a sequence of word lists, got {type(batch).__name__}")
        sentences = []
        for i, words in enumerate(batch):
            if isinstance(words, str):  # a sentence given as one string: ambiguous, refuse it
                raise TypeError(f"batch[{i}] must be a sequence of words, got a str")
            sentences.append(_as_batch(words, f"batch[{i}]"))
        encoded = self._encode(sentences, add_special_tokens=add_special_tokens, truncation=None, max_length=None,
                               pad_to=False, is_pretokenized=True)
        return _batch_encoding(encoded, offsets=True, word_ids=True, token_types=self._token_types)

    # ---- layout -------------------------------------------------------------

    def layout(self, pair: bool = False) -> Layout:
        """Where the special tokens go around one text (or a pair), as the tokenizer's own encodings have them."""
        return self._pair if pair else self._single

    def num_special_tokens(self, pair: bool = False) -> int:
        """How many special tokens an encoded text (or pair) holds besides its own tokens."""
        return self.layout(pair).num_special_tokens

    def build_inputs(self, first: Sequence[int], second: Sequence[int] | None = None) -> dict[str, list[int]]:
        """Model inputs of one text's (or a pair's) own token ids, laid out as :meth:`__call__` lays them out:
        ``input_ids`` and, when the tokenizer has token types, ``token_type_ids``. For callers that cut their
        own windows (QA contexts, long texts, pretraining segments)."""
        ids, types = self.layout(second is not None).build(list(first), None if second is None else list(second))
        return {"input_ids": ids, "token_type_ids": types} if self._token_types else {"input_ids": ids}

    # ---- word structure -----------------------------------------------------

    @functools.cached_property
    def continues_word(self) -> tuple[bool, ...]:
        """Per vocabulary id: does this token continue the word of the token before it?

        WordPiece: pieces that start with "##". Byte-level BPE and SentencePiece mark a word's start
        instead ("Ġ" for the space before it, "▁"): every other piece continues a word, punctuation
        after a word included, as fairseq's whole-word masking counts them. Special and added tokens
        never continue a word. Used by whole-word masking; a tokenizer whose pieces carry no such mark
        raises ValueError.
        """
        prefix, starts = self._word_mark()
        added = set(self._backend.get_added_tokens_decoder())
        marks = [False] * self.vocab_size
        for token, index in self._vocab.items():
            if index < len(marks) and index not in added:
                marks[index] = token.startswith(prefix) != starts
        return tuple(marks)

    def _word_mark(self) -> tuple[str, bool]:
        """(mark, whether it marks a word's start rather than its continuation)."""
        model = self._backend.model
        prefix = getattr(model, "continuing_subword_prefix", None)
        if prefix:
            return prefix, False
        for component in _components(_state(self._backend.pre_tokenizer)):
            if component.get("type") == "ByteLevel":
                return bpe.WORD_START, True
            if component.get("type") == "Metaspace":
                return component.get("replacement", "\u2581"), True
        raise ValueError(f"{self._source}: cannot tell which {self._kind} pieces continue a word (no continuation "
                         "prefix, no ByteLevel or Metaspace pre-tokenizer)")

    @property
    def leading_space_matters(self) -> bool:
        """Whether a text's first word is tokenised differently from the same word after a space (byte-level
        BPE without add_prefix_space: "Ġword" inside a text, "word" at its start). Code that tokenises pieces
        of running text on their own (sentences of a document) gives the later pieces their space back."""
        for component in _components(_state(self._backend.pre_tokenizer)):
            if component.get("type") == "ByteLevel":
                return not component.get("add_prefix_space")
            if component.get("type") == "Metaspace":  # "first" and "always" give the first word its mark anyway
                return component.get("prepend_scheme") == "never"
        return False

    # ---- decoding and vocabulary -------------------------------------------

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text for ``ids``: WordPiece as BERT's tokenizer writes it ("##" pieces glued on, clean-up
        spacing); other kinds through their decoder, as transformers does."""
        if hasattr(ids, "tolist"):  # tensors and arrays
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        if self._wordpiece is None:
            text = self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
            # transformers skips its clean-up for BPE, which it would corrupt.
            if self._config.get("clean_up_tokenization_spaces") and self._kind != "bpe":
                text = _clean_up(text)
            return text
        special = self._special_ids if skip_special_tokens else frozenset()
        tokens = [self._id_to_token(i) for i in ids if i not in special]
        # The reference's convert_tokens_to_string + clean_up_tokenization.  The
        # Rust WordPiece decoder cleans up token by token, so it misses
        # patterns that span tokens ("can ' t" -> "can't").
        prefix = self._backend.model.continuing_subword_prefix
        return _clean_up(" ".join(tokens).replace(" " + prefix, "").strip())

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Vocabulary ids; unknown tokens map to the unk token's id."""
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
    def kind(self) -> str:
        """The model inside the pipeline: "wordpiece", "bpe", "unigram" (or "wordlevel")."""
        return self._kind

    @property
    def vocab(self) -> dict[str, int]:
        """Token -> id (a copy)."""
        return dict(self._vocab)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def special_tokens(self) -> SpecialTokens:
        """The special tokens by role (cls, sep, pad, mask, unk)."""
        return self._specials

    @property
    def cls_token(self) -> str:
        """The token that starts an input: [CLS] for BERT, <s> for RoBERTa."""
        return self._specials.cls

    @property
    def sep_token(self) -> str:
        """The token that ends a text: [SEP] for BERT, </s> for RoBERTa."""
        return self._specials.sep

    @property
    def pad_token(self) -> str:
        return self._specials.pad

    @property
    def mask_token(self) -> str:
        """What a masked-language model predicts: [MASK] for BERT, <mask> for RoBERTa."""
        return self._specials.mask

    @property
    def unk_token(self) -> str:
        return self._specials.unk

    @property
    def pad_token_id(self) -> int:
        return self._vocab[self._specials.pad]

    @property
    def unk_token_id(self) -> int:
        return self._vocab[self._specials.unk]

    @property
    def cls_token_id(self) -> int:
        return self._vocab[self._specials.cls]

    @property
    def sep_token_id(self) -> int:
        return self._vocab[self._specials.sep]

    @property
    def mask_token_id(self) -> int:
        return self._vocab[self._specials.mask]

    @property
    def all_special_ids(self) -> frozenset[int]:
        """Ids of the five role tokens (cls, sep, pad, mask, unk) and any extra special tokens."""
        return self._special_ids

    @property
    def has_token_types(self) -> bool:
        """Whether encodings carry token_type_ids (BERT, ELECTRA, ALBERT; not RoBERTa, XLM-R, DistilBERT)."""
        return self._token_types

    @property
    def model_input_names(self) -> tuple[str, ...]:
        """The model inputs an encoding holds, in transformers' order."""
        return ("input_ids", "token_type_ids", "attention_mask") if self._token_types else ("input_ids", "attention_mask")

    @property
    def model_max_length(self) -> int:
        return self._model_max_length

    @property
    def lowercase(self) -> bool:
        return self._wordpiece.lowercase if self._wordpiece is not None else self._normalizer_lowercases()

    # ---- saving -------------------------------------------------------------

    def save_pretrained(self, directory: PathLike) -> None:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json and the kind's vocabulary
        files (vocab.txt for WordPiece, vocab.json + merges.txt for BPE).

        ``directory`` must exist (callers create it, e.g. atomically).  The
        result loads with :meth:`from_pretrained`, with plain ``tokenizers``
        and with ``transformers``' ``AutoTokenizer``, all with the same ids.
        A WordPiece tokenizer's class is ``PreTrainedTokenizerFast`` on purpose:
        transformers 5's ``BertTokenizer`` would ignore our tokenizer.json and
        rebuild the stock BertNormalizer pipeline, which differs from BERT's
        reference on final sigma, NFC in cased mode and newer Unicode. Other
        kinds keep the class they were loaded with (RoBERTa's for a trained BPE).
        """
        path = Path(directory)
        if not path.is_dir():
            raise FileNotFoundError(f"directory not found: {path}")
        if self._wordpiece is not None:
            self._save_vocab_txt(path)
        elif self._kind == "bpe":
            self._backend.model.save(str(path))  # vocab.json + merges.txt, which older loaders read
        with self._lock:
            # Per-call settings must not leak into the file.
            self._backend.no_truncation()
            self._backend.no_padding()
            self._backend.save(str(path / "tokenizer.json"))
        specials: dict[str, Any] = {f"{role}_token": getattr(self._specials, role) for role in ROLES}
        specials = {k: specials[k] for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")}
        if self._wordpiece is None:  # RoBERTa-style files also name <s> and </s> as bos and eos
            specials = {"bos_token": self.cls_token, "eos_token": self.sep_token, **specials}
        if self._extra_specials:
            specials["additional_special_tokens"] = list(self._extra_specials)
        config = {**self._config_for_saving(), **specials}
        for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", specials)):
            (path / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def _save_vocab_txt(self, path: Path) -> None:
        by_id = sorted(self._vocab.items(), key=lambda item: item[1])
        if [i for _, i in by_id] != list(range(len(by_id))):
            raise ValueError("vocabulary ids are not 0..N-1 without gaps; vocab.txt cannot represent them")
        with open(path / "vocab.txt", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(token + "\n" for token, _ in by_id)

    def _config_for_saving(self) -> dict[str, Any]:
        if self._wordpiece is not None:
            return {
                "tokenizer_class": "PreTrainedTokenizerFast",  # loads tokenizer.json as written (see docstring)
                "do_lower_case": self._wordpiece.lowercase,
                "strip_accents": self._wordpiece.strip_accents,
                "tokenize_chinese_chars": self._wordpiece.tokenize_chinese_chars,
                "do_basic_tokenize": True,
                "never_split": None,
                "model_max_length": self._model_max_length,
                "clean_up_tokenization_spaces": True,
                "model_input_names": list(self.model_input_names),
            }
        byte_level = [c for c in _components(_state(self._backend.pre_tokenizer)) if c.get("type") == "ByteLevel"]
        default_class = "RobertaTokenizer" if byte_level else "PreTrainedTokenizerFast"
        config = {"tokenizer_class": default_class, **self._config,
                  "model_max_length": self._model_max_length, "model_input_names": list(self.model_input_names)}
        if byte_level:  # transformers' RobertaTokenizer rebuilds its pre-tokenizer from these
            config["add_prefix_space"] = bool(byte_level[0].get("add_prefix_space"))
            config["trim_offsets"] = bool(byte_level[0].get("trim_offsets", True))
        return config

    # Picklable (DataLoader workers under "spawn"): the lock is recreated.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        options = (f", lowercase={self._wordpiece.lowercase}, strip_accents={self._wordpiece.strip_accents}"
                   if self._wordpiece is not None else "")
        return (f"Tokenizer(kind={self._kind!r}, vocab_size={self.vocab_size}{options}, "
                f"token_type_ids={self._token_types}, model_max_length={self._model_max_length})")


def _clean_up(text: str) -> str:
    for before, after in _CLEAN_UP:
        text = text.replace(before, after)
    return text


def _wordpiece_options(config: Mapping[str, Any], spec: Mapping[str, Any]) -> WordPieceOptions:
    """The reference pipeline's settings: tokenizer_config.json, else the stock BertNormalizer's, else
    what the file's own normalizer does."""
    normalizer = spec.get("normalizer") or {}
    stock = wordpiece.is_stock_bert(spec) if spec else False
    steps = {c.get("type") for c in _components(normalizer)}
    default_lowercase = (normalizer.get("lowercase") if stock else "Lowercase" in steps) if spec else True
    return WordPieceOptions(
        lowercase=config.get("do_lower_case", default_lowercase),
        strip_accents=config.get("strip_accents", normalizer.get("strip_accents") if stock else None),
        tokenize_chinese_chars=config.get("tokenize_chinese_chars", normalizer.get("handle_chinese_chars", True)),
    )
