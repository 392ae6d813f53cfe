"""The one training engine, shared by fine-tuning (and later pretraining).

Read `fit` top to bottom: setup -> optimizer (decay on matrices only) -> loop (lr schedule,
gradient accumulation, clipping, logging, evaluation, best checkpoint, early stopping, resume
checkpoint). The same code runs on one CPU, one GPU, or many processes under `torchrun`
(DistributedDataParallel, or FSDP to shard a large model: see parallel.py; only rank 0 writes files).
Where a run writes, what checkpoint-last records and what a resumed run must match: see rundir.py.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from . import checkpoint, parallel, rundir
from .batching import Feature, collate, feature_length, label_units, length_grouped_batches, shard
from .files import atomic_directory
from .pretrained import PreTrainedModel
from .rundir import CHECKPOINT_DIR, RUN_FILE, STATE_FILE, prepare_output_dir  # noqa: F401  (tasks import them here)

logger = logging.getLogger("bertkit")

METRICS_FILE = "metrics.jsonl"

Evaluate = Callable[[PreTrainedModel], dict[str, float]]
Collate = Callable[[Sequence[Feature], int], dict[str, torch.Tensor]]  # (features, pad id) -> model inputs


@dataclass
class TrainArgs:
    output_dir: Path  # receives the best model (HF format), metrics.jsonl, curves.png, checkpoint-last/
    epochs: float = 3.0  # passes over the training data (fractions allowed)
    max_steps: int = 0  # optimizer steps to take; overrides epochs when > 0 (pretraining counts steps)
    batch_size: int = 32  # examples per optimizer step per process, before accumulation
    grad_accum: int = 1  # micro-batches per optimizer step (effective batch = batch_size · grad_accum · processes)
    lr: float = 5e-5  # peak learning rate, reached after warm-up
    weight_decay: float = 0.01  # AdamW decay, applied to matrices only (not biases or LayerNorm)
    warmup_ratio: float = 0.1  # fraction of steps with linearly rising learning rate
    schedule: str = "linear"  # decay after warm-up: linear | cosine | constant
    optimizer: str = "adamw"  # adamw | lamb
    max_grad_norm: float = 1.0  # clip the global gradient norm (0 = no clipping)
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto (bf16 on GPUs that have it, else fp32)
    seed: int = 42  # one seed drives init of new heads, shuffling and dropout
    eval_every: int = 0  # evaluate every N optimizer steps; 0 = at the end of each epoch
    metric: str = "loss"  # eval metric that picks the best checkpoint
    greater_is_better: bool = False  # direction of `metric`
    patience: int = 0  # stop after this many evaluations without improvement; 0 = never stop early
    gradient_checkpointing: bool = False  # trade compute for activation memory
    fsdp: bool = False  # under torchrun, shard parameters, gradients and optimizer state across processes
    log_every: int = 10  # optimizer steps between metrics.jsonl lines
    resume: bool = False  # continue from output_dir/checkpoint-last (or output_dir/new-run/checkpoint-last)
    resume_changed: bool = False  # resume even where the settings differ from the checkpoint's (the change is recorded)
    overwrite: bool = False  # allow an existing, non-empty output_dir (its contents are replaced once the run finishes)
    progress: bool = True  # show a progress bar
    extra: dict[str, Any] = field(default_factory=dict)  # inputs (by hash) and task settings, recorded in run.json
    run_dir: Path | None = None  # where the run writes: output_dir, or output_dir/new-run (see prepare_output_dir)


@dataclass
class TrainResult:
    best_metrics: dict[str, float]
    steps: int
    seconds: float
    stopped_early: bool


# --- setup helpers ---

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def distributed_context() -> tuple[int, int, torch.device]:
    """(rank, world_size, device); initialises the process group when launched by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return rank, world_size, device


def warn_no_eval_data() -> None:
    logger.warning("no --eval data: the model of the last step is kept and metrics are training-set metrics")


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and embeddings; never biases or LayerNorm weights (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, args: TrainArgs) -> torch.optim.Optimizer:
    groups = parameter_groups(model, args.weight_decay)
    if args.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-6)
    if args.optimizer == "lamb":
        from .optim import Lamb

        return Lamb(groups, lr=args.lr)
    raise ValueError(f"optimizer={args.optimizer!r} must be 'adamw' or 'lamb'")


def lr_lambda(total_steps: int, warmup_steps: int, schedule: str) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at each step: linear warm-up, then the chosen decay."""
    if schedule not in ("linear", "cosine", "constant"):
        raise ValueError(f"schedule={schedule!r} must be linear, cosine or constant")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def autocast_settings(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether fp16 loss scaling is needed)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("fp16 training needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.float16, True
    raise ValueError(f"precision={precision!r} must be fp32, bf16, fp16 or auto")


# --- resume state ---

def _rng_state() -> dict[str, Any]:
    """Every generator training draws from, as tensors and plain values (loadable with weights_only)."""
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gauss)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    keys, position, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(out: Path, model: PreTrainedModel, weights: dict[str, torch.Tensor] | None, tokenizer: Any,
                        optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
                        progress: dict[str, Any], is_main: bool, record: dict[str, Any] | None = None) -> None:
    """checkpoint-last/: the model plus everything needed to continue exactly, swapped in atomically.
    `weights`: `parallel.model_state(model)`. Every rank calls it (the optimizer state of a sharded model
    is gathered); rank 0 writes. `record`: the run's settings and progress, written as run.json."""
    optimizer_state = parallel.optimizer_state(model, optimizer)
    if not is_main:
        return
    with atomic_directory(out / CHECKPOINT_DIR, keep_old=lambda name: False) as staging:
        model.save_pretrained(staging / "model", tokenizer=tokenizer, state_dict=weights)
        state = {"optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict(), "rng": _rng_state(), "progress": progress}
        torch.save(state, staging / STATE_FILE)
        if record is not None:
            (staging / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def load_training_state(out: Path) -> dict[str, Any]:
    # weights_only: the file holds tensors and plain values only; nothing in it can run code.
    return torch.load(out / CHECKPOINT_DIR / STATE_FILE, map_location="cpu", weights_only=True)


# --- the loop ---

def fit(
    model: PreTrainedModel,
    train_features: Sequence[Feature],
    args: TrainArgs,
    evaluate: Evaluate,
    pad_token_id: int,
    tokenizer: Any = None,
    collate_fn: Collate = collate,
) -> TrainResult:
    """Train `model` on `train_features`; keep the best model by `args.metric` in `args.output_dir`.

    `collate_fn` turns a list of features into the keyword arguments of `model(...)`, `labels` (or
    another target) included; the model's output must carry `.loss`. The run writes into `args.run_dir`
    (see `prepare_output_dir`); a run replacing the output's contents puts them in place once it finishes.
    """
    rank, world_size, device = distributed_context()
    is_main = rank == 0
    out = Path(args.output_dir)
    run_dir = rundir.sync_run_dir(args, world_size)
    changes: list[rundir.Difference] = []
    if args.resume:
        if is_main:  # prepare_output_dir checked them already; a direct caller of fit is checked here
            changes = rundir.resume_differences(run_dir, args, world_size) or []
            if changes and not args.resume_changed:
                rundir.check_resume(run_dir, args, world_size)  # raises, naming the differences
        state = load_training_state(run_dir)
        checkpoint.load_weights(model, checkpoint.read_state_dict(run_dir / CHECKPOINT_DIR / "model"),
                                str(run_dir / CHECKPOINT_DIR))
    model.to(device)
    model.config.gradient_checkpointing = args.gradient_checkpointing
    if args.fsdp and world_size == 1:
        logger.warning("--fsdp shards the model across processes; with one process it trains unsharded")
    wrapped = parallel.wrap(model, world_size, args.fsdp)  # FSDP shards `model` itself, in place

    # A dataset that computes features on access (pretraining) lists its lengths itself.
    lengths = getattr(train_features, "lengths", None) or [feature_length(f) for f in train_features]
    batches_per_epoch = len(shard(length_grouped_batches(lengths, args.batch_size, args.seed, 0), rank, world_size))
    steps_per_epoch = math.ceil(batches_per_epoch / args.grad_accum)
    total_steps = args.max_steps if args.max_steps > 0 else max(1, math.ceil(steps_per_epoch * args.epochs))
    optimizer = build_optimizer(model, args)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, int(args.warmup_ratio * total_steps), args.schedule))
    amp_dtype, use_scaler = autocast_settings(args.precision, device)
    scaler = parallel.grad_scaler(model, device, enabled=use_scaler)

    progress = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "evals_without_gain": 0,
                "best_metrics": {}, "total_steps": total_steps, "batches_per_epoch": batches_per_epoch}
    history: list[dict[str, Any]] = []  # changes accepted on resuming (resume_changed), kept in run.json
    stopped_early = False
    if args.resume:
        parallel.load_optimizer_state(model, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        planned_lr = optimizer.param_groups[0]["lr"]  # where the checkpoint's schedule had the rate
        progress = state["progress"]
        _set_rng_state(state["rng"])
        _apply_rate_settings(optimizer, scheduler, args, total_steps)
        _continue_position(progress, batches_per_epoch, args.grad_accum)
        if is_main:
            _say_what_the_schedule_does(run_dir, progress, total_steps, planned_lr, optimizer.param_groups[0]["lr"],
                                        args)
            history = (rundir.read_record(run_dir) or {}).get("changes", [])
            if changes:
                history.append({"step": progress["step"], "changes": {
                    rundir.flag(d.setting): {"checkpoint": d.saved, "now": d.now} for d in changes}})
                logger.warning("%s: resuming at step %d with changed settings (--resume-changed):\n%s", run_dir,
                               progress["step"], "\n".join(f"  {d.describe()}" for d in changes))
        progress.update(total_steps=total_steps, batches_per_epoch=batches_per_epoch)
        stopped_early = args.patience > 0 and progress["evals_without_gain"] >= args.patience
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if args.resume:  # drop lines of steps after the resume point: they are about to be redone
            _truncate_metrics(run_dir / METRICS_FILE, progress["step"])
    metrics_log = open(run_dir / METRICS_FILE, "a", encoding="utf-8") if is_main else None

    def log(record: dict[str, Any]) -> None:
        if metrics_log is not None:
            metrics_log.write(json.dumps(record) + "\n")
            metrics_log.flush()

    if changes:
        log({"step": progress["step"], "resumed_with_changes": history[-1]["changes"]})

    def run_evaluation() -> bool:
        """Evaluate, keep the best model, write the resume point; True means stop early."""
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            metrics = evaluate(model)
        model.train()
        log({"step": progress["step"], "epoch": round(progress["step"] / steps_per_epoch, 4),
             **{f"eval_{k}": v for k, v in metrics.items()}})
        value = metrics[args.metric]
        improved = progress["best"] is None or (value > progress["best"] if args.greater_is_better else value < progress["best"])
        weights = parallel.model_state(model)  # every rank takes part in gathering a sharded model, once
        if improved:
            progress.update(best=value, evals_without_gain=0, best_metrics=metrics)
            if is_main:
                model.save_pretrained(run_dir, tokenizer=tokenizer, state_dict=weights)  # keeps metrics.jsonl, checkpoint-last/
        else:
            progress["evals_without_gain"] += 1
        stop = args.patience > 0 and progress["evals_without_gain"] >= args.patience
        record = {"settings": rundir.run_settings(args, world_size), "changes": history,
                  "progress": {"step": progress["step"], "total_steps": total_steps,
                               "finished": stop or progress["step"] >= total_steps}}
        # The training-loss window since the last log line goes too, so a resumed run logs the same losses.
        saved = {**progress, "window_loss": [window["loss_sum"], window["units"]]}
        save_training_state(run_dir, model, weights, tokenizer, optimizer, scheduler, scaler, saved, is_main, record)
        if is_main and args.progress:
            tqdm.write(file=sys.stderr, s=f"step {progress['step']}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return stop

    if not args.resume:
        seed_everything(args.seed)  # shuffling and dropout; resume restores the generators instead
    model.train()
    bar = tqdm(total=total_steps, initial=progress["step"], desc="train", unit="step",
               disable=not (args.progress and is_main), dynamic_ncols=True)
    started = time.time()
    loss_sum, units = progress.pop("window_loss", [0.0, 0])
    window = {"examples": 0, "tokens": 0, "loss_sum": loss_sum, "units": units, "start": time.time()}  # since the last log
    while progress["step"] < total_steps and not stopped_early:
        epoch = progress["epoch"]
        if hasattr(train_features, "set_epoch"):  # e.g. fresh MLM masks every epoch
            train_features.set_epoch(epoch)
        batches = shard(length_grouped_batches(lengths, args.batch_size, args.seed, epoch), rank, world_size)
        steps = [batches[i:i + args.grad_accum] for i in range(0, len(batches), args.grad_accum)]
        for group in steps[progress["batch_in_epoch"] // args.grad_accum:]:
            micro = [{k: v.to(device) if isinstance(v, torch.Tensor) else v
                      for k, v in collate_fn([train_features[i] for i in b], pad_token_id).items()} for b in group]
            local_units = sum(label_units(m) for m in micro)
            units = torch.tensor([local_units], device=device, dtype=torch.float)
            if world_size > 1:
                dist.all_reduce(units)
            loss_sum = 0.0
            for i, batch in enumerate(micro):
                # Loss = sum over this step's targets / their count (all micro-batches, all ranks);
                # DDP and FSDP average gradients over ranks, hence the world_size factor.
                sync = parallel.gradient_sync(wrapped, enabled=i == len(micro) - 1)
                with sync, torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    mean_loss = wrapped(**batch).loss
                    scaled = mean_loss * label_units(batch) / units * world_size
                scaler.scale(scaled).backward()
                loss_sum += float(mean_loss.detach()) * label_units(batch)
            if args.max_grad_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            progress["step"] += 1
            progress["batch_in_epoch"] += len(group)
            window["examples"] += sum(len(b) for b in group) * world_size
            window["tokens"] += sum(lengths[i] for b in group for i in b) * world_size  # real tokens, no device sync
            window["loss_sum"] += loss_sum
            window["units"] += local_units
            step_loss = loss_sum / max(local_units, 1)  # this process's mean; ranks differ only by their data
            bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            bar.update(1)
            if progress["step"] % args.log_every == 0 or progress["step"] == total_steps:
                elapsed = time.time() - window["start"]
                log({"step": progress["step"], "epoch": round(progress["step"] / steps_per_epoch, 4),
                     "loss": window["loss_sum"] / max(window["units"], 1), "lr": scheduler.get_last_lr()[0],
                     "examples_per_s": window["examples"] / max(elapsed, 1e-9),
                     "tokens_per_s": window["tokens"] / max(elapsed, 1e-9)})
                window.update(examples=0, tokens=0, loss_sum=0.0, units=0, start=time.time())
            end_of_epoch = progress["batch_in_epoch"] >= len(batches)
            if end_of_epoch:
                progress.update(epoch=epoch + 1, batch_in_epoch=0)
            due = (args.eval_every and progress["step"] % args.eval_every == 0) or (not args.eval_every and end_of_epoch)
            if due or progress["step"] == total_steps:
                stopped_early = run_evaluation()
            if stopped_early or progress["step"] >= total_steps:
                break
    bar.close()
    if metrics_log is not None:
        metrics_log.close()
        plot_curves(run_dir / METRICS_FILE, run_dir / "curves.png")
        if run_dir != out:  # a run replacing the output's contents has finished: they are replaced now
            rundir.replace_output(out, run_dir)
    return TrainResult(progress["best_metrics"], progress["step"], time.time() - started, stopped_early)


def _apply_rate_settings(optimizer: torch.optim.Optimizer, scheduler: Any, args: TrainArgs, total_steps: int) -> None:
    """After loading a resume point: the command's peak rate, decay and schedule at the step reached (the values
    the checkpoint restored, unless resume_changed accepted others or the run was extended)."""
    factor = lr_lambda(total_steps, int(args.warmup_ratio * total_steps), args.schedule)  # the scheduler's own
    scheduler.base_lrs = [args.lr] * len(optimizer.param_groups)
    for group, decay in zip(optimizer.param_groups, (args.weight_decay, 0.0)):  # parameter_groups' order
        group.update(initial_lr=args.lr, weight_decay=decay, lr=args.lr * factor(scheduler.last_epoch))
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def _continue_position(progress: dict[str, Any], batches_per_epoch: int, grad_accum: int) -> None:
    """Carry the place in the epoch over as a share of it when the batches changed (resume_changed)."""
    planned = progress.get("batches_per_epoch", batches_per_epoch)
    done = round(progress["batch_in_epoch"] * batches_per_epoch / planned) if planned else 0
    progress["batch_in_epoch"] = done // grad_accum * grad_accum


def _say_what_the_schedule_does(run_dir: Path, progress: dict[str, Any], total_steps: int, planned_lr: float,
                                lr: float, args: TrainArgs) -> None:
    """A resumed run whose length changed (--epochs, --steps) or that has nothing left to do says so."""
    step, planned = progress["step"], progress.get("total_steps")
    where = run_dir / CHECKPOINT_DIR
    if args.patience > 0 and progress["evals_without_gain"] >= args.patience:
        logger.warning("%s: the run stopped early at step %d (%d evaluations without gain, --patience %d): nothing to "
                       "train", where, step, progress["evals_without_gain"], args.patience)
    elif step >= total_steps and planned in (None, total_steps):
        logger.warning("%s: the run finished at step %d of %d: nothing to train; raise --epochs (or --steps) to "
                       "extend it", where, step, total_steps)
    elif step >= total_steps:
        logger.warning("%s: the run is at step %d, past the %d steps this command plans (it planned %d): nothing to "
                       "train", where, step, total_steps, planned)
    elif planned is not None and planned != total_steps:
        decay = "" if args.schedule == "constant" else f", then decays to 0 at step {total_steps}"
        logger.warning("%s: resuming at step %d with %d steps planned instead of %d: the %s schedule is laid out anew "
                       "over %d steps, so the learning rate goes from %.3g (where the old plan had it) to %.3g at step "
                       "%d%s", where, step, total_steps, planned, args.schedule, total_steps, planned_lr, lr, step,
                       decay)


def _truncate_metrics(path: Path, last_step: int) -> None:
    if path.is_file():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line and json.loads(line)["step"] <= last_step]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def plot_curves(metrics_file: Path, png: Path) -> None:
    """Training loss and every eval metric against steps, as a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed; no curves.png (pip install 'bertkit[train]')")
        return
    records = [json.loads(line) for line in metrics_file.read_text(encoding="utf-8").splitlines() if line]
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if any(k.startswith("eval_") for k in r)]
    # Losses share the left panel; perplexities (a loss in another unit) would flatten every other curve.
    eval_keys = sorted({k for r in evals for k in r if k.startswith("eval_") and not k.endswith("perplexity")})
    scores = [k for k in eval_keys if not k.endswith("loss")]
    fig, axes = plt.subplots(1, 1 + bool(scores), figsize=(11 if scores else 6, 4), squeeze=False)
    axes[0][0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    axes[0][0].set(xlabel="step", ylabel="loss", title="loss")
    for key in eval_keys:
        target = axes[0][1] if key in scores else axes[0][0]
        target.plot([r["step"] for r in evals if key in r], [r[key] for r in evals if key in r], marker="o", label=key)
    for ax in axes[0]:
        ax.legend()
        ax.grid(alpha=0.3)
    if scores:
        axes[0][1].set(xlabel="step", title="evaluation")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


