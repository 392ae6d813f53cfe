"""`bertkit finetune TASK`, then `predict` and `evaluate` on its output, for every task, as a user runs them.

Learning itself is tested per task (test_ner, test_qa, ...); here the command line must route every
task to its code, find the task again from the saved directory alone, and print JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertkit import Tokenizer
from bertkit.cli import main

import test_multiple_choice  # noqa: E402  (tests/ is on sys.path: pytest's rootdir conftest)
from conftest import torchrun  # noqa: E402
import test_ner  # noqa: E402
import test_qa  # noqa: E402
import test_similarity  # noqa: E402

COMMON = ["--max-length", "32", "--epochs", "1", "--batch-size", "16", "--lr", "1e-3", "--seed", "0", "--quiet"]


def finetune(capsys, task: str, model: Path, train: Path, dev: Path, out: Path, *extra: str) -> dict:
    argv = ["finetune", task, "--model", str(model), "--train", str(train), "--eval", str(dev), "--output", str(out),
            *COMMON, *extra]
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def run_json(capsys, *argv: str) -> list[dict]:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cli_ner(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    train, dev = test_ner.write_conll(tmp_path / "train.conll", 40, 0), test_ner.write_conll(tmp_path / "dev.conll", 10, 1)
    summary = finetune(capsys, "ner", tiny_dir, train, dev, tmp_path / "ner", "--max-length", "32")
    assert "eval_f1" in summary
    (result,) = run_json(capsys, "predict", str(tmp_path / "ner"), "the cat sat on the mat")
    assert result["text"] == "the cat sat on the mat" and isinstance(result["entities"], list)
    (metrics,) = run_json(capsys, "evaluate", str(tmp_path / "ner"), "--data", str(dev))
    assert metrics["task"] == "ner" and metrics["f1"] == pytest.approx(summary["eval_f1"])


def test_cli_qa(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    train = test_qa.write_json(tmp_path / "train.json", test_qa.synthetic_squad(32, 0))
    dev = test_qa.write_json(tmp_path / "dev.json", test_qa.synthetic_squad(8, 1))
    summary = finetune(capsys, "qa", tiny_dir, train, dev, tmp_path / "qa", "--max-length", "32", "--doc-stride", "8",
                       "--max-query-length", "8")
    context = "the cat sat on the mat not good"
    results = run_json(capsys, "predict", str(tmp_path / "qa"), "what is not", "who sat", "--context", context)
    assert [r["question"] for r in results] == ["what is not", "who sat"]
    for r in results:
        assert r["start"] is None or context[r["start"]:r["end"]] == r["answer"]
    (metrics,) = run_json(capsys, "evaluate", str(tmp_path / "qa"), "--data", str(dev))
    assert metrics["task"] == "qa" and metrics["f1"] == pytest.approx(summary["eval_f1"])


def test_cli_similarity(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    train = test_similarity.write_jsonl(tmp_path / "train.jsonl", test_similarity.pairs(48, 0, scored=True))
    dev = test_similarity.write_jsonl(tmp_path / "dev.jsonl", test_similarity.pairs(16, 1, scored=True))
    summary = finetune(capsys, "similarity", tiny_dir, train, dev, tmp_path / "sim")
    results = run_json(capsys, "predict", str(tmp_path / "sim"), "a good cat", "a great dog", "bad", "awful")
    assert len(results) == 2 and all(-1.0 <= r["score"] <= 1.0 for r in results)
    assert results[0]["text_pair"] == "a great dog"
    (metrics,) = run_json(capsys, "evaluate", str(tmp_path / "sim"), "--data", str(dev))
    assert metrics["spearman"] == pytest.approx(summary["eval_spearman"], abs=1e-6)
    # the output is an embedding model too
    texts = tmp_path / "texts.txt"
    texts.write_text("a good cat\nawful film\n")
    assert main(["embed", str(tmp_path / "sim"), "--input", str(texts), "--output", str(tmp_path / "e.npy"), "--quiet"]) == 0


def test_cli_finetune_under_torchrun_with_fsdp_equals_one_process(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    # A bi-encoder embeds through its inner encoder during evaluation, and saves the encoder alone:
    # both must work on a sharded model. No dropout, so the runs can agree.
    from bertkit import BertForMaskedLM

    model = BertForMaskedLM.from_pretrained(tiny_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.save_pretrained(tmp_path / "model", tokenizer=Tokenizer.from_pretrained(tiny_dir))
    train = test_similarity.write_jsonl(tmp_path / "train.jsonl", test_similarity.pairs(48, 0, scored=True))
    dev = test_similarity.write_jsonl(tmp_path / "dev.jsonl", test_similarity.pairs(16, 1, scored=True))
    args = ["finetune", "similarity", "--model", str(tmp_path / "model"), "--train", str(train), "--eval", str(dev),
            "--max-length", "32", "--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--seed", "0", "--quiet"]
    assert main([*args, "--output", str(tmp_path / "one"), "--grad-accum", "2"]) == 0
    single = json.loads(capsys.readouterr().out)
    run = torchrun("-m", "bertkit.cli", *args, "--output", str(tmp_path / "fsdp"), "--fsdp")
    (summary,) = run.stdout.splitlines()  # one summary line, from rank 0
    sharded = json.loads(summary)
    assert sharded["eval_spearman"] == pytest.approx(single["eval_spearman"], abs=1e-4)
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "fsdp" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_cli_multiple_choice(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    train = test_multiple_choice.write_swag(tmp_path / "train.csv", test_multiple_choice.swag_rows(32, 0))
    dev = test_multiple_choice.write_swag(tmp_path / "dev.csv", test_multiple_choice.swag_rows(8, 1))
    summary = finetune(capsys, "multiple-choice", tiny_dir, train, dev, tmp_path / "mc")
    (result,) = run_json(capsys, "predict", str(tmp_path / "mc"), "the cat sat", "on a good mat", "on a bad mat")
    assert result["ending"] in ("on a good mat", "on a bad mat") and len(result["scores"]) == 2
    results = run_json(capsys, "predict", str(tmp_path / "mc"), "--input", str(dev))
    assert len(results) == 8
    (metrics,) = run_json(capsys, "evaluate", str(tmp_path / "mc"), "--data", str(dev))
    assert metrics["accuracy"] == pytest.approx(summary["eval_accuracy"])


def test_predict_refuses_a_model_without_a_task_head(tiny_dir: Path, capsys) -> None:
    assert main(["predict", str(tiny_dir), "some text"]) == 2
    assert "without a task head" in capsys.readouterr().err


def test_qa_predict_needs_a_context(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    train = test_qa.write_json(tmp_path / "train.json", test_qa.synthetic_squad(16, 0))
    finetune(capsys, "qa", tiny_dir, train, train, tmp_path / "qa", "--max-length", "32", "--doc-stride", "8",
             "--max-query-length", "8")
    assert main(["predict", str(tmp_path / "qa"), "what is not"]) == 2
    assert "--context" in capsys.readouterr().err
