"""Where a training run writes, what it records about itself, and what a resumed run must match.

A run writes into its output directory, except when it replaces an earlier run's output (`overwrite`): then
it trains in OUTPUT/new-run/, and OUTPUT keeps the previous model until the new run has finished; only then
do the new run's files replace OUTPUT's contents, in one atomic swap (`files.atomic_directory`). A crash at
any moment leaves a loadable model in OUTPUT and, once the run has saved one, a resume point where
`resume` looks for it (OUTPUT/new-run/checkpoint-last while a replacement is under way).

checkpoint-last/run.json records the settings that decide what a run learns (batch size, accumulation, rate,
schedule, seed, processes, the model and the data files by SHA-256, the task's settings) and how far the run
got. `resume` compares the command with it and refuses a difference, naming each setting, unless
`resume_changed` accepts it; the change is then recorded in run.json and metrics.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from . import files
from .errors import BertkitError

if TYPE_CHECKING:
    from .train import TrainArgs

logger = logging.getLogger("bertkit")

STATE_FILE = "trainer_state.pt"
CHECKPOINT_DIR = "checkpoint-last"  # the resume point, refreshed at every evaluation
RUN_FILE = "run.json"  # inside checkpoint-last: the run's settings and progress
PENDING_DIR = "new-run"  # inside OUTPUT: a run that replaces OUTPUT's contents once it finishes

# TrainArgs fields that change what a run learns; a resumed run must keep them (or say resume_changed).
COMPARED = ("batch_size", "grad_accum", "lr", "weight_decay", "warmup_ratio", "schedule", "optimizer",
            "max_grad_norm", "seed")
# Files whose hashes identify a model, tokenizer or prepared-corpus directory (its weights are not read:
# a resumed run takes its weights from checkpoint-last, but its configuration and vocabulary from the model).
IDENTIFYING_FILES = ("config.json", "vocab.txt", "tokenizer.json", "vocab.json", "merges.txt", "manifest.json")

InputPath = str | os.PathLike | Sequence[str | os.PathLike] | None


class ResumeMismatch(BertkitError, ValueError):
    """`resume` with settings other than those checkpoint-last was made with."""


@dataclass(frozen=True)
class Difference:
    setting: str  # a TrainArgs field, "processes", or an entry of TrainArgs.extra ("--train", "max_length", ...)
    saved: Any  # in checkpoint-last/run.json (None: not recorded)
    now: Any  # this command's

    def describe(self) -> str:
        return f"{flag(self.setting)}: {shown(self.now)} now, {shown(self.saved)} in the checkpoint"


def flag(setting: str) -> str:
    """A setting as the command line spells it."""
    if setting == "processes":
        return "processes (torchrun --nproc_per_node)"
    return setting if setting.startswith("--") else "--" + setting.replace("_", "-")


def shown(value: Any) -> str:
    if isinstance(value, dict) and "sha256" in value:
        return f"{value['path']} (sha256 {value['sha256'][:12]})"
    if isinstance(value, list) and value and all(isinstance(v, dict) and "sha256" in v for v in value):
        return ", ".join(shown(v) for v in value)
    return "not recorded" if value is None else json.dumps(value)


def fingerprint(path: str | os.PathLike) -> dict[str, str]:
    """{"path", "sha256"} of an input: a file's bytes; a directory's identifying files (IDENTIFYING_FILES)."""
    path = Path(path)
    if path.is_dir():
        parts = [f"{name}:{files.sha256(path / name)}" for name in IDENTIFYING_FILES if (path / name).is_file()]
        digest = hashlib.sha256("\n".join(parts or sorted(p.name for p in path.iterdir())).encode()).hexdigest()
        return {"path": str(path), "sha256": digest}
    return {"path": str(path), "sha256": files.sha256(path)}


def _paths(value: InputPath) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value]


def _same(saved: Any, now: Any) -> bool:
    """Inputs are the same when their contents are (a moved file is still the same data)."""
    if isinstance(saved, dict) and isinstance(now, dict) and "sha256" in saved and "sha256" in now:
        return saved["sha256"] == now["sha256"]
    if isinstance(saved, list) and isinstance(now, list) and len(saved) == len(now):
        return all(_same(a, b) for a, b in zip(saved, now))
    return saved == now


# --- the settings a run records ---

def run_settings(args: TrainArgs, world_size: int) -> dict[str, Any]:
    """What checkpoint-last/run.json records and a resumed run is compared on, as JSON values."""
    settings = {name: getattr(args, name) for name in COMPARED}
    return json.loads(json.dumps({**settings, "processes": world_size, **args.extra}))


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """checkpoint-last/run.json of a run directory; None for a checkpoint an older bertkit wrote."""
    path = run_dir / CHECKPOINT_DIR / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ResumeMismatch(f"{path}: unreadable ({e}); the resume point cannot be checked") from None


def resume_differences(run_dir: Path, args: TrainArgs, world_size: int) -> list[Difference] | None:
    """The settings in which this command differs from the run in run_dir's checkpoint (None: not recorded)."""
    record = read_record(run_dir)
    if record is None:
        return None
    saved, now = record.get("settings", {}), run_settings(args, world_size)
    return [Difference(k, saved.get(k), now.get(k)) for k in sorted(saved.keys() | now.keys())
            if not _same(saved.get(k), now.get(k))]


def check_resume(run_dir: Path, args: TrainArgs, world_size: int) -> list[Difference]:
    """Refuse to resume with other settings unless `args.resume_changed`; the differences, which it accepts."""
    differences = resume_differences(run_dir, args, world_size)
    where = run_dir / CHECKPOINT_DIR / RUN_FILE
    if differences is None:
        logger.warning("%s: no record of the settings it was made with (an older bertkit wrote it): this command is "
                       "not checked against them", run_dir / CHECKPOINT_DIR)
        return []
    if differences and not args.resume_changed:
        listed = "\n".join(f"  {d.describe()}" for d in differences)
        raise ResumeMismatch(f"{where}: resuming with other settings than the run was made with:\n{listed}\n"
                             "give the checkpoint's settings, or add --resume-changed to continue with these "
                             "(the change is recorded in run.json and metrics.jsonl)")
    return differences


# --- the output directory ---

def _check_separate(out: Path, inputs: Mapping[str, InputPath], replacing: bool) -> None:
    """The output may neither be (or lie inside) a directory the run reads, nor, when its contents are to be
    replaced, hold a file the run reads."""
    resolved = out.resolve()
    for name, value in inputs.items():
        for path in _paths(value):
            source = path.resolve()
            if resolved == source or source in resolved.parents:
                where = "is" if resolved == source else "is inside"
                raise ValueError(f"--output {out} {where} the {name} directory {path}: the run would write over what "
                                 "it reads; choose an --output outside it")
            if replacing and resolved in source.parents:
                raise ValueError(f"{name} {path} is inside --output {out}, whose contents --overwrite replaces; move it "
                                 "out or choose another --output")


def _finished(run_dir: Path) -> bool:
    record = read_record(run_dir) if (run_dir / CHECKPOINT_DIR).is_dir() else None
    return bool(record and record.get("progress", {}).get("finished"))


def _progress_note(run_dir: Path) -> str:
    record = read_record(run_dir) if (run_dir / CHECKPOINT_DIR).is_dir() else None
    progress = (record or {}).get("progress", {})
    if "step" in progress:
        return f"stopped at step {progress['step']} of {progress.get('total_steps', '?')}"
    return "stopped before its first checkpoint"


def prepare_output_dir(args: TrainArgs, is_main: bool | None = None, inputs: Mapping[str, InputPath] | None = None,
                       settings: Mapping[str, Any] | None = None) -> None:
    """Check the output before any model is loaded or file written, and choose where the run writes (`run_dir`).

    Refuses: an output that is, or lies inside, an input directory; an existing non-empty output without
    `overwrite` or `resume`; an output that cannot be written; a resume point missing, or made with other
    settings. `inputs` ({"--model": dir, "--train": file, ...}) are checked so and recorded by their hashes,
    with `settings` (the task's), in `args.extra`, for a later resume to be compared with. Nothing is deleted:
    a run that replaces OUTPUT trains in OUTPUT/new-run (see the module's docstring). Only the main process
    (rank 0 under torchrun) checks; the others learn `run_dir` from it (`sync_run_dir`).
    """
    if is_main is None:
        is_main = int(os.environ.get("RANK", "0")) == 0
    out = Path(args.output_dir)
    pending = out / PENDING_DIR
    inputs = dict(inputs or {})
    if not is_main:
        args.run_dir = pending if pending.is_dir() else out
        return
    for name, value in inputs.items():
        paths = _paths(value)
        if paths:
            single = isinstance(value, (str, os.PathLike))
            args.extra[name] = fingerprint(paths[0]) if single else [fingerprint(p) for p in paths]
    args.extra.update(settings or {})
    for target in (out, out / CHECKPOINT_DIR, pending, pending / CHECKPOINT_DIR):
        files.recover(target)  # a swap a crash interrupted, where the filesystem has no atomic exchange
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--output {out} is a file, not a directory")
    occupied = out.is_dir() and any(out.iterdir())
    _check_separate(out, inputs, replacing=args.overwrite and occupied and not args.resume)
    if args.resume:
        args.run_dir = _resume_dir(out)
        files.check_writable(args.run_dir)
        files.check_writable(out.parent, "output's parent")
        check_resume(args.run_dir, args, int(os.environ.get("WORLD_SIZE", "1")))
        return
    if occupied and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it or --resume to continue")
    if pending.is_dir():
        if _finished(pending):  # killed while it replaced OUTPUT: it finishes that now
            logger.warning("%s: a finished run that had not yet replaced %s's contents: it does so now", pending, out)
            replace_output(out, pending)
        else:
            logger.warning("%s: discarding the unfinished run replacing %s (%s; --resume would have continued it)",
                           pending, out, _progress_note(pending))
            shutil.rmtree(pending)
        occupied = any(out.iterdir())
    args.run_dir = pending if occupied else out
    files.check_writable(args.run_dir)
    files.check_writable(out.parent, "output's parent")  # where a save stages the swap of OUTPUT itself
    if occupied:
        logger.warning("%s: training in %s; %s keeps its contents until this run has finished, which then replace "
                       "them (--resume continues it if it is interrupted)", out, args.run_dir, out)


def _resume_dir(out: Path) -> Path:
    """The run directory holding the resume point: a replacement under way (OUTPUT/new-run) wins."""
    pending = out / PENDING_DIR
    for run_dir in (pending, out):
        if (run_dir / CHECKPOINT_DIR / STATE_FILE).is_file():
            return run_dir
        if run_dir == pending and pending.is_dir():
            raise FileNotFoundError(f"{pending}: the run replacing {out} stopped before its first checkpoint, so "
                                    "there is nothing to resume; start it again with --overwrite")
    hidden = sorted(p.name for p in out.glob(f".{CHECKPOINT_DIR}.*")) if out.is_dir() else []
    hint = f" (found {', '.join(hidden)}: an interrupted save of an older bertkit; rename it to {CHECKPOINT_DIR})" \
        if hidden else ""
    raise FileNotFoundError(f"{out / CHECKPOINT_DIR}: nothing to resume from (no {STATE_FILE}){hint}")


def sync_run_dir(args: TrainArgs, world_size: int) -> Path:
    """The run directory, as the main process chose it (under torchrun the others take it from rank 0)."""
    run_dir = Path(args.run_dir or args.output_dir)
    if world_size > 1:
        import torch.distributed as dist

        shared = [str(run_dir)]
        dist.broadcast_object_list(shared, src=0)
        run_dir = Path(shared[0])
    args.run_dir = run_dir
    return run_dir


def replace_output(out: Path, run_dir: Path) -> None:
    """OUTPUT's contents become those of the finished run in run_dir (OUTPUT/new-run), in one atomic swap."""
    with files.atomic_directory(out, keep_old=lambda name: False) as staging:
        for entry in run_dir.iterdir():
            files.link_tree(entry, staging / entry.name)
    logger.warning("%s: replaced by the new run's output", out)
