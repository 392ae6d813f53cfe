"""`bertkit finetune classify`, `predict` and `evaluate` end to end on a tiny model, and their bad input."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

from bertkit import BertForSequenceClassification
from bertkit.cli import main
from bertkit.readers import Record
from bertkit.tasks.classify import build_labels, label_kind

transformers = pytest.importorskip("transformers")


def write_csv(path: Path, rows: list[tuple[str, str]], header=("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sentiment_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        cue = rng.choice(["good", "great"] if label == "pos" else ["bad", "awful"])
        filler = " ".join(rng.choice(["the", "cat", "dog", "film", "sat", "on", "a", "mat"]) for _ in range(rng.randint(1, 6)))
        rows.append((f"{filler} {cue} {filler}", label))
    return rows


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    return write_csv(tmp_path / "train.csv", sentiment_rows(160, 0)), write_csv(tmp_path / "dev.csv", sentiment_rows(60, 1))


def finetune_args(model: Path, train: Path, dev: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "classify", "--model", str(model), "--train", str(train), "--eval", str(dev), "--output",
            str(out), "--epochs", "8", "--batch-size", "16", "--lr", "3e-3", "--max-length", "32", "--seed", "0",
            "--quiet", *extra]


def test_finetune_predict_evaluate(tiny_dir: Path, data, tmp_path: Path, capsys) -> None:
    train, dev = data
    out = tmp_path / "clf"
    assert main(finetune_args(tiny_dir, train, dev, out)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["eval_accuracy"] >= 0.9  # the cue words decide the label
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["problem_type"] == "single_label_classification"
    # transformers loads the output directory and agrees with bertkit
    theirs = transformers.BertForSequenceClassification.from_pretrained(out).eval()
    ours = BertForSequenceClassification.from_pretrained(out)
    ids = torch.tensor([[2, 5, 19, 3]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(input_ids=ids).logits, atol=1e-5, rtol=1e-5)

    assert main(["predict", str(out), "the film was great", "the film was awful"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"] and all(0.5 < r["score"] <= 1 for r in rows)

    assert main(["evaluate", str(out), "--data", str(dev)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 60 and metrics["accuracy"] == pytest.approx(summary["eval_accuracy"])
    assert set(metrics) >= {"accuracy", "macro_f1", "mcc", "loss"}


def test_bad_input_is_named_and_nothing_is_written(tiny_dir: Path, data, tmp_path: Path, capsys) -> None:
    train, dev = data
    out = tmp_path / "never"
    bad_label = write_csv(tmp_path / "bad_dev.csv", [("good film", "pos"), ("bad film", "meh")])
    assert main(finetune_args(tiny_dir, train, bad_label, out)) == 2
    err = capsys.readouterr().err
    assert "bad_dev.csv, line 3: label 'meh' was not seen in the training data" in err and not out.exists()

    empty_text = write_csv(tmp_path / "empty.csv", [("good film", "pos"), ("  ", "neg")])
    assert main(finetune_args(tiny_dir, empty_text, dev, out)) == 2
    err = capsys.readouterr().err
    assert "empty.csv" in err and "line 3" in err and not out.exists()

    no_column = write_csv(tmp_path / "nocol.csv", [("good film", "pos")], header=("sentence", "label"))
    assert main(finetune_args(tiny_dir, no_column, dev, out)) == 2
    assert "text" in capsys.readouterr().err and not out.exists()

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"text,label\ngood film,pos\ncaf\xe9 film,neg\n")
    assert main(finetune_args(tiny_dir, latin1, dev, out)) == 2
    assert "latin1.csv" in capsys.readouterr().err and not out.exists()

    assert main(finetune_args(tiny_dir, train, tmp_path / "missing.csv", out)) == 2
    assert "missing.csv" in capsys.readouterr().err and not out.exists()

    assert main(finetune_args(tiny_dir, train, dev, out, "--max-length", "128")) == 2
    assert "max_length=128 exceeds the model's max_position_embeddings=64" in capsys.readouterr().err
    assert not out.exists()


def test_existing_output_needs_overwrite(tiny_dir: Path, data, tmp_path: Path, capsys) -> None:
    train, dev = data
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(finetune_args(tiny_dir, train, dev, out)) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"


def test_label_kinds() -> None:
    rec = lambda label: Record(text="t", text_pair=None, label=label, line=2)  # noqa: E731
    assert label_kind([rec("pos"), rec("neg")]) == "classification"
    assert label_kind([rec("1"), rec("0")]) == "classification"
    assert label_kind([rec("0.5"), rec("3.25")]) == "regression"
    assert label_kind([rec("0.5"), rec("3")], "regression") == "regression"
    assert label_kind([rec(["a", "b"]), rec(["c"])]) == "multilabel"
    assert build_labels([rec("10"), rec("9"), rec("x")], "classification") == {0: "9", 1: "10", 2: "x"}


def test_a_single_class_is_an_error(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    single = write_csv(tmp_path / "single.csv", [("good film", "pos"), ("great film", "pos")])
    out = tmp_path / "out"
    assert main(finetune_args(tiny_dir, single, single, out)) == 2  # before: "trained", accuracy 1.0
    assert (f"{single}: every label is 'pos' (2 records, lines 2-3): classification needs at least two classes"
            in capsys.readouterr().err) and not out.exists()


def test_the_inferred_problem_type_is_printed_and_problem_type_settles_a_mix(tiny_dir: Path, tmp_path: Path, capsys,
                                                                               caplog) -> None:
    rows = [(text, "0.5" if i == 3 else label) for i, (text, label) in
            enumerate((t, "1" if lab == "pos" else "0") for t, lab in sentiment_rows(48, 0))]
    mixed = write_csv(tmp_path / "mixed.csv", rows)
    out = tmp_path / "out"
    args = finetune_args(tiny_dir, mixed, mixed, out, "--epochs", "1")
    assert main(args) == 2  # before: a regression, silently
    assert (f"{mixed}: line 5: field 'label': the labels mix whole numbers and fractions: line 2 has" in
            capsys.readouterr().err) and not out.exists()
    assert main([*args, "--problem-type", "regression"]) == 0
    assert json.loads((out / "config.json").read_text())["problem_type"] == "regression"
    assert "inferred" not in caplog.text  # the user said which
    capsys.readouterr()
    train = write_csv(tmp_path / "train.csv", sentiment_rows(48, 0))
    assert main(finetune_args(tiny_dir, train, train, tmp_path / "clf", "--epochs", "1")) == 0
    assert f"{train}: 2 classes ('neg', 'pos'): classification, inferred from the labels (--problem-type sets it)" \
        in caplog.text


def test_one_very_long_text_cannot_dominate_training(tiny_dir: Path, tmp_path: Path, capsys, caplog) -> None:
    from bertkit import Tokenizer
    from bertkit.tasks.classify import encode
    from bertkit.readers import read_table

    data = tmp_path / "train.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for i, (text, label) in enumerate(sentiment_rows(40, 0)):
            f.write(json.dumps({"text": text, "label": label}) + "\n")
            if i == 5:  # line 7: 4,000 tokens, 182 windows of 32 (before: 82% of the examples)
                f.write(json.dumps({"text": "the good film " * 1333 + "sat", "label": "pos"}) + "\n")
    records = read_table(data)
    tokenizer = Tokenizer.from_pretrained(tiny_dir)
    every = encode(records, tokenizer, 32, {"neg": 0, "pos": 1}, "classification", str(data), 8)
    capped = encode(records, tokenizer, 32, {"neg": 0, "pos": 1}, "classification", str(data), 8, max_windows=16)
    long_every = [f["input_ids"] for f in every if f["example"] == 6]
    long_capped = [f["input_ids"] for f in capped if f["example"] == 6]
    assert len(long_every) == 182 and len(long_capped) == 16
    assert long_capped[0] == long_every[0] and long_capped[-1] == long_every[-1]  # spread over the whole text
    assert [f for f in capped if f["example"] != 6] == [f for f in every if f["example"] != 6]  # the rest untouched
    assert (f"{data}: 1 text made more than 16 windows (the longest, on line 7, made 182): training reads 16 windows "
            "spread evenly over each (--max-windows; 0 keeps every window)") in caplog.text
    dev = write_csv(tmp_path / "dev.csv", sentiment_rows(16, 1))
    steps = {}
    for cap in ("16", "0"):
        assert main(finetune_args(tiny_dir, data, dev, tmp_path / cap, "--epochs", "1", "--max-windows", cap)) == 0
        steps[cap] = json.loads(capsys.readouterr().out)["steps"]
    assert steps == {"16": 4, "0": 14}  # 56 examples against 222, batches of 16


def test_predict_names_an_empty_input_file_and_empty_texts(tiny_dir: Path, data, tmp_path: Path, capsys) -> None:
    train, dev = data
    out = tmp_path / "clf"
    assert main(finetune_args(tiny_dir, train, dev, out, "--epochs", "1")) == 0
    capsys.readouterr()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["predict", str(out), "--input", str(empty)]) == 2  # before: "give texts as arguments or --input FILE"
    assert f"bertkit predict: error: {empty}: the file is empty" in capsys.readouterr().err
    blank = tmp_path / "blank.txt"
    blank.write_text("good film\n\nbad film\n  \n")
    assert main(["predict", str(out), "--input", str(blank)]) == 2  # before: a prediction for "" on line 2
    captured = capsys.readouterr()
    assert f"{blank}, lines 2, 4: empty text; give a text on every line" in captured.err and captured.out == ""
    assert main(["predict", str(out), "good film", " "]) == 2
    assert "text 2 of the arguments is empty" in capsys.readouterr().err
    table = write_csv(tmp_path / "empty.csv", [])
    assert main(["predict", str(out), "--input", str(table)]) == 2
    assert f"{table}: the file has a header but no data rows" in capsys.readouterr().err
