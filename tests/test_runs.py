"""Nothing lost, nothing silent: a run's output directory and its resume point (bertkit/rundir.py, train.fit).

A kill at every filesystem step of a save (and of the swap that puts a replacing run in place) must leave a
model that loads where the user looks, and a resume point from which the run ends exactly as an uninterrupted
one; `--overwrite` removes nothing before the new run is complete; `--resume` refuses other settings, naming
them, and says what an extended run's schedule does.
"""

from __future__ import annotations

import json
import shutil
import stat
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertkit import BertForSequenceClassification
from bertkit.cli import main
from bertkit.tasks import classify
from bertkit.train import TrainArgs, fit, prepare_output_dir, seed_everything

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
import crash  # noqa: E402
import train_tiny  # noqa: E402
from conftest import tiny_config  # noqa: E402
from test_classify import finetune_args, sentiment_rows, write_csv  # noqa: E402
from test_files import read_only  # noqa: E402

TRAIN, DEV = train_tiny.synthetic(48, seed=0), train_tiny.synthetic(24, seed=1)


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """matplotlib takes 0.6 s a plot, most of a tiny run; the file itself is all these tests look at."""
    monkeypatch.setattr("bertkit.train.plot_curves", lambda metrics, png: png.write_bytes(b"png"))
EVALS = 3  # 48 examples, batches of 8, 2 epochs: 12 steps, an evaluation every 4 (each one improves on the last)


def run(out: Path, *, resume: bool = False, overwrite: bool = False, arm_at_eval: int = 0, seed: int = 1) -> None:
    """A tiny classifier run as the tasks do it (prepare_output_dir, then fit); kill steps are counted from the
    end of evaluation `arm_at_eval` (its saves, and the swap that ends a replacing run) to the next evaluation."""
    seed_everything(0)
    model = BertForSequenceClassification(tiny_config(num_labels=2))
    evaluations = {"n": 0}

    def evaluate(m):
        evaluations["n"] += 1
        if evaluations["n"] == arm_at_eval + 1:
            crash.disarm()
        metrics = classify.evaluate(m, DEV, 0, "classification")
        if evaluations["n"] == arm_at_eval:
            crash.arm()
        return metrics

    args = TrainArgs(output_dir=out, epochs=2, batch_size=8, lr=1e-2, seed=seed, eval_every=4, metric="loss",
                     progress=False, resume=resume, overwrite=overwrite)
    prepare_output_dir(args, is_main=True)
    fit(model, TRAIN, args, evaluate, pad_token_id=0)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def timeless(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("_per_s")}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run(out)
    return out


def assert_finished_like(out: Path, reference: Path, after: str) -> None:
    assert same_weights(weights(out), weights(reference)), after
    assert same_weights(weights(out / "checkpoint-last" / "model"), weights(reference / "checkpoint-last" / "model")), after
    assert timeless(out) == timeless(reference), after
    assert not (out / "new-run").exists(), after
    assert crash.leftovers(out.parent, out, out / "checkpoint-last") == [], after


@pytest.mark.slow  # 15-20 s: two tiny runs for each of the ~16 steps
def test_a_kill_at_every_step_of_an_evaluation_save_leaves_a_model_and_a_resume_point(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "run"
    steps = crash.steps(lambda: run(out, arm_at_eval=2), tmp_path / "steps.log")
    swaps = [s for s in steps if s.startswith("exchange")]
    assert [s.split()[-1] for s in swaps] == [str(out), str(out / "checkpoint-last")], steps  # best model, resume point
    for k in range(len(steps) + 1):
        shutil.rmtree(out)
        assert crash.run(lambda: run(out, arm_at_eval=2), kill_after=k) == crash.KILLED
        after = f"killed after step {k} of {len(steps)} ({steps[k - 1] if k else 'before the first'})"
        BertForSequenceClassification.from_pretrained(out)  # the best model so far loads where the user looks
        assert (out / "checkpoint-last" / "trainer_state.pt").is_file(), after
        assert crash.run(lambda: run(out, resume=True)) == 0, after  # and --resume continues
        assert_finished_like(out, reference, after)


@pytest.mark.slow  # 20-30 s: two tiny runs for each of the ~30 steps
def test_a_kill_at_every_step_while_a_run_replaces_an_output(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "run"
    previous = tmp_path / "previous"
    run(previous, seed=7)  # an earlier run's output, which --overwrite replaces
    shutil.copytree(previous, out)
    steps = crash.steps(lambda: run(out, overwrite=True, arm_at_eval=EVALS), tmp_path / "steps.log")
    assert any(s.startswith("exchange") and s.endswith(f" {out}") for s in steps), steps  # the replacing swap
    assert_finished_like(out, reference, "uninterrupted")
    for k in range(len(steps) + 1):
        shutil.rmtree(out)
        shutil.copytree(previous, out)
        assert crash.run(lambda: run(out, overwrite=True, arm_at_eval=EVALS), kill_after=k) == crash.KILLED
        after = f"killed after step {k} of {len(steps)} ({steps[k - 1] if k else 'before the first'})"
        loaded = weights(out)  # a complete model: the previous one until the swap, the new one after it
        assert same_weights(loaded, weights(previous)) or same_weights(loaded, weights(reference)), after
        BertForSequenceClassification.from_pretrained(out)
        assert crash.run(lambda: run(out, resume=True)) == 0, after
        assert_finished_like(out, reference, after)


def test_overwrite_keeps_the_previous_output_until_the_new_run_is_complete(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "notes.txt").write_text("mine")
    before = weights(out)
    # killed before its first evaluation: the previous model and its resume point are all still there
    assert crash.run(lambda: run(out, overwrite=True, arm_at_eval=1), kill_after=0) == crash.KILLED
    assert same_weights(weights(out), before) and (out / "notes.txt").read_text() == "mine"
    assert (out / "checkpoint-last" / "trainer_state.pt").is_file()
    with pytest.raises(FileNotFoundError, match=f"{out}/new-run: the run replacing {out} stopped before its first "
                                                "checkpoint, so there is nothing to resume; start it again with --overwrite"):
        prepare_output_dir(TrainArgs(output_dir=out, resume=True), is_main=True)
    # a second --overwrite starts afresh and, once finished, replaces everything (the user's file included)
    run(out, overwrite=True)
    assert_finished_like(out, reference, "second --overwrite")
    assert not (out / "notes.txt").exists()


def test_resuming_an_interrupted_replacement_finishes_it(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "run"
    run(out, seed=7)
    before = weights(out)
    assert crash.run(lambda: run(out, overwrite=True, arm_at_eval=2), kill_after=0) == crash.KILLED
    assert same_weights(weights(out), before)  # the previous model is where it was
    assert (out / "new-run" / "checkpoint-last" / "trainer_state.pt").is_file()  # the new run's resume point
    run(out, resume=True)
    assert_finished_like(out, reference, "resumed")


# --- the command line: refusals that name the setting and change nothing ---

@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    return write_csv(tmp_path / "train.csv", sentiment_rows(64, 0)), write_csv(tmp_path / "dev.csv", sentiment_rows(24, 1))


def short(model: Path, train: Path, dev: Path, out: Path, *extra: str) -> list[str]:
    """test_classify's command, one epoch (4 steps) unless `extra` says otherwise (a later flag wins)."""
    args = finetune_args(model, train, dev, out, *extra)
    args[args.index("--epochs") + 1] = "1"
    return args


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_output_equal_to_or_inside_the_model_is_refused(tiny_dir: Path, data, tmp_path: Path, capsys) -> None:
    train, dev = data
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    kept = snapshot(model)
    for out, where in ((model, "is"), (model / "sub", "is inside")):
        assert main(short(model, train, dev, out, "--overwrite")) == 2
        err = capsys.readouterr().err
        assert f"--output {out} {where} the --model directory {model}: the run would write over what it reads" in err
        assert snapshot(model) == kept
    inner = tmp_path / "runs" / "train.csv"
    inner.parent.mkdir()
    shutil.copy(train, inner)
    (tmp_path / "runs" / "old.txt").write_text("old")
    assert main(short(tiny_dir, inner, dev, tmp_path / "runs", "--overwrite")) == 2
    assert f"--train {inner} is inside --output {tmp_path / 'runs'}, whose contents --overwrite replaces" in \
        capsys.readouterr().err
    assert inner.read_bytes() == train.read_bytes()


def test_a_corrupt_model_leaves_the_previous_run_in_place(tiny_dir: Path, data, tmp_path: Path, capsys) -> None:
    train, dev = data
    out = tmp_path / "out"
    assert main(short(tiny_dir, train, dev, out)) == 0
    capsys.readouterr()
    kept = snapshot(out)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes((corrupt / "model.safetensors").read_bytes()[:100])
    assert main(short(corrupt, train, dev, out, "--overwrite")) == 2
    assert f"{corrupt}/model.safetensors" in capsys.readouterr().err
    assert snapshot(out) == kept  # before: an empty directory where the previous run was


def test_an_unwritable_output_fails_before_the_model_is_loaded(tiny_dir: Path, data, tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    train, dev = data
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    loads = []
    monkeypatch.setattr(BertForSequenceClassification, "from_pretrained", lambda *a, **k: loads.append(a))
    with read_only(out):
        assert main(short(tiny_dir, train, dev, out, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert f"{out}/new-run: the output directory is not writable ({out}, where it would be created)" in err
    assert loads == [] and (out / "old.txt").read_text() == "old"
    with read_only(tmp_path):  # a new output whose parent is read-only
        assert main(short(tiny_dir, train, dev, tmp_path / "fresh")) == 2
    assert f"{tmp_path / 'fresh'}: the output directory is not writable ({tmp_path}" in capsys.readouterr().err
    assert loads == []


def test_run_outputs_follow_the_umask(tiny_dir: Path, data, tmp_path: Path) -> None:
    import os

    train, dev = data
    previous = os.umask(0o027)
    try:
        assert main(short(tiny_dir, train, dev, tmp_path / "out")) == 0
    finally:
        os.umask(previous)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    out = tmp_path / "out"
    assert [mode(p) for p in (out, out / "checkpoint-last", out / "checkpoint-last" / "model")] == [0o750] * 3
    assert {mode(p) for p in out.rglob("*") if p.is_file()} == {0o640}


# --- resume: the same settings, or --resume-changed ---

@pytest.fixture
def finished(tiny_dir: Path, data, tmp_path: Path, capsys) -> tuple[Path, Path, Path]:
    """A finished one-epoch run (4 steps)."""
    train, dev = data
    out = tmp_path / "out"
    assert main(short(tiny_dir, train, dev, out)) == 0
    capsys.readouterr()
    return train, dev, out


@pytest.mark.parametrize("flag, value, shown", [
    ("--batch-size", "8", "--batch-size: 8 now, 16 in the checkpoint"),
    ("--grad-accum", "2", "--grad-accum: 2 now, 1 in the checkpoint"),
    ("--lr", "1e-3", "--lr: 0.001 now, 0.003 in the checkpoint"),
    ("--schedule", "cosine", '--schedule: "cosine" now, "linear" in the checkpoint'),
    ("--seed", "5", "--seed: 5 now, 0 in the checkpoint"),
    ("--max-length", "24", "--max-length: 24 now, 32 in the checkpoint"),
])
def test_resume_refuses_other_settings_and_names_them(tiny_dir: Path, finished, capsys, flag, value, shown) -> None:
    train, dev, out = finished
    kept = snapshot(out)
    assert main(short(tiny_dir, train, dev, out, "--resume", flag, value)) == 2
    err = capsys.readouterr().err
    assert f"{out}/checkpoint-last/run.json: resuming with other settings than the run was made with:" in err
    assert shown in err and "--resume-changed" in err
    assert snapshot(out) == kept


def test_resume_refuses_another_training_file_or_model(tiny_dir: Path, finished, tmp_path: Path, capsys, caplog) -> None:
    train, dev, out = finished
    kept = snapshot(out)
    other = write_csv(tmp_path / "other.csv", sentiment_rows(16, 9))  # before: "finished" the run after 1 step, exit 0
    assert main(short(tiny_dir, other, dev, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert f"--train: {other} (sha256 " in err and f"now, {train} (sha256 " in err
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.2}))
    assert main(short(model, train, dev, out, "--resume")) == 2
    assert f"--model: {model} (sha256 " in capsys.readouterr().err
    moved = tmp_path / "moved.csv"
    shutil.copy(train, moved)  # the same data elsewhere is the same run
    assert main(short(tiny_dir, moved, dev, out, "--resume")) == 0
    assert "nothing to train" in caplog.text
    assert snapshot(out) == kept


def test_resume_changed_accepts_and_records_the_change(tiny_dir: Path, data, tmp_path: Path, capsys, caplog) -> None:
    train, dev = data
    out = tmp_path / "out"
    assert main(short(tiny_dir, train, dev, out, "--epochs", "2")) == 0
    capsys.readouterr()
    state = torch.load(out / "checkpoint-last" / "trainer_state.pt", weights_only=True)
    assert state["progress"]["step"] == 8
    assert main(short(tiny_dir, train, dev, out, "--epochs", "3", "--lr", "1e-3", "--resume", "--resume-changed")) == 0
    assert "resuming at step 8 with changed settings (--resume-changed):\n  --lr: 0.001 now, 0.003 in the checkpoint" in \
        caplog.text
    record = json.loads((out / "checkpoint-last" / "run.json").read_text())
    assert record["settings"]["lr"] == 0.001 and record["progress"] == {"step": 12, "total_steps": 12, "finished": True}
    assert record["changes"] == [{"step": 8, "changes": {"--lr": {"checkpoint": 0.003, "now": 0.001}}}]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 8, "resumed_with_changes": {"--lr": {"checkpoint": 0.003, "now": 0.001}}} in lines
    rates = [r["lr"] for r in lines if "lr" in r and r["step"] > 8]  # logged at steps 10 and 12
    assert rates == pytest.approx([1e-3 * 2 / 11, 0.0])  # the new peak rate, linear decay over 12 steps


def test_extending_a_finished_run_says_what_the_schedule_does(tiny_dir: Path, finished, caplog) -> None:
    train, dev, out = finished
    assert main(short(tiny_dir, train, dev, out, "--resume", "--epochs", "2")) == 0
    assert (f"{out}/checkpoint-last: resuming at step 4 with 8 steps planned instead of 4: the linear schedule is laid "
            "out anew over 8 steps, so the learning rate goes from 0 (where the old plan had it) to 0.0015 at step 4, "
            "then decays to 0 at step 8") in caplog.text
    assert torch.load(out / "checkpoint-last" / "trainer_state.pt", weights_only=True)["progress"]["step"] == 8
    caplog.clear()
    assert main(short(tiny_dir, train, dev, out, "--resume", "--epochs", "2")) == 0
    assert f"{out}/checkpoint-last: the run finished at step 8 of 8: nothing to train; raise --epochs" in caplog.text
