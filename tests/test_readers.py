"""bertkit.readers: what real, messy files look like, and the exact errors they get."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import pickle
import re
from pathlib import Path

import pytest

from bertkit.readers import (
    DataError,
    MultipleChoiceExample,
    QAExample,
    Record,
    Sentence,
    infer_label_kind,
    read_conll,
    read_multiple_choice,
    read_squad,
    read_table,
)

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    """Write exactly these characters (no newline translation) as UTF-8, or these bytes."""
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def error(reader, path: Path, **kwargs) -> str:
    """The message of the DataError that reading `path` raises, with the path prefix checked and cut."""
    with pytest.raises(DataError) as info:
        reader(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message[len(f"{path}: "):]


# ---------------------------------------------------------------------------------------------
# read_table: what works


def test_csv_quoted_commas_quotes_and_newlines_report_the_starting_line(tmp_path):
    path = write(tmp_path, "reviews.csv",
                 'text,label\n'
                 '"Great, really great",pos\n'
                 '"He said ""meh""\nand left.\n\nThe end.",neg\n'
                 '\n'
                 'plain text,  neutral \n'
                 '"last, with CRLF inside\r\nthe quotes",pos\n')
    records = read_table(path)
    assert records == [
        Record("Great, really great", None, "pos", 2),
        Record('He said "meh"\nand left.\n\nThe end.', None, "neg", 3),
        Record("plain text", None, "neutral", 8),
        Record("last, with CRLF inside\r\nthe quotes", None, "pos", 9),
    ]
    assert records[0].source == str(path)


def test_csv_labels_stay_one_string_even_with_separators(tmp_path):
    path = write(tmp_path, "a.csv", 'text,label\nx,"sports|news"\ny,"a, b"\nz, 3 \n')
    assert [r.label for r in read_table(path)] == ["sports|news", "a, b", "3"]


def test_csv_with_bom_crlf_and_spaces_in_header(tmp_path):
    path = write(tmp_path, "excel.csv", "\ufeffid, text , label\r\n1,héllo wörld,pos\r\n2,naïve,neg\r\n")
    assert read_table(path) == [Record("héllo wörld", None, "pos", 2), Record("naïve", None, "neg", 3)]


def test_tsv_with_pairs_and_custom_columns(tmp_path):
    path = write(tmp_path, "mnli.tsv", "premise\thypothesis\tgold\nA man eats.\tSomeone eats.\tentailment\n"
                                       '"Quoted\ttab"\tx\tneutral\n')
    records = read_table(path, text_column="premise", pair_column="hypothesis", label_column="gold")
    assert records == [Record("A man eats.", "Someone eats.", "entailment", 2), Record("Quoted\ttab", "x", "neutral", 3)]


def test_tsv_without_quoting_keeps_raw_quotes(tmp_path):
    path = write(tmp_path, "sst.tsv", 'sentence\tlabel\n"the greatest" film ever\t1\nit \'s "fine\t0\n')
    with pytest.raises(DataError):
        read_table(path, text_column="sentence")
    assert [r.text for r in read_table(path, text_column="sentence", quoting=False)] == [
        '"the greatest" film ever', 'it \'s "fine']


def test_absent_pair_column_gives_none_unless_named(tmp_path):
    path = write(tmp_path, "a.csv", "text,label\nx,1\n")
    assert read_table(path)[0].text_pair is None
    assert error(read_table, path, pair_column="hypothesis") == "line 1: no column 'hypothesis'; the header has 'text', 'label'"
    path = write(tmp_path, "a.jsonl", '{"text": "x", "label": 1}\n{"text": "y", "label": 0}\n')
    assert error(read_table, path, pair_column="hypothesis") == (
        "line 1: field 'hypothesis': no record has this pair field (the first has 'text', 'label')")


def test_jsonl_label_types_and_blank_lines(tmp_path):
    path = write(tmp_path, "mixed.jsonl", "\n".join([
        '{"text": "a", "label": "  pos "}',
        '',
        '{"text": "b", "label": 3}',
        '   ',
        '{"text": "c", "label": 0.25}',
        '{"text": "d", "label": true}',
        '{"text": "e", "label": ["sports", " news", 7]}',
        '{"text": "f", "label": []}',
        '{"text": "g\\u2028h", "label": "x", "extra": {"ignored": 1}}\r',
    ]) + "\n")
    records = read_table(path)
    assert [(r.label, r.line) for r in records] == [
        ("pos", 1), ("3", 3), (0.25, 5), ("true", 6), (["sports", "news", "7"], 7), ([], 8), ("x", 9)]
    assert records[-1].text == "g\u2028h"


def test_jsonl_pairs_may_be_absent_or_null_everywhere(tmp_path):
    path = write(tmp_path, "a.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "text_pair": null, "label": "y"}\n')
    assert [r.text_pair for r in read_table(path)] == [None, None]
    path = write(tmp_path, "b.jsonl", '{"text": "a", "text_pair": "p", "label": "x"}\n')
    assert read_table(path)[0].text_pair == "p"


def test_json_array_records_know_their_lines(tmp_path):
    path = write(tmp_path, "array.json", '[\n  {"text": "first", "label": "a"},\n  {\n    "text": "second",\n'
                                         '    "label": "b"\n  }\n]\n')
    assert read_table(path) == [Record("first", None, "a", 2), Record("second", None, "b", 3)]


def test_json_file_holding_json_lines(tmp_path):
    path = write(tmp_path, "lines.json", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    assert [r.text for r in read_table(path)] == ["a", "b"]


def test_compressed_tables(tmp_path):
    content = "text,label\nhello,pos\n".encode()
    gz = write(tmp_path, "a.csv.gz", gzip.compress(content))
    bz = write(tmp_path, "a.csv.bz2", bz2.compress(content))
    assert read_table(gz) == read_table(bz) == [Record("hello", None, "pos", 2)]


def test_labels_optional(tmp_path):
    path = write(tmp_path, "test.csv", "text\nunlabelled\n")
    assert read_table(path, require_label=False) == [Record("unlabelled", None, None, 2)]
    path = write(tmp_path, "partial.csv", "text,label\na,\nb,pos\n")
    assert [r.label for r in read_table(path, require_label=False)] == [None, "pos"]


def test_readers_write_nothing(tmp_path):
    path = write(tmp_path, "a.csv", "text,label\nx,1\n")
    before = sorted(tmp_path.rglob("*"))
    read_table(path)
    with pytest.raises(DataError):
        read_table(write(tmp_path, "b.csv", "text,label\n,1\n"))
    assert sorted(tmp_path.rglob("*")) == sorted([*before, tmp_path / "b.csv"])


# ---------------------------------------------------------------------------------------------
# read_table: every error names file, line and field


@pytest.mark.parametrize("name, content, expected", [
    ("latin1.csv", b"text,label\nok,pos\ncaf\xe9 au lait,neg\n",
     "line 3: invalid UTF-8 byte 0xe9 at column 4 (invalid continuation byte); the file must be UTF-8"),
    ("bom.csv", b"\xef\xbb\xbftext,label\n\xff,pos\n", "line 2: invalid UTF-8 byte 0xff at column 1"),
    ("utf16.csv", "text,label\nx,y\n".encode("utf-16"), "line 1: the file is UTF-16"),
    ("empty.csv", b"", "the file is empty"),
    ("blank.jsonl", b"\n  \n\n", "the file is empty"),
    ("header.csv", b"text,label\n\n", "the file has a header but no data rows"),
    ("none.json", b"[]", "the file has no records"),
    ("cols.csv", b"sentence,label\nx,1\n", "line 1: no column 'text'; the header has 'sentence', 'label'"),
    ("nolabel.tsv", b"text\tscore\nx\t1\n", "line 1: no column 'label'; the header has 'text', 'score'"),
    ("dup.csv", b"text,label,text\nx,1,y\n", "line 1: column 'text' appears twice in the header (columns 1 and 3)"),
    ("emptytext.csv", b"text,label\nok,1\n,0\n", "line 3: column 'text': empty text (the cell is blank or whitespace only)"),
    ("spaces.tsv", b"text\tlabel\nok\t1\n \t0\n", "line 3: column 'text': empty text"),
    ("pair.csv", b"text,text_pair,label\na,b,1\nc,  ,0\n", "line 3: column 'text_pair': empty text"),
    ("label.csv", b'text,label\n"multi\nline",1\n"x", \n', "line 4: column 'label': missing label (empty)"),
    ("fields.csv", b"text,label\nHello, world,pos\n",
     "line 2: 3 fields, but the header (line 1) has 2 columns (a ',' inside a text that is not in double quotes?)"),
    ("short.tsv", b"text\tlabel\nHello\n", "line 2: 1 fields, but the header (line 1) has 2 columns"),
    ("open.csv", b'text,label\nok,1\n"never closed,1\nmore,0\n',
     "line 3: malformed CSV (unexpected end of data): a double quote opened in the record that starts on this line"
     " is never closed, so everything up to line 4 was read as one field"),
    ("after.csv", b'text,label\n"Hi," he said,1\n', "line 2: malformed CSV (',' expected after '\"')"),
    ("bad.jsonl", b'{"text": "a", "label": 1}\n\n{"text": "b" "label": 2}\n',
     "line 3: invalid JSON: Expecting ',' delimiter (column 14)"),
    ("pretty.jsonl", b'{\n  "text": "a",\n  "label": 1\n}\n', "line 1: invalid JSON: Expecting property name enclosed"
     " in double quotes (column 2); JSON Lines needs one complete JSON object per line"),
    ("list.jsonl", b'{"text": "a", "label": 1}\n["b", 2]\n', "line 2: expected a JSON object ({...}), found a list"),
    ("nofield.jsonl", b'{"text": "a", "label": 1}\n{"sentence": "b", "label": 2}\n',
     "line 2: field 'text': missing field; the record has 'sentence', 'label'"),
    ("nolabel.jsonl", b'{"text": "a"}\n', "line 1: field 'label': missing field; the record has 'text'"),
    ("nulllabel.jsonl", b'{"text": "a", "label": null}\n', "line 1: field 'label': missing label (empty or null)"),
    ("number.jsonl", b'{"text": 42, "label": 1}\n', "line 1: field 'text': expected a string, found number 42"),
    ("ws.jsonl", b'{"text": " \\n\\t", "label": 1}\n', "line 1: field 'text': empty text (blank or whitespace only)"),
    ("obj.jsonl", b'{"text": "a", "label": {"x": 1}}\n',
     "line 1: field 'label': expected a string, number, boolean or list of strings, found an object"),
    ("nan.jsonl", b'{"text": "a", "label": NaN}\n', "line 1: field 'label': label is nan, not a finite number"),
    ("multi.jsonl", b'{"text": "a", "label": ["x", null]}\n',
     "line 1: field 'label': item 1 of the label list is null; a multi-label label is a list of non-empty strings"),
    ("pairs.jsonl", b'{"text": "a", "text_pair": "b", "label": 1}\n{"text": "c", "label": 0}\n',
     "line 2: field 'text_pair': no text pair, but the record on line 1 has one: either every record has a pair or"
     " none does"),
    ("array.json", b'[\n {"text": "a", "label": 1},\n {"text": "", "label": 2}\n]',
     "line 3 (record 2): field 'text': empty text"),
    ("comma.json", b'[\n {"text": "a", "label": 1},\n]\n',
     "line 3: invalid JSON: Expecting value (column 1) (a trailing comma before ']'?)"),
    ("squad.json", b'{\n "version": "1.1",\n "data": []\n}\n', "line 1: the file holds a single JSON object, not "
     "records: expected JSON Lines (one object per line) or a JSON array of objects (it looks like SQuAD: for question "
     "answering use `bertkit finetune qa`)"),
    ("broken.json", b'[{"text": "a"]', "line 1: invalid JSON: Expecting ',' delimiter (column 14)"),
    ("notes.txt", b"text,label\n", "unsupported file type '.txt': a table is a .csv, .tsv, .jsonl or .json file"),
    ("broken.csv.gz", b"not gzip at all", "cannot decompress this .gz file"),
])
def test_table_errors(tmp_path, name, content, expected):
    message = error(read_table, write(tmp_path, name, content))
    assert message.startswith(expected), message


def test_data_error_carries_its_location_and_pickles(tmp_path):
    path = write(tmp_path, "a.csv", "text,label\nok,1\n  ,0\n")
    with pytest.raises(ValueError) as info:  # a DataError is a ValueError
        read_table(path)
    e = info.value
    assert isinstance(e, DataError)
    assert (e.path, e.line, e.field) == (str(path), 3, "text")
    assert e.reason == "empty text (the cell is blank or whitespace only)"
    copy = pickle.loads(pickle.dumps(e))
    assert isinstance(copy, DataError) and str(copy) == str(e) and copy.line == 3


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------------
# infer_label_kind


def _records(*labels):
    return [Record("t", None, label, i + 1, "f.jsonl") for i, label in enumerate(labels)]


@pytest.mark.parametrize("labels, kind", [
    (("pos", "neg"), "classification"),
    (("0", "1", "1"), "classification"),
    (("1.0", "2.0", "5"), "classification"),  # whole numbers are classes unless regression is asked for
    ((["a"], [], ["a", "b"]), "multilabel"),
    (("0.5", "3.25", 4.25), "regression"),
    ((0.0, 1.0, 2.5), "regression"),
    (("5.000", "3.800", "1e-3"), "regression"),  # STS-B scores: whole values written as decimals are scores too
    (("pos", None), "classification"),
])
def test_infer_label_kind(labels, kind):
    assert infer_label_kind(_records(*labels)) == kind


def test_infer_label_kind_on_request_and_mixtures():
    assert infer_label_kind(_records("1", "2", "5"), regression=True) == "regression"
    with pytest.raises(DataError, match=re.escape("f.jsonl: line 2: field 'label': the labels mix names and numbers: "
                                                  "line 2 has the name 'good', line 1 the number '0.5'")):
        infer_label_kind(_records("0.5", "good"))
    with pytest.raises(DataError, match=re.escape("f.jsonl: line 1: field 'label': label 'pos' is not a finite number, "
                                                  "but regression was asked for")):
        infer_label_kind(_records("pos"), regression=True)
    with pytest.raises(DataError, match=re.escape("f.jsonl: line 2: field 'label': a single label 'x', but the record "
                                                  "on line 1 has a list of labels")):
        infer_label_kind(_records(["x"], "x"))
    with pytest.raises(DataError, match="no record has a label"):
        infer_label_kind(_records(None, None))


def test_infer_label_kind_on_a_real_read(tmp_path):
    path = write(tmp_path, "stsb.tsv", "text\ttext_pair\tlabel\na\tb\t5.000\nc\td\t3.800\n")
    assert infer_label_kind(read_table(path)) == "regression"


def test_labels_that_mix_names_and_numbers_are_an_error_naming_both(tmp_path):
    # before: three classes ('0', '1', 'pos') and a run that learnt them, exit 0
    path = write(tmp_path, "mixed.csv", "text,label\ngood,pos\nbad,0\nfine,1\n")
    with pytest.raises(DataError) as info:
        infer_label_kind(read_table(path))
    assert str(info.value) == (f"{path}: line 2: field 'label': the labels mix names and numbers: line 2 has the name "
                               "'pos', line 3 the number '0'; give every record the same kind of label, or pass "
                               "--problem-type classification to read them all as class names")
    path = write(tmp_path, "mixed.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "neg"}\n')
    with pytest.raises(DataError, match=re.escape("mixed.jsonl: line 2: field 'label': the labels mix names and numbers: "
                                                  "line 2 has the name 'neg', line 1 the number '1'")):
        infer_label_kind(read_table(path))


def test_a_fraction_among_whole_number_labels_does_not_make_a_regression(tmp_path):
    path = write(tmp_path, "frac.csv", "text,label\na,1\nb,0\nc,1\nd,0.5\n")  # before: regression, silently
    with pytest.raises(DataError) as info:
        infer_label_kind(read_table(path))
    assert str(info.value) == (f"{path}: line 5: field 'label': the labels mix whole numbers and fractions: line 2 has "
                               "'1' (a class?), line 5 has '0.5' (a score?); say which with --problem-type "
                               "classification or --problem-type regression")
    assert infer_label_kind(read_table(path), regression=True) == "regression"  # --problem-type regression


def test_a_csv_field_of_a_megabyte_is_read_whole(tmp_path):
    text = "a long review " * 75_000  # 1.05 MB; the csv module's default cap is 128 KiB
    path = write(tmp_path, "long.csv", f'text,label\n"{text}",pos\nshort,neg\n')
    records = read_table(path)  # before: "malformed CSV (field larger than field limit (131072))"
    assert [r.text for r in records] == [text, "short"] and records[1].line == 3
    import csv
    assert csv.field_size_limit() == 131072  # the module-wide setting is left as it was


def test_a_tsv_named_csv_is_read_as_tab_separated(tmp_path, caplog):
    content = "text\tlabel\na good, long film\tpos\nbad\tneg\n"
    path = write(tmp_path, "tabs.csv", content)  # before: "no column 'text'; the header has 'text\tlabel'"
    with caplog.at_level(logging.WARNING):
        records = read_table(path)
    assert records == read_table(write(tmp_path, "tabs.tsv", content))
    assert [r.text for r in records] == ["a good, long film", "bad"]
    assert f"{path}: named .csv, but its first line has tabs and no commas: read as tab-separated" in caplog.text


@pytest.mark.parametrize("name, content, where", [
    ("train.conll", "EU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\nBlackburn I-PER\n",
     "unsupported file type '.conll': a table is a .csv, .tsv, .jsonl or .json file, optionally .gz/.bz2/.xz compressed"),
    ("train.tsv", "EU\tB-ORG\nrejects\tO\n\nPeter\tB-PER\nBlackburn\tI-PER\n",
     "line 1: no column 'text'; the header has 'EU', 'B-ORG'"),
])
def test_conll_given_as_a_table_says_so_without_internal_names(tmp_path, name, content, where):
    path = write(tmp_path, name, content)
    message = error(read_table, path)
    assert message == (f"{where}; this looks like CoNLL (a token and a tag per line, a blank line between "
                       "sentences): to train a tagger on it, use `bertkit finetune ner`")
    assert "read_" not in message
    plain = write(tmp_path, "notes.txt", "just some\nplain text\n")
    assert "CoNLL" not in error(read_table, plain)


# ---------------------------------------------------------------------------------------------
# read_conll


def test_conll_docstart_crlf_and_no_final_blank_line(tmp_path):
    path = write(tmp_path, "ner.conll", "-DOCSTART- -X- -X- O\r\n\r\nEU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\r\n"
                                        "\r\n\r\n-DOCSTART- -X- -X- O\r\nPeter NNP B-NP B-PER\r\nBlackburn NNP I-NP I-PER")
    assert read_conll(path) == [Sentence(["EU", "rejects"], ["B-ORG", "O"], 3),
                                Sentence(["Peter", "Blackburn"], ["B-PER", "I-PER"], 8)]


def test_conll_allennlp_fixture():
    sentences = read_conll(FIXTURES / "allennlp_conll2003.txt")
    assert [s.tokens for s in sentences] == [["U.N.", "official", "Ekeus", "heads", "for", "Baghdad", "."],
                                             ["AI2", "engineer", "Joel", "lives", "in", "Seattle", "."]]
    assert sentences[0].tags == ["I-ORG", "O", "I-PER", "O", "O", "I-LOC", "O"]  # IOB1 has the same shape
    assert [s.line for s in sentences] == [3, 13]
    assert read_conll(FIXTURES / "allennlp_conll2003.txt", token_column=0, tag_column=3) == sentences


def test_conll_tabs_allow_spaces_and_any_unicode_in_tokens(tmp_path):
    # A whitespace-only (tab) line separates sentences, as in the WNUT files.
    path = write(tmp_path, "tweets.txt", "New York\tB-geo-loc\n\u00a0\tO\n\t\n#NYC\tS-other\n\U0001f600\tO\nx\u2028y\tO\n")
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [["New York", "\u00a0"], ["#NYC", "\U0001f600", "x\u2028y"]]
    assert [s.line for s in sentences] == [1, 4]


def test_conll_iobes_and_bilou_tags(tmp_path):
    path = write(tmp_path, "a.conll", "a B-X\nb E-X\nc S-Y\nd L-Z\ne U-Z\nf O\n")
    assert read_conll(path)[0].tags == ["B-X", "E-X", "S-Y", "L-Z", "U-Z", "O"]


@pytest.mark.parametrize("content, expected", [
    ("John B-PER\nSmith B_PER\n", "line 2: column 2 (tag): invalid tag 'B_PER'; expected 'O' or B-/I-/E-/S-/L-/U- and "
                                  "an entity type (e.g. 'B-PER')"),
    ("John X\n", "line 1: column 2 (tag): invalid tag 'X'"),
    ("John B-\n", "line 1: column 2 (tag): invalid tag 'B-'"),
    ("John NNP\n", "line 1: column 2 (tag): invalid tag 'NNP'"),
    ("ok O\n\nJohn\n", "line 3: too few columns: found 1 in 'John', but line 1 has 2"),
    ("John\n", "line 1: too few columns: found 1 in 'John', need a token column (0) and a separate tag column (-1)"),
    ("ok O\nNew York B-LOC\n", "line 2: too many columns: found 3 in 'New York B-LOC', but line 1 has 2 (a space "
                               "inside a token?)"),
    ("-DOCSTART- -X- O\n\n\n", "no sentences (the file has no token lines)"),
    ("", "no sentences"),
])
def test_conll_errors(tmp_path, content, expected):
    message = error(read_conll, write(tmp_path, "bad.conll", content))
    assert message.startswith(expected), message


def test_conll_encoding_error(tmp_path):
    message = error(read_conll, write(tmp_path, "bad.conll", b"ok O\nM\xfcnchen B-LOC\n"))
    assert message.startswith("line 2: invalid UTF-8 byte 0xfc at column 2")


# ---------------------------------------------------------------------------------------------
# read_squad


def test_squad_v1_allennlp_fixture():
    examples = read_squad(FIXTURES / "allennlp_squad.json")
    assert len(examples) == 5 and examples.skipped_answers == []
    first = examples[0]
    assert (first.id, first.title, first.is_impossible) == ("5733be284776f41900661182", "University_of_Notre_Dame", False)
    assert first.answers == [("Saint Bernadette Soubirous", 515)]
    for ex in examples:
        assert isinstance(ex, QAExample)
        for text, start in ex.answers:
            assert ex.context[start:start + len(text)] == text
    assert len(examples[1].answers) == 3
    assert examples[1].where == "data[0].paragraphs[0].qas[1]"


def test_squad_v2_fixture_with_impossible_questions_and_unicode_offsets():
    examples = read_squad(FIXTURES / "squad_v2.json")
    assert [(e.id, e.is_impossible, len(e.answers)) for e in examples] == [
        ("eth-1", False, 2), ("eth-2", False, 1), ("eth-3", True, 0), ("eth-4", False, 1), ("nor-1", False, 1),
        ("nor-2", True, 0)]
    (text, start), = examples[3].answers
    assert text == "taught there" and examples[3].context[start:start + len(text)] == text  # after an emoji


def squad(qas, context="The cat sat on the mat."):
    return json.dumps({"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]},
                      indent=1)


def qa(id="q1", answers=(("cat", 4),), question="Who sat?", **extra):
    return {"id": id, "question": question, "answers": [{"text": t, "answer_start": s} for t, s in answers], **extra}


def test_squad_misaligned_answer(tmp_path):
    path = write(tmp_path, "s.json", squad([qa(), qa("q2", [("mat", 4)])]))
    assert error(read_squad, path) == (
        "data[0].paragraphs[0].qas[1].answers[0]: answer_start 4 gives 'cat' but the answer text is 'mat'; the text "
        "occurs at offset 19 (strict=False skips such answers)")


def test_squad_lenient_skips_misaligned_answers_and_says_so(tmp_path, caplog):
    path = write(tmp_path, "s.json", squad([qa(), qa("q2", [("mat", 4)]), qa("q3", [("cat", 4), ("sat", 0)])]))
    with caplog.at_level(logging.WARNING, logger="bertkit.readers"):
        examples = read_squad(path, strict=False)
    assert [e.id for e in examples] == ["q1", "q3"]
    assert examples[1].answers == [("cat", 4)]
    assert examples.skipped_answers == ["data[0].paragraphs[0].qas[1].answers[0]", "data[0].paragraphs[0].qas[2].answers[1]"]
    assert examples.dropped_questions == ["data[0].paragraphs[0].qas[1]"]
    assert "skipped 2 answer(s)" in caplog.text and "1 question(s)" in caplog.text


@pytest.mark.parametrize("qas, expected", [
    ([qa(), qa("q1")], "data[0].paragraphs[0].qas[1].id: duplicate id 'q1' (also at data[0].paragraphs[0].qas[0])"),
    ([{"id": "q1", "question": "Who?", "answers": [{"text": "cat"}]}],
     "data[0].paragraphs[0].qas[0].answers[0].answer_start: missing key 'answer_start' (the object has 'text')"),
    ([{"id": "q1", "question": "Who?", "answers": [{"text": "cat", "answer_start": "4"}]}],
     "data[0].paragraphs[0].qas[0].answers[0].answer_start: expected an integer, found string '4'"),
    ([{"question": "Who?", "answers": []}], "data[0].paragraphs[0].qas[0].id: missing key 'id'"),
    ([{"id": "q1", "question": "Who?"}], "data[0].paragraphs[0].qas[0].answers: missing key 'answers'"),
    ([qa(question="  ")], "data[0].paragraphs[0].qas[0].question: empty question"),
    ([qa(answers=[])], "data[0].paragraphs[0].qas[0].answers: no answers, and is_impossible is not true"),
    ([qa(is_impossible=True)], "data[0].paragraphs[0].qas[0].answers: is_impossible is true, but the question has 1"),
    ([qa(is_impossible="no")], "data[0].paragraphs[0].qas[0].is_impossible: expected true or false, found string 'no'"),
    ([qa(answers=[("dog", 4)])], "data[0].paragraphs[0].qas[0].answers[0]: answer_start 4 gives 'cat' but the answer "
                                 "text is 'dog'; the text does not occur in the context"),
    ([qa(answers=[("cat", 99)])], "data[0].paragraphs[0].qas[0].answers[0]: answer_start 99 is outside the context "
                                  "(length 23)"),
    ([], "no questions in the file"),
])
def test_squad_errors(tmp_path, qas, expected):
    message = error(read_squad, write(tmp_path, "s.json", squad(qas)))
    assert message.startswith(expected), message


@pytest.mark.parametrize("content, expected", [
    ('{"data": [{"title": "T"}]}', "data[0].paragraphs: missing key 'paragraphs' (the object has 'title')"),
    ('{"data": [{"paragraphs": [{"qas": []}]}]}', "data[0].paragraphs[0].context: missing key 'context'"),
    ('{"data": [{"paragraphs": [{"context": " ", "qas": []}]}]}', "data[0].paragraphs[0].context: empty context"),
    ('{"version": "1.1"}', "data: missing key 'data' (the object has 'version')"),
    ('[{"text": "a"}]', "(top level): expected a JSON object with a 'data' list (SQuAD format), found a list"),
    ('{"data": [\n  {"paragraphs": [}\n]}', "line 2: invalid JSON: Expecting value (column 19)"),
])
def test_squad_structure_errors(tmp_path, content, expected):
    message = error(read_squad, write(tmp_path, "s.json", content))
    assert message.startswith(expected), message


# ---------------------------------------------------------------------------------------------
# read_multiple_choice


def test_multiple_choice_csv_and_jsonl(tmp_path):
    path = write(tmp_path, "swag.csv", 'context,ending0,ending1,ending2,label\n"She opens the door,",she walks in.,'
                                       "she flies.,she melts.,0\nHe sits.,He stands.,He eats.,He sleeps., 2 \n")
    assert read_multiple_choice(path) == [
        MultipleChoiceExample("She opens the door,", ["she walks in.", "she flies.", "she melts."], 0, 2),
        MultipleChoiceExample("He sits.", ["He stands.", "He eats.", "He sleeps."], 2, 3)]
    path = write(tmp_path, "swag.jsonl", '{"context": "c", "ending1": "b", "ending0": "a", "label": 1}\n'
                                         '{"context": "d", "ending0": "x", "ending1": "y", "label": "0"}\n')
    assert [(e.endings, e.label) for e in read_multiple_choice(path)] == [(["a", "b"], 1), (["x", "y"], 0)]


def test_multiple_choice_without_labels(tmp_path):
    path = write(tmp_path, "test.csv", "context,ending0,ending1\nc,a,b\n")
    assert read_multiple_choice(path, require_label=False)[0].label is None
    assert error(read_multiple_choice, path) == "line 1: no column 'label'; the header has 'context', 'ending0', 'ending1'"


@pytest.mark.parametrize("name, content, expected", [
    ("gap.csv", "context,ending0,ending2,label\nc,a,b,0\n", "line 1: expected columns 'ending0', 'ending1', ... (at "
     "least two, numbered from 0 without gaps); found 'ending0', 'ending2' among 'context', 'ending0', 'ending2', 'label'"),
    ("count.jsonl", '{"context": "c", "ending0": "a", "ending1": "b", "label": 0}\n\n'
                    '{"context": "c", "ending0": "a", "ending1": "b", "ending2": "z", "label": 0}\n',
     "line 3: 3 endings, but the record on line 1 has 2: every record needs the same number of endings"),
    ("range.csv", "context,ending0,ending1,label\nc,a,b,2\n",
     "line 2: column 'label': label 2 is out of range: there are 2 endings (0..1)"),
    ("word.csv", "context,ending0,ending1,label\nc,a,b,first\n",
     "line 2: column 'label': expected the index of the right ending (0..1), found 'first'"),
    ("float.jsonl", '{"context": "c", "ending0": "a", "ending1": "b", "label": 1.0}\n',
     "line 1: field 'label': expected the index of the right ending (0..1), found number 1.0"),
    ("empty.csv", "context,ending0,ending1,label\nc,a, ,1\n", "line 2: column 'ending1': empty text"),
    ("nolabel.csv", "context,ending0,ending1,label\nc,a,b,\n", "line 2: column 'label': missing label"),
    ("ctx.csv", "sent1,ending0,ending1,label\nc,a,b,1\n", "line 1: no column 'context'; the header has 'sent1'"),
])
def test_multiple_choice_errors(tmp_path, name, content, expected):
    message = error(read_multiple_choice, write(tmp_path, name, content))
    assert message.startswith(expected), message
