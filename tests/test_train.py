"""The training engine: learning, exact resume, loss normalisation, DDP equivalence, output safety."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from bertkit.batching import collate, label_units, length_grouped_batches, shard
from bertkit.train import TrainArgs, lr_lambda, parameter_groups, prepare_output_dir

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
import train_tiny  # noqa: E402
from conftest import torchrun  # noqa: E402  (tests/ is on sys.path)

HELPER = Path(__file__).parent / "helpers" / "train_tiny.py"


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_learns_and_writes_its_outputs(tmp_path: Path) -> None:
    train_tiny.main(str(tmp_path / "run"), batch_size=16, grad_accum=1)
    out = tmp_path / "run"
    records = _metrics(out)
    evals = [r for r in records if "eval_accuracy" in r]
    assert [r["step"] for r in evals] == [10, 20, 30, 40, 50]
    assert evals[0]["eval_accuracy"] < 0.7 and max(r["eval_accuracy"] for r in evals) >= 0.9
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]
    for name in ("config.json", "model.safetensors", "curves.png", "checkpoint-last"):
        assert (out / name).exists(), name
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]


def test_resume_after_a_kill_continues_exactly(tmp_path: Path) -> None:
    full = train_tiny.main(str(tmp_path / "full"), batch_size=16, grad_accum=1)
    with pytest.raises(KeyboardInterrupt):
        train_tiny.main(str(tmp_path / "killed"), batch_size=16, grad_accum=1, kill_at_eval=4)
    resumed = train_tiny.main(str(tmp_path / "killed"), batch_size=16, grad_accum=1, resume=True)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # dropout, shuffling and optimizer state all continue bit for bit
    timeless = lambda records: [{k: v for k, v in r.items() if not k.endswith("_per_s")} for r in records]  # noqa: E731
    assert timeless(_metrics(tmp_path / "killed")) == timeless(_metrics(tmp_path / "full"))


def test_loss_is_averaged_over_label_tokens_of_the_whole_step() -> None:
    # Two micro-batches with 1 and 3 real token labels: each token must weigh 1/4, not 1/2 per batch.
    short = {"input_ids": [2, 5, 3], "token_type_ids": [0, 0, 0], "labels": [-100, 1, -100]}
    long = {"input_ids": [2, 5, 6, 7, 3], "token_type_ids": [0] * 5, "labels": [-100, 0, 1, 1, -100]}
    assert label_units(collate([short], 0)) == 1 and label_units(collate([long], 0)) == 3
    assert label_units(collate([short, long], 0)) == 4
    assert label_units({"labels": torch.tensor([0, 1, 1])}) == 3


def _torchrun(out: Path, batch_size: int, grad_accum: int, *flags: str, check: bool = True) -> int:
    return torchrun(str(HELPER), str(out), str(batch_size), str(grad_accum), *flags, check=check).returncode


@pytest.mark.parametrize("mode,family", [("ddp", "bert"), ("fsdp", "bert"), ("ddp", "distilbert"), ("fsdp", "electra")])
def test_two_processes_equal_one_process_with_accumulation(tmp_path: Path, mode: str, family: str) -> None:
    single = tmp_path / "single"
    subprocess.run([sys.executable, str(HELPER), str(single), "8", "2", f"family={family}"], check=True, timeout=300)
    parallel = tmp_path / mode
    _torchrun(parallel, 8, 1, f"family={family}", *(["fsdp"] if mode == "fsdp" else []))
    a = torch.load(single / "final_state.pt", weights_only=True)
    b = torch.load(parallel / "final_state.pt", weights_only=True)
    assert a.keys() == b.keys()
    for name in a:
        assert_close(a[name], b[name], atol=2e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")
    evals_a = [r["eval_accuracy"] for r in _metrics(single) if "eval_accuracy" in r]
    evals_b = [r["eval_accuracy"] for r in _metrics(parallel) if "eval_accuracy" in r]
    assert evals_a == evals_b
    # The resume point holds the whole optimizer state, gathered from the shards under FSDP.
    opt_a = torch.load(single / "checkpoint-last" / "trainer_state.pt", weights_only=True)["optimizer"]["state"]
    opt_b = torch.load(parallel / "checkpoint-last" / "trainer_state.pt", weights_only=True)["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for name in opt_a:
        assert_close(opt_a[name]["exp_avg"], opt_b[name]["exp_avg"], atol=1e-6, rtol=1e-3, msg=lambda m: f"{name}: {m}")


def test_fsdp_resume_after_a_kill_continues_exactly(tmp_path: Path) -> None:
    _torchrun(tmp_path / "full", 8, 1, "fsdp")
    assert _torchrun(tmp_path / "killed", 8, 1, "fsdp", "kill-at-eval=3", check=False) != 0
    _torchrun(tmp_path / "killed", 8, 1, "fsdp", "resume")
    a = torch.load(tmp_path / "full" / "final_state.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "final_state.pt", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    timeless = lambda records: [{k: v for k, v in r.items() if not k.endswith("_per_s")} for r in records]  # noqa: E731
    assert timeless(_metrics(tmp_path / "killed")) == timeless(_metrics(tmp_path / "full"))


def test_batches_group_lengths_shard_evenly_and_repeat() -> None:
    lengths = [5, 50, 6, 49, 7, 48, 8, 47] * 10
    batches = length_grouped_batches(lengths, batch_size=4, seed=3, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(80))
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 3 for b in batches)
    assert batches == length_grouped_batches(lengths, batch_size=4, seed=3, epoch=0)
    assert batches != length_grouped_batches(lengths, batch_size=4, seed=3, epoch=1)
    shards = [shard(batches[:7], r, 2) for r in range(2)]
    assert shards[0] == [batches[0], batches[2], batches[4]] and shards[1] == [batches[1], batches[3], batches[5]]


def test_schedule_and_decay_groups() -> None:
    f = lr_lambda(total_steps=10, warmup_steps=2, schedule="linear")
    assert [round(f(s), 4) for s in range(10)] == [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    decay, no_decay = parameter_groups(model, 0.01)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


def test_output_directory_is_not_clobbered(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_output_dir(TrainArgs(output_dir=out), is_main=True)
    assert (out / "precious.txt").read_text() == "keep me"
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        prepare_output_dir(TrainArgs(output_dir=out, resume=True), is_main=True)
