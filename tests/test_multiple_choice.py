"""The multiple-choice task: a tiny end-to-end fine-tune, transformers loading the output with equal
logits, predictions and evaluation of the saved model, truncation counted, bad input refused before
any write."""

from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path

import pytest
import torch

from bertkit import BertForMultipleChoice, Tokenizer
from bertkit.batching import collate
from bertkit.readers import DataError, MultipleChoiceExample
from bertkit.tasks import multiple_choice
from bertkit.train import TrainArgs

transformers = pytest.importorskip("transformers")

FILLER = ["the", "cat", "dog", "sat", "on", "mat", "a", "ran", "away", "."]


def phrase(rng: random.Random, cue: str) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(2, 5))] + [cue]
    rng.shuffle(words)
    return " ".join(words)


def swag_rows(n: int, seed: int, choices: int = 4) -> list[dict]:
    """The right ending is the one that says "good" (the others say "bad", "awful" or "small"), among
    random filler. (Matching a cue of the context is too slow for a random 2-layer model to learn here.)"""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randrange(choices)
        cues = [rng.choice(["bad", "awful", "small"]) for _ in range(choices)]
        cues[label] = "good"
        rows.append({"context": phrase(rng, rng.choice(FILLER)),
                     **{f"ending{i}": phrase(rng, cue) for i, cue in enumerate(cues)}, "label": label})
    return rows


def write_swag(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def train_args(out: Path) -> TrainArgs:
    return TrainArgs(output_dir=out, epochs=4, batch_size=16, lr=4e-3, seed=0, progress=False)


def test_finetune_predict_evaluate(tiny_dir: Path, tmp_path: Path) -> None:
    train = write_swag(tmp_path / "train.csv", swag_rows(96, 0))
    dev = write_swag(tmp_path / "dev.csv", swag_rows(60, 1))
    out = tmp_path / "mc"
    result = multiple_choice.finetune(tiny_dir, train, dev, train_args(out), max_length=24)
    assert result.best_metrics["accuracy"] >= 0.9  # measured: 1.0 (chance: 0.25)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForMultipleChoice"]
    assert config["bertkit"] == {"task": "multiple-choice", "max_length": 24, "context_column": "context"}

    # transformers loads the output directory and agrees with bertkit
    tokenizer = Tokenizer.from_pretrained(out)
    ours = BertForMultipleChoice.from_pretrained(out)
    theirs = transformers.BertForMultipleChoice.from_pretrained(out).eval()
    examples = [MultipleChoiceExample(row["context"], [row[f"ending{i}"] for i in range(4)], None, 0)
                for row in swag_rows(3, 2)]
    inputs = collate(multiple_choice.encode(examples, tokenizer, 24, "test"), tokenizer.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).logits, theirs(**inputs).logits, atol=1e-5, rtol=1e-5)

    metrics = multiple_choice.evaluate_file(ours, tokenizer, dev)
    assert metrics["examples"] == 60
    assert metrics["accuracy"] == pytest.approx(result.best_metrics["accuracy"])
    assert metrics["loss"] == pytest.approx(result.best_metrics["loss"], abs=1e-5)

    # Predictions: any number of endings per context; probabilities sum to 1.
    predictions = multiple_choice.predict(ours, tokenizer, ["the cat sat", "a dog ran"],
                                          [["a bad mat", "the good cat", "awful ."], ["good dog", "small dog"]])
    assert [(p["label"], p["ending"]) for p in predictions] == [(1, "the good cat"), (0, "good dog")]
    assert [len(p["scores"]) for p in predictions] == [3, 2]
    assert all(sum(p["scores"]) == pytest.approx(1, abs=1e-5) for p in predictions)


def test_truncation_is_counted(tiny_dir: Path, caplog) -> None:
    tokenizer = Tokenizer.from_pretrained(tiny_dir)
    examples = [MultipleChoiceExample("the cat sat on the mat", ["a dog ran away", "good"], 0, 2)]
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        features = multiple_choice.encode(examples, tokenizer, 10, "data.csv")
    assert "data.csv: 1 of 2 (context, ending) pairs were longer than 10 tokens" in caplog.text
    first, second = features[0]["input_ids"]
    # longest first: 6 + 4 words cut to 4 + 3 (+ 3 specials); 6 + 1 words fit
    assert tokenizer.convert_ids_to_tokens(first) == ["[CLS]", "the", "cat", "sat", "on", "[SEP]", "a", "dog", "ran", "[SEP]"]
    assert len(second) == 10 and features[0]["token_type_ids"][1] == [0] * 8 + [1] * 2
    assert features[0]["labels"] == 0


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[3].update(label=4), "line 5: column 'label': label 4 is out of range"),
    (lambda rows: rows[1].update(ending2=" "), "line 3: column 'ending2': empty text"),
    (lambda rows: [row.pop("label") for row in rows], "'label'"),
])
def test_bad_input_raises_before_writing(tiny_dir: Path, tmp_path: Path, edit, message) -> None:
    train = write_swag(tmp_path / "train.csv", swag_rows(8, 0))
    rows = swag_rows(8, 1)
    edit(rows)
    dev = write_swag(tmp_path / "dev.csv", rows)
    out = tmp_path / "never"
    with pytest.raises(DataError, match="dev.csv") as error:
        multiple_choice.finetune(tiny_dir, train, dev, train_args(out))
    assert message in str(error.value)
    assert not out.exists()


@pytest.mark.parametrize("max_length, message", [
    (3, "max_length=3 leaves no room"), (128, "max_length=128 exceeds the model's max_position_embeddings=64")])
def test_bad_max_length_raises_before_writing(tiny_dir: Path, tmp_path: Path, max_length: int, message: str) -> None:
    train = write_swag(tmp_path / "train.csv", swag_rows(8, 0))
    with pytest.raises(ValueError, match=message):
        multiple_choice.finetune(tiny_dir, train, None, train_args(tmp_path / "never"), max_length=max_length)
    assert not (tmp_path / "never").exists()


def test_features_without_token_types(bpe_dir: Path) -> None:
    tokenizer = Tokenizer.from_pretrained(bpe_dir)
    examples = [MultipleChoiceExample("the cat sat", ["on the mat", "away", "a dog"], 0, 1)]
    (feature,) = multiple_choice.encode(examples, tokenizer, 32, "x")
    assert set(feature) == {"input_ids", "labels"}
    assert feature["input_ids"][1] == tokenizer.encode("the cat sat", "away")
    batch = collate([feature, feature], tokenizer.pad_token_id)
    assert set(batch) == {"input_ids", "attention_mask", "labels"} and batch["input_ids"].shape[:2] == (2, 3)
