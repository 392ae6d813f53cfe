"""Readers for the files people fine-tune BERT on: tables, CoNLL tagging files, SQuAD, SWAG.

Every reader checks the whole file while reading, so a bad line fails in seconds, before any
training starts, and fails with a :class:`DataError` (a ``ValueError``) whose message names the
file, the line as an editor shows it (1-based; a CSV header is line 1) and the column or field::

    reviews.csv: line 7: column 'text': empty text (the cell is blank or whitespace only)
    train.jsonl: line 3: field 'label': expected a string, number, boolean or list of strings, found an object
    ner.txt: line 12: column 2 (tag): invalid tag 'B_PER'; expected 'O' or B-/I-/E-/S-/L-/U- and an entity type
    dev.json: data[3].paragraphs[0].qas[2].answers[0].answer_start: missing key 'answer_start'

Files are UTF-8 (a byte order mark is fine); ``.gz``, ``.bz2`` and ``.xz`` compressed files are read
too. A missing file raises the usual ``FileNotFoundError``. Readers never write anything.

    read_table(path)            .csv / .tsv / .jsonl / .json  ->  list[Record]
    read_conll(path)            token ... tag lines            ->  list[Sentence]
    read_squad(path)            SQuAD v1.1 / v2.0 JSON         ->  list[QAExample]
    read_multiple_choice(path)  SWAG-style table               ->  list[MultipleChoiceExample]
    infer_label_kind(records)   "classification" | "multilabel" | "regression"
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import logging
import lzma
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import BertkitError, UsageError

__all__ = [
    "DataError",
    "MultipleChoiceExample",
    "QAExample",
    "Record",
    "Sentence",
    "SquadExamples",
    "infer_label_kind",
    "read_conll",
    "read_multiple_choice",
    "read_squad",
    "read_table",
]

log = logging.getLogger(__name__)

Label = str | float | list[str] | None
LabelKind = Literal["classification", "multilabel", "regression"]


def read_lines(path: str | os.PathLike) -> list[str]:
    """One text per line (split on \\n only, so Unicode line separators stay inside a text)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such input file") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark is not text
        data = data[3:]
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as e:
            raise UsageError(f"{path}, line {number}: not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})") from None
    return lines


def refuse_empty(texts: Sequence[str], source: str | os.PathLike | None = None) -> None:
    """Texts a command answers one by one must each hold something: name the empty ones (file lines, or the
    positions of command-line arguments)."""
    empty = [number for number, text in enumerate(texts, start=1) if not text.strip()]
    if not empty:
        return
    shown = ", ".join(map(str, empty[:10])) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
    if source is not None:
        raise UsageError(f"{source}, line{'s' if len(empty) > 1 else ''} {shown}: empty text; give a text on every "
                         "line (remove the blank lines)")
    raise UsageError(f"text{'s' if len(empty) > 1 else ''} {shown} of the arguments {'are' if len(empty) > 1 else 'is'} "
                     "empty")


def read_texts(path: str | os.PathLike) -> list[str]:
    """`read_lines` for commands that need a text on every line: an empty file or a blank line is an error."""
    lines = read_lines(path)
    if not lines:
        raise UsageError(f"{path}: the file is empty")
    refuse_empty(lines, path)
    return lines


class DataError(BertkitError, ValueError):
    """A problem in a data file, located as precisely as the format allows.

    The message reads ``FILE: line N: column 'x': what is wrong``; the same facts are kept as
    attributes: ``path``, ``line`` (1-based, or None), ``field`` (a column or field name, a JSON path
    for SQuAD, or None) and ``reason`` (the message without the location).
    """

    def __init__(self, reason: str, *, path: str | os.PathLike | None = None, line: int | None = None,
                 where: str | None = None, field: str | None = None, noun: str = "column"):
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        self.reason = reason
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if line is not None:
            parts.append(f"line {line}" + (f" ({where})" if where else ""))
        elif where:
            parts.append(where)
        if field is not None:
            parts.append(f"{noun} {field!r}" if noun else field)
        super().__init__(": ".join([*parts, reason]))

    def __reduce__(self):  # picklable (e.g. across DataLoader workers) with the same message
        return (ValueError.__new__, (type(self), str(self)), self.__dict__)


@dataclass(frozen=True)
class Record:
    """One row of a classification/regression table.

    ``text`` is kept exactly as written (the tokenizer normalizes whitespace); ``label`` is a string
    for CSV/TSV (whitespace stripped), and for JSON a string (JSON integers and booleans become
    ``"3"``, ``"true"``), a float (JSON numbers with a fraction or exponent), a list of strings
    (multi-label) or None when labels are not required and absent. ``line`` is the line the record
    starts on; ``source`` the file it came from (not part of equality).
    """

    text: str
    text_pair: str | None
    label: Label
    line: int
    source: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Sentence:
    """One sentence of a CoNLL-style file; ``line`` is the line of its first token."""

    tokens: list[str]
    tags: list[str]
    line: int
    source: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class QAExample:
    """One SQuAD question. ``answers`` holds ``(text, char_start)`` pairs into ``context`` (checked
    to match); an impossible (SQuAD 2.0) question has no answers. ``where`` is its JSON path."""

    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]
    is_impossible: bool
    title: str | None = None
    where: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class MultipleChoiceExample:
    """One SWAG-style example: a context, its candidate endings and the index of the right one."""

    context: str
    endings: list[str]
    label: int | None
    line: int
    source: str | None = field(default=None, compare=False, repr=False)


class SquadExamples(list):
    """The list :func:`read_squad` returns. With ``strict=False`` it also tells what was skipped:
    ``skipped_answers`` (JSON paths of answers whose text is not at their ``answer_start``) and
    ``dropped_questions`` (JSON paths of questions left with no answer because of that)."""

    skipped_answers: list[str]
    dropped_questions: list[str]

    def __init__(self, items=(), skipped_answers=(), dropped_questions=()):
        super().__init__(items)
        self.skipped_answers = list(skipped_answers)
        self.dropped_questions = list(dropped_questions)


# ---------------------------------------------------------------------------------------------
# Bytes -> text


_DECOMPRESS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
_TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


def _split_suffix(path: Path) -> tuple[str, str | None]:
    """('.csv', '.gz') for data.csv.gz; ('.csv', None) for data.csv."""
    name = path.name.lower()
    for suffix in _DECOMPRESS:
        if name.endswith(suffix):
            return Path(name[: -len(suffix)]).suffix, suffix
    return Path(name).suffix, None


def _read_text(path: Path) -> str:
    """The file as text: decompressed by suffix, UTF-8 (BOM dropped), or a DataError saying where not."""
    raw = path.read_bytes()
    _, compression = _split_suffix(path)
    if compression:
        try:
            raw = _DECOMPRESS[compression](raw)
        except (OSError, EOFError, ValueError, lzma.LZMAError) as e:
            raise DataError(f"cannot decompress this {compression} file: {e}", path=path) from None
    bom = 0
    if raw.startswith(codecs.BOM_UTF8):
        raw, bom = raw[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError("the file is UTF-16 (it starts with a UTF-16 byte order mark); only UTF-8 is read: "
                        "re-save it as UTF-8", path=path, line=1)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1 + (bom if line == 1 else 0)
        raise DataError(
            f"invalid UTF-8 byte 0x{raw[e.start]:02x} at column {column} ({e.reason}); the file must "
            "be UTF-8: if it was saved as Windows-1252/Latin-1 (e.g. by Excel), convert it, e.g. "
            "`iconv -f cp1252 -t utf-8 IN > OUT`", path=path, line=line) from None


def _lines(text: str) -> list[str]:
    """Physical lines as an editor counts them: split on \\n only (JSON strings and tokens may hold
    U+2028 or U+0085, which str.splitlines would also split on), a trailing \\r dropped."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# ---------------------------------------------------------------------------------------------
# Tables: rows of named values from CSV, TSV, JSON Lines or a JSON array


@dataclass
class _Row:
    line: int
    values: dict[str, Any]
    where: str | None = None  # "record 3" inside a JSON array


@dataclass
class _Table:
    path: Path
    format: str  # "csv" | "tsv" | "jsonl" | "json"
    columns: list[str] | None  # the header of a CSV/TSV; None for JSON (fields vary per record)
    header_line: int | None
    rows: list[_Row]
    conll: bool = False  # the file looks like a CoNLL token/tag file: say so if its columns are missing

    @property
    def noun(self) -> str:
        return "column" if self.columns is not None else "field"

    def error(self, reason: str, row: _Row | None = None, field: str | None = None) -> DataError:
        return DataError(reason, path=self.path, line=None if row is None else row.line,
                         where=None if row is None else row.where, field=field, noun=self.noun)

    def require_columns(self, names: Sequence[str]) -> None:
        """For CSV/TSV, fail once at the header if a needed column is missing."""
        if self.columns is None:
            return
        for name in names:
            if name not in self.columns:
                hint = f"; {CONLL_HINT}" if self.conll else ""
                raise DataError(f"no column {name!r}; the header has {_list(self.columns)}{hint}", path=self.path,
                                line=self.header_line)

    def missing(self, row: _Row, name: str) -> DataError:
        found = _list(list(row.values))
        return self.error(f"missing field; the record has {found}", row, name)


def _list(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names) if names else "no columns"


CONLL_HINT = ("this looks like CoNLL (a token and a tag per line, a blank line between sentences): to train a "
              "tagger on it, use `bertkit finetune ner`")


def _looks_like_conll(text: str) -> bool:
    """Most of the first lines are a few whitespace-separated columns ending in a tag (O, B-PER, ...)."""
    lines = [line for line in _lines(text[:20_000]) if line.strip() and not line.startswith("-DOCSTART-")][:50]
    tagged = sum(1 for line in lines if 2 <= len(cols := _columns(line)) <= 6 and _TAG.fullmatch(cols[-1]))
    return len(lines) >= 2 and tagged >= 0.9 * len(lines)


def _table_format(path: Path) -> str:
    ext, _ = _split_suffix(path)
    if ext not in _TABLE_FORMATS:
        hint = ""
        if ext in (".txt", ".conll", ".iob", ".bio", ".tag"):
            hint = f"; {CONLL_HINT}" if path.is_file() and _looks_like_conll(_read_text(path)) else ""
        raise DataError(f"unsupported file type {ext or '(no extension)'!r}: a table is a .csv, .tsv, .jsonl or .json "
                        f"file, optionally .gz/.bz2/.xz compressed{hint}", path=path)
    return _TABLE_FORMATS[ext]


def _read_rows(path: Path, quoting: bool = True) -> _Table:
    fmt = _table_format(path)
    text = _read_text(path)
    if not text.strip():
        raise DataError("the file is empty", path=path)
    if fmt in ("csv", "tsv"):
        table = _csv_rows(path, text, _sniff_delimiter(path, text, fmt), quoting)
        table.conll = _looks_like_conll(text)
    else:
        table = _json_rows(path, text, fmt)
    if not table.rows:
        raise DataError("the file has a header but no data rows" if table.columns is not None else "the file has no records",
                        path=path)
    return table


def _sniff_delimiter(path: Path, text: str, fmt: str) -> str:
    """The table's format as its header shows it: a .csv whose first line has tabs and no commas is read as
    tab-separated (and a .tsv with commas and no tabs as comma-separated), with a warning."""
    header = next((line for line in _lines(text[:100_000]) if line.strip()), "")
    named, other, sign = ("csv", "tsv", ",") if fmt == "csv" else ("tsv", "csv", "\t")
    unexpected = "\t" if fmt == "csv" else ","
    if sign not in header and unexpected in header:
        log.warning("%s: named .%s, but its first line has %s and no %s: read as %s", path, named,
                    "tabs" if fmt == "csv" else "commas", "commas" if fmt == "csv" else "tabs",
                    "tab-separated" if fmt == "csv" else "comma-separated")
        return other
    return fmt


def _csv_rows(path: Path, text: str, fmt: str, quoting: bool) -> _Table:
    delimiter = "," if fmt == "csv" else "\t"
    # A field can be as long as the file (a 1 MB review); the csv module's default cap is 128 KiB.
    limit = csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    try:
        return _csv_table(path, text, fmt, quoting, delimiter)
    finally:
        csv.field_size_limit(limit)


def _csv_table(path: Path, text: str, fmt: str, quoting: bool, delimiter: str) -> _Table:
    if quoting:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=csv.QUOTE_NONE)
    header: list[str] | None = None
    header_line = None
    rows: list[_Row] = []
    consumed = 0  # physical lines read so far: a record starts on the line after
    while True:
        start = consumed + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            reason, line = _csv_hint(str(e), start, reader.line_num)
            raise DataError(reason, path=path, line=line) from None
        consumed = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue  # a blank line
        if header is None:
            header = [c.strip() for c in cells]
            header_line = start
            seen: dict[str, int] = {}
            for i, name in enumerate(header):
                if name and name in seen:
                    raise DataError(f"column {name!r} appears twice in the header (columns {seen[name] + 1} and {i + 1})",
                                    path=path, line=start)
                seen[name] = i
            continue
        if len(cells) != len(header):
            sep = "','" if fmt == "csv" else "tab"
            hint = (f" (a {sep} inside a text that is not in double quotes?)" if len(cells) > len(header)
                    else " (a missing separator, or a line break inside a text that is not in double quotes?)")
            raise DataError(f"{len(cells)} fields, but the header (line {header_line}) has {len(header)} columns{hint}",
                            path=path, line=start)
        rows.append(_Row(start, dict(zip(header, cells, strict=True))))
    if header is None:
        raise DataError("the file is empty", path=path)
    return _Table(path, fmt, header, header_line, rows)


def _csv_hint(message: str, start: int, now: int) -> tuple[str, int]:
    """A reason for a csv.Error, and the line to blame: where the record starts for a quote never
    closed, else the line the parser was on."""
    if "unexpected end of data" in message or "field larger than field limit" in message:
        return (f"malformed CSV ({message}): a double quote opened in the record that starts on this line is never "
                f"closed, so everything up to line {now} was read as one field", start)
    if "expected after" in message:
        return (f"malformed CSV ({message}): a field that starts with a double quote has text after its closing "
                'quote; inside a quoted field write a quote as "" (or, for a TSV whose texts hold raw quotes, '
                "pass quoting=False)", now)
    where = f" (in the record that starts on line {start})" if start != now else ""
    return f"malformed CSV: {message}{where}", now


def _json_rows(path: Path, text: str, fmt: str) -> _Table:
    stripped = text.lstrip()
    if fmt == "json" and stripped.startswith("["):
        return _Table(path, fmt, None, None, _json_array_rows(path, text))
    lines = _lines(text)
    rows: list[_Row] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            if not rows and fmt == "json":
                # A .json file that is not JSON Lines: one document (pretty-printed, or an object).
                _json_document_error(path, text)
            hint = ""
            if line.strip() in ("{", "[") or (not rows and e.msg.startswith(("Expecting property name", "Unterminated"))):
                hint = ("; JSON Lines needs one complete JSON object per line (this looks like a pretty-printed "
                        "JSON document)")
            raise DataError(f"invalid JSON: {e.msg} (column {e.colno}){hint}", path=path, line=number) from None
        if not isinstance(value, dict):
            raise DataError(f"expected a JSON object ({{...}}), found {_kind(value)}", path=path, line=number)
        rows.append(_Row(number, value))
    return _Table(path, fmt, None, None, rows)


def _json_document_error(path: Path, text: str) -> None:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno) from None
    hint = " (it looks like SQuAD: for question answering use `bertkit finetune qa`)" if isinstance(document, dict) and "data" in document else ""
    raise DataError(f"the file holds a single JSON {'object' if isinstance(document, dict) else _kind(document)}, "
                    f"not records: expected JSON Lines (one object per line) or a JSON array of objects{hint}",
                    path=path, line=1)


_WS = re.compile(r"\s*")


def _json_array_rows(path: Path, text: str) -> list[_Row]:
    """Parse ``[ {...}, {...} ]`` element by element, so each record knows the line it starts on."""
    decoder = json.JSONDecoder()
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def line_at(pos: int) -> int:
        lo, hi = 0, len(newlines)
        while lo < hi:
            mid = (lo + hi) // 2
            if newlines[mid] < pos:
                lo = mid + 1
            else:
                hi = mid
        return lo + 1

    def fail(message: str, pos: int) -> DataError:
        return DataError(message, path=path, line=line_at(pos))

    pos = _WS.match(text, 0).end() + 1  # past "["
    pos = _WS.match(text, pos).end()
    rows: list[_Row] = []
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                hint = " (a trailing comma before ']'?)" if text.startswith("]", pos) else ""
                raise DataError(f"invalid JSON: {e.msg} (column {e.colno}){hint}", path=path, line=e.lineno) from None
            where = f"record {len(rows) + 1}"
            if not isinstance(value, dict):
                raise DataError(f"expected a JSON object ({{...}}), found {_kind(value)}", path=path,
                                line=line_at(pos), where=where)
            rows.append(_Row(line_at(pos), value, where))
            pos = _WS.match(text, end).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise fail("invalid JSON: expected ',' or ']' after a record", pos)
    pos = _WS.match(text, pos).end()
    if pos < len(text):
        raise fail("invalid JSON: extra data after the closing ']'", pos)
    return rows


# ---------------------------------------------------------------------------------------------
# read_table


def read_table(path: str | os.PathLike, *, text_column: str = "text", pair_column: str = "text_pair",
               label_column: str = "label", require_label: bool = True, quoting: bool = True) -> list[Record]:
    """Read a text classification / regression / multi-label table.

    The format comes from the extension: ``.csv``, ``.tsv`` (read with the ``csv`` module: quoted
    fields may hold separators, quotes written ``""`` and line breaks), ``.jsonl`` (JSON Lines; blank
    lines skipped) or ``.json`` (JSON Lines, or one JSON array of objects). Rules:

    * ``text_column`` must exist and hold non-blank text in every record.
    * ``pair_column`` is optional: if the default ``"text_pair"`` column is absent every
      ``text_pair`` is None (a pair column named explicitly must exist); if present, every cell must
      hold non-blank text (in JSON a record may also leave it out or null, but then all records must).
    * ``label_column``: with ``require_label`` every record needs a label; without it a missing column
      or an empty cell gives None. CSV/TSV labels are strings as written (whitespace stripped; a label
      containing ``|`` or ``,`` stays one string). JSON labels may be strings, integers and booleans
      (kept as strings: ``"3"``, ``"true"``), other numbers (kept as floats, for regression) or lists
      of strings (multi-label).
    * ``quoting=False`` reads CSV/TSV with no quote handling at all, for TSVs (GLUE-style) whose
      texts contain raw double quotes.

    Every problem raises :class:`DataError` naming the file, line and column.
    """
    return _read_table(path, text_column=text_column, pair_column=pair_column, label_column=label_column,
                       require_label=require_label, quoting=quoting)


def _read_table(path: str | os.PathLike, *, text_column: str = "text", pair_column: str = "text_pair",
                label_column: str = "label", require_label: bool = True, quoting: bool = True,
                skip: Callable[[dict[str, Any]], bool] | None = None) -> list[Record]:
    """read_table, with ``skip(values)`` choosing rows to leave out before they are checked."""
    path = Path(path)
    table = _read_rows(path, quoting)
    explicit_pair = pair_column != "text_pair"  # a pair column the caller named must exist
    table.require_columns([text_column] + ([pair_column] if explicit_pair else []) +
                          ([label_column] if require_label else []))
    has_pair = table.columns is not None and pair_column in table.columns
    pair_line: int | None = None  # JSON: the first record with a pair, and the first without
    no_pair_line: int | None = None
    records = []
    for row in table.rows:
        if skip is not None and skip(row.values):
            continue
        text = _text_value(table, row, text_column)
        pair = None
        if table.columns is not None:
            if has_pair:
                pair = _text_value(table, row, pair_column)
        elif row.values.get(pair_column) is not None:
            pair = _text_value(table, row, pair_column)
            pair_line = pair_line or row.line
        else:
            no_pair_line = no_pair_line or row.line
        if pair_line is not None and no_pair_line is not None:
            if pair is not None:
                reason = f"this record has a text pair, but the record on line {no_pair_line} has none"
            else:
                reason = f"no text pair, but the record on line {pair_line} has one"
            raise table.error(f"{reason}: either every record has a pair or none does", row, pair_column)
        label = _label_value(table, row, label_column, require_label)
        records.append(Record(text, pair, label, row.line, str(path)))
    if explicit_pair and table.columns is None and records and pair_line is None:
        first = next(row for row in table.rows if skip is None or not skip(row.values))
        raise table.error(f"no record has this pair field (the first has {_list(list(first.values))})", first,
                          pair_column)
    return records


def _text_value(table: _Table, row: _Row, name: str) -> str:
    if name not in row.values:
        raise table.missing(row, name)
    value = row.values[name]
    if value is None:
        raise table.error("expected text, found null", row, name)
    if not isinstance(value, str):
        raise table.error(f"expected a string, found {_kind(value)}", row, name)
    if not value.strip():
        raise table.error("empty text (the cell is blank or whitespace only)" if table.columns is not None
                          else "empty text (blank or whitespace only)", row, name)
    return value


def _label_value(table: _Table, row: _Row, name: str, required: bool) -> Label:
    value = row.values.get(name)
    if isinstance(value, str):
        value = value.strip()
        if value:
            return value
        value = None
    if value is None:
        if not required:
            return None
        if table.columns is None and name not in row.values:
            raise table.missing(row, name)
        raise table.error("missing label (empty)" if table.columns is not None else "missing label (empty or null)",
                          row, name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise table.error(f"label is {value!r}, not a finite number", row, name)
        return value
    if isinstance(value, list):
        labels = []
        for i, item in enumerate(value):
            if isinstance(item, int) and not isinstance(item, bool):
                item = str(item)
            if not isinstance(item, str) or not item.strip():
                raise table.error(f"item {i} of the label list is {_kind(item)}; a multi-label label is a list of "
                                  "non-empty strings", row, name)
            labels.append(item.strip())
        return labels
    raise table.error(f"expected a string, number, boolean or list of strings, found {_kind(value)}", row, name)


# ---------------------------------------------------------------------------------------------
# infer_label_kind


def _as_number(label: Any) -> float | None:
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        value = float(label)
    elif isinstance(label, str):
        try:
            value = float(label)
        except ValueError:
            return None
    else:
        return None
    return value if math.isfinite(value) else None


_WHOLE = re.compile(r"[+-]?[0-9]+")


def _label_form(label: Any) -> str:
    """How a label is written: "name", "whole" (an integer: "3", JSON 3) or "fraction" (a number written with a
    point or exponent whose value is not whole: "0.5", "1e-3", JSON 2.5) or "decimal" (written so, but whole: "5.000")."""
    value = _as_number(label)
    if value is None:
        return "name"
    if isinstance(label, str) and _WHOLE.fullmatch(label.strip()):
        return "whole"
    return "decimal" if value.is_integer() else "fraction"


def infer_label_kind(records: Sequence[Record], *, regression: bool = False) -> LabelKind:
    """Say what kind of task the labels describe, by simple, explicit rules:

    * any label is a list -> ``"multilabel"`` (then every label must be a list);
    * ``regression=True`` -> ``"regression"`` (then every label must be a finite number);
    * names (``"pos"``) or whole numbers (``"0"``/``"1"``, ``"1"``..``"5"`` star ratings, and ``"1.0"``/``"2.0"``)
      -> ``"classification"``; a number with a fraction written like the others (``"5.000"``, ``"3.800"``, as
      STS-B scores are) -> ``"regression"``.

    Labels that do not agree are an error naming a line of each kind: names next to numbers (``"pos"`` beside
    ``"1"``, a JSON string beside a JSON number), and fractions next to integers (``"0.5"`` beside ``"1"``: scores,
    or classes with a typo?), which the caller settles by asking for a kind (``--problem-type``). Records without
    a label (None) are ignored; if none has one, that is an error too.
    """
    labelled = [r for r in records if r.label is not None]
    if not labelled:
        raise DataError("no record has a label, so the label kind cannot be inferred")
    source = labelled[0].source

    def error(reason: str, record: Record) -> DataError:
        return DataError(reason, path=record.source or source, line=record.line, field="label", noun="field")

    lists = [r for r in labelled if isinstance(r.label, list)]
    if lists:
        single = next((r for r in labelled if not isinstance(r.label, list)), None)
        if single is not None:
            raise error(f"a single label {single.label!r}, but the record on line {lists[0].line} has a list of labels "
                        "(multi-label): use lists for every record", single)
        if regression:
            raise error("regression was asked for, but the labels are lists (multi-label)", lists[0])
        return "multilabel"
    if regression:
        bad = next((r for r in labelled if _as_number(r.label) is None), None)
        if bad is not None:
            raise error(f"label {bad.label!r} is not a finite number, but regression was asked for", bad)
        return "regression"
    first: dict[str, Record] = {}
    for record in labelled:
        first.setdefault(_label_form(record.label), record)
    numbers = [first[form] for form in ("whole", "decimal", "fraction") if form in first]
    if "name" in first and numbers:
        name, number = first["name"], numbers[0]
        raise error(f"the labels mix names and numbers: line {name.line} has the name {name.label!r}, line "
                    f"{number.line} the number {number.label!r}; give every record the same kind of label, or pass "
                    "--problem-type classification to read them all as class names", name)
    if "fraction" in first:
        if "whole" in first:
            whole, fraction = first["whole"], first["fraction"]
            raise error(f"the labels mix whole numbers and fractions: line {whole.line} has {whole.label!r} (a class?), "
                        f"line {fraction.line} has {fraction.label!r} (a score?); say which with --problem-type "
                        "classification or --problem-type regression", fraction)
        return "regression"
    return "classification"


# ---------------------------------------------------------------------------------------------
# read_conll

_TAG = re.compile(r"O|[BIESLU]-\S+")


def _columns(line: str) -> list[str]:
    """Tab-separated if the line has a tab (so tokens may hold spaces), else split on runs of spaces.
    Only ASCII space and tab separate: a token may contain any other Unicode (NBSP, U+2028, ...)."""
    line = line.strip(" \t")
    if "\t" in line:
        return [c.strip(" ") for c in re.split(r"\t+", line)]
    return re.split(r" +", line)


def read_conll(path: str | os.PathLike, *, token_column: int = 0, tag_column: int = -1) -> list[Sentence]:
    """Read a CoNLL-style tagging file: one token per line, columns separated by tabs or spaces
    (tabs, if a line has any, so tokens may hold spaces), a blank or whitespace-only line between
    sentences, ``-DOCSTART-`` lines skipped. \\n and \\r\\n line ends both work; the last sentence
    needs no blank line after it.

    Checks: every token line has the same number of columns as the first one (a space inside a
    token of a space-separated file shows up here), at least enough for ``token_column`` and
    ``tag_column``; every tag is ``O`` or ``B-``/``I-``/``E-``/``S-``/``L-``/``U-`` plus an entity type
    (IOB1, BIO/IOB2, IOBES and BILOU all have this shape); the file holds at least one sentence.
    """
    path = Path(path)
    text = _read_text(path)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    width: tuple[int, int] | None = None  # (number of columns, line that set it)

    def flush() -> None:
        nonlocal tokens, tags
        if tokens:
            sentences.append(Sentence(tokens, tags, first_line, str(path)))
        tokens, tags = [], []

    for number, line in enumerate(_lines(text), 1):
        if not line.strip(" \t\r"):
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            flush()
            continue
        cols = _columns(line)
        if width is None:
            width = (len(cols), number)
            try:
                tok_i, tag_i = range(len(cols))[token_column], range(len(cols))[tag_column]
            except IndexError:
                tok_i = tag_i = None
            if tok_i is None or tok_i == tag_i:
                raise DataError(f"too few columns: found {len(cols)} in {line!r}, need a token column ({token_column}) "
                                f"and a separate tag column ({tag_column})", path=path, line=number)
        elif len(cols) != width[0]:
            fewer = len(cols) < width[0]
            hint = "" if fewer or "\t" in line else " (a space inside a token?)"
            raise DataError(f"{'too few' if fewer else 'too many'} columns: found {len(cols)} in {line!r}, but line "
                            f"{width[1]} has {width[0]}{hint}", path=path, line=number)
        tag = cols[tag_i]
        if not _TAG.fullmatch(tag):
            raise DataError(f"invalid tag {tag!r}; expected 'O' or B-/I-/E-/S-/L-/U- and an entity type (e.g. "
                            "'B-PER')", path=path, line=number, field=f"column {tag_i + 1} (tag)", noun="")
        if not tokens:
            first_line = number
        tokens.append(cols[tok_i])
        tags.append(tag)
    flush()
    if not sentences:
        raise DataError("no sentences (the file has no token lines)", path=path)
    return sentences


# ---------------------------------------------------------------------------------------------
# read_squad


def read_squad(path: str | os.PathLike, *, strict: bool = True) -> SquadExamples:
    """Read SQuAD v1.1 or v2.0 JSON into one :class:`QAExample` per question.

    Everything is checked, and a problem is reported with its JSON path, e.g.
    ``data[3].paragraphs[0].qas[2].answers[0].answer_start``: missing keys, wrong types, empty
    contexts/questions/answers, duplicate question ids, an impossible (v2) question with answers or
    a possible one without, and answers whose ``context[answer_start:answer_start + len(text)]`` is
    not ``text`` (the message shows both strings, and where the text does occur).

    ``strict=False`` skips misaligned answers instead (and drops questions left with none), logs a
    warning with the count, and lists their paths in the result's ``skipped_answers`` and
    ``dropped_questions``. Everything else is an error either way.
    """
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise DataError("the file is empty", path=path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno) from None

    def fail(where: str, reason: str) -> DataError:
        return DataError(reason, path=path, field=where or "(top level)", noun="")

    def get(obj: dict, key: str, where: str, kind: type | tuple, kind_name: str, optional: bool = False):
        if key not in obj:
            if optional:
                return None
            raise fail(f"{where}.{key}" if where else key, f"missing key {key!r} (the object has {_list(list(obj))})")
        value = obj[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise fail(f"{where}.{key}" if where else key, f"expected {kind_name}, found {_kind(value)}")
        return value

    if not isinstance(document, dict):
        raise fail("", f"expected a JSON object with a 'data' list (SQuAD format), found {_kind(document)}")
    examples = SquadExamples()
    seen: dict[str, str] = {}
    for a, article in enumerate(get(document, "data", "", list, "a list")):
        aw = f"data[{a}]"
        if not isinstance(article, dict):
            raise fail(aw, f"expected an object, found {_kind(article)}")
        title = get(article, "title", aw, str, "a string", optional=True)
        for p, paragraph in enumerate(get(article, "paragraphs", aw, list, "a list")):
            pw = f"{aw}.paragraphs[{p}]"
            if not isinstance(paragraph, dict):
                raise fail(pw, f"expected an object, found {_kind(paragraph)}")
            context = get(paragraph, "context", pw, str, "a string")
            if not context.strip():
                raise fail(f"{pw}.context", "empty context")
            for q, qa in enumerate(get(paragraph, "qas", pw, list, "a list")):
                qw = f"{pw}.qas[{q}]"
                if not isinstance(qa, dict):
                    raise fail(qw, f"expected an object, found {_kind(qa)}")
                qid = str(get(qa, "id", qw, (str, int), "a string"))
                if not qid.strip():
                    raise fail(f"{qw}.id", "empty id")
                if qid in seen:
                    raise fail(f"{qw}.id", f"duplicate id {qid!r} (also at {seen[qid]})")
                seen[qid] = qw
                question = get(qa, "question", qw, str, "a string")
                if not question.strip():
                    raise fail(f"{qw}.question", "empty question")
                impossible = get(qa, "is_impossible", qw, bool, "true or false", optional=True) or False
                answers: list[tuple[str, int]] = []
                raw_answers = get(qa, "answers", qw, list, "a list")
                for n, answer in enumerate(raw_answers):
                    nw = f"{qw}.answers[{n}]"
                    if not isinstance(answer, dict):
                        raise fail(nw, f"expected an object, found {_kind(answer)}")
                    answer_text = get(answer, "text", nw, str, "a string")
                    start = get(answer, "answer_start", nw, int, "an integer")
                    if not answer_text.strip():
                        raise fail(f"{nw}.text", "empty answer text")
                    found = context[start:start + len(answer_text)] if start >= 0 else ""
                    if found != answer_text:
                        if strict:
                            raise fail(nw, _misaligned(context, answer_text, start, found))
                        examples.skipped_answers.append(nw)
                        continue
                    answers.append((answer_text, start))
                if impossible and raw_answers:
                    raise fail(f"{qw}.answers", f"is_impossible is true, but the question has {len(raw_answers)} "
                                                "answer(s)")
                if not impossible and not answers:
                    if raw_answers:  # all skipped (strict=False)
                        examples.dropped_questions.append(qw)
                        continue
                    raise fail(f"{qw}.answers", "no answers, and is_impossible is not true")
                examples.append(QAExample(qid, question, context, answers, impossible, title, qw))
    if examples.skipped_answers:
        log.warning("%s: skipped %d answer(s) whose text is not at their answer_start (first: %s); %d question(s) "
                    "left with no answer were dropped", path, len(examples.skipped_answers),
                    examples.skipped_answers[0], len(examples.dropped_questions))
    if not examples:
        raise DataError("no questions in the file", path=path)
    return examples


def _misaligned(context: str, text: str, start: int, found: str) -> str:
    if not 0 <= start < len(context):
        message = f"answer_start {start} is outside the context (length {len(context)}); text is {_short(text)}"
    else:
        message = f"answer_start {start} gives {_short(found)} but the answer text is {_short(text)}"
    offsets = [m.start() for m in re.finditer(re.escape(text), context)]
    if offsets:
        nearest = min(offsets, key=lambda o: abs(o - start))
        message += f"; the text occurs at offset {nearest}" + (f" (and {len(offsets) - 1} other place(s))"
                                                               if len(offsets) > 1 else "")
    else:
        message += "; the text does not occur in the context"
    return message + " (strict=False skips such answers)"


# ---------------------------------------------------------------------------------------------
# read_multiple_choice

_ENDING = re.compile(r"ending(\d+)")


def read_multiple_choice(path: str | os.PathLike, *, context_column: str = "context", label_column: str = "label",
                         require_label: bool = True, quoting: bool = True) -> list[MultipleChoiceExample]:
    """Read a SWAG-style multiple-choice table (.csv/.tsv/.jsonl/.json, as :func:`read_table`).

    Columns: ``context``, ``ending0`` .. ``endingN`` (at least two, numbered from 0 without gaps; the
    same number in every record) and ``label``, the index of the right ending (an integer, or a
    string of digits in CSV). ``require_label=False`` accepts a missing label column or empty
    labels (test sets): the label is then None. For the original SWAG CSV (``sent1``/``sent2``),
    make a ``context`` column or pass ``context_column="sent1"``.
    """
    path = Path(path)
    table = _read_rows(path, quoting)
    table.require_columns([context_column] + ([label_column] if require_label else []))

    def endings_of(names: Sequence[str], row: _Row | None) -> list[str]:
        numbers = sorted(int(m.group(1)) for n in names if (m := _ENDING.fullmatch(n)))
        if len(numbers) < 2 or numbers != list(range(len(numbers))):
            found = _list([n for n in names if _ENDING.fullmatch(n)])
            reason = (f"expected columns 'ending0', 'ending1', ... (at least two, numbered from 0 without gaps); "
                      f"found {found if numbers else 'none'} among {_list(list(names))}")
            if row is None:
                raise DataError(reason, path=path, line=table.header_line)
            raise table.error(reason, row)
        return [f"ending{i}" for i in numbers]

    fixed = endings_of(table.columns, None) if table.columns is not None else None
    first: tuple[int, int] | None = None  # (number of endings, line)
    examples = []
    for row in table.rows:
        names = fixed or endings_of(list(row.values), row)
        if first is None:
            first = (len(names), row.line)
        elif len(names) != first[0]:
            raise table.error(f"{len(names)} endings, but the record on line {first[1]} has {first[0]}: every record "
                              "needs the same number of endings", row)
        context = _text_value(table, row, context_column)
        endings = [_text_value(table, row, name) for name in names]
        label = row.values.get(label_column)
        if isinstance(label, str):
            label = label.strip()
            if not label:
                label = None
            elif re.fullmatch(r"[0-9]+", label):
                label = int(label)
            else:
                raise table.error(f"expected the index of the right ending (0..{len(names) - 1}), found {label!r}",
                                  row, label_column)
        if label is None:
            if require_label:
                if table.columns is None and label_column not in row.values:
                    raise table.missing(row, label_column)
                raise table.error("missing label", row, label_column)
        elif not isinstance(label, int) or isinstance(label, bool):
            raise table.error(f"expected the index of the right ending (0..{len(names) - 1}), found {_kind(label)}",
                              row, label_column)
        elif not 0 <= label < len(names):
            raise table.error(f"label {label} is out of range: there are {len(names)} endings (0..{len(names) - 1})",
                              row, label_column)
        examples.append(MultipleChoiceExample(context, endings, label, row.line, str(path)))
    return examples
