"""CPU speed and accuracy of the four ways bertkit runs a model: PyTorch fp32, PyTorch INT8 (dynamic
quantisation of the Linear layers), ONNX Runtime fp32 and ONNX Runtime INT8 (`bertkit export --int8`).

Rows: batch-1 latency at sequence length 128 (median over --repeats calls, ms) and batch-32 throughput at
length 128 (median over --repeats // 4 + 1 calls, sequences/s; the contenders take turns, see median_seconds), on
real token ids: the evaluation texts, tokenised, run together and cut into 126-token pieces between [CLS]
and [SEP]. With --eval-data, the task
metric of each on that file (as `bertkit evaluate` computes it: length-sorted batches of real, mixed-length texts)
and the seconds that evaluation took. Every contender uses --threads intra-op threads.

    python benchmarks/bench_export.py runs/sentiment --eval-data data/rotten-tomatoes/dev.csv
    python benchmarks/bench_export.py all-minilm-l6-v2            # speed only, the packaged encoder
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from bertkit import packaged
from bertkit.runtime import load_tokenizer
from bertkit.tasks.registry import evaluate_metrics, task_of
from bertkit.export import ExportOptions, export_onnx, load_torch_head, main_metric
from bertkit.onnx_backend import as_task_model, head_of, load
from bertkit.quantize import Int8Settings, quantize_torch
from bertkit.readers import read_table

SEQUENCE = 128


def fixed_inputs(tokenizer: Any, texts: list[str], batch: int) -> tuple[torch.Tensor, ...]:
    """(batch, 128) real token ids, no padding, and the attention mask (and token types)."""
    ids = [i for row in tokenizer(texts, padding=False, truncation=False, return_tensors=None).input_ids for i in row[1:-1]]
    body = SEQUENCE - 2
    if len(ids) < batch * body:
        ids = ids * (batch * body // max(1, len(ids)) + 1)
    rows = [[tokenizer.cls_token_id, *ids[k * body:(k + 1) * body], tokenizer.sep_token_id] for k in range(batch)]
    input_ids = torch.tensor(rows)
    # Token types only where the tokenizer has them (a DistilBERT or RoBERTa model takes none).
    types = (torch.zeros_like(input_ids),) if tokenizer.has_token_types else ()
    return input_ids, torch.ones_like(input_ids), *types


@torch.inference_mode()
def median_seconds(calls: dict[str, Callable[[], Any]], repeats: int, rounds: int = 3) -> dict[str, float]:
    """Median seconds per call of each. The contenders take turns, `rounds` times, so that load that comes and
    goes on a shared machine falls on all of them; each turn starts with an untimed call, because ONNX Runtime's
    threads keep spinning for a moment after a run and would slow whatever runs right after them."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            call()
            for _ in range(max(1, repeats // rounds)):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model directory or packaged model name")
    parser.add_argument("--eval-data", help="labelled file in the task's format: accuracy of each contender")
    parser.add_argument("--texts", help="text file for the inputs when there is no --eval-data (one per line)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20, help="batch-1 calls timed (default 20)")
    parser.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                        help="INT8 with a scale per output channel (default) or per tensor")
    parser.add_argument("--keep-fp32", default="", help="INT8: groups left in fp32, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    location = packaged.resolve(args.model)
    tokenizer = load_tokenizer(location)
    if args.eval_data:
        texts = [r.text for r in read_table(args.eval_data, require_label=False)]
    elif args.texts:
        texts = Path(args.texts).read_text(encoding="utf-8").splitlines()
    else:
        from bertkit import packaged_data

        texts = [r.text for r in packaged_data.load("rotten-tomatoes")["dev"]]
    settings = Int8Settings(per_channel=args.per_channel, keep_fp32=tuple(g for g in args.keep_fp32.split(",") if g))

    with tempfile.TemporaryDirectory() as work:
        exported = Path(work) / "onnx"
        started = time.perf_counter()
        # --eval-data is measured below for all four contenders alike, so the export itself only checks collapse.
        report = export_onnx(args.model, exported, ExportOptions(int8=settings, max_drop=100.0)).report
        print(f"export + checks: {time.perf_counter() - started:.1f} s; sizes: "
              + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in report["bytes"].items()))
        head = head_of(location.model_dir)
        torch_fp32 = load_torch_head(location.model_dir, head)
        torch_fp32.config.unpad = None  # as `bertkit predict` runs it (the export traced the padded path)
        contenders = {
            "PyTorch fp32": torch_fp32,
            "PyTorch INT8": quantize_torch(torch_fp32, settings),
            "ONNX Runtime fp32": load(exported, "onnx", args.threads),
            "ONNX Runtime INT8": load(exported, "onnx-int8", args.threads),
        }
        one, many = fixed_inputs(tokenizer, texts, 1), fixed_inputs(tokenizer, texts, 32)
        latency = median_seconds({n: partial(m, *one) for n, m in contenders.items()}, args.repeats)
        batch = median_seconds({n: partial(m, *many) for n, m in contenders.items()}, args.repeats // 4 + 1)
        rows = []
        for name, model in contenders.items():
            row = {"contender": name, "threads": args.threads, "latency_ms_b1_s128": round(latency[name] * 1e3, 2),
                   "throughput_seq_per_s_b32_s128": round(32 / batch[name], 1)}
            if args.eval_data:
                task = task_of(location.model_dir)
                task_model = as_task_model(model, task) if name.startswith("ONNX") else model
                started = time.perf_counter()
                metrics = evaluate_metrics(task, task_model, tokenizer, args.eval_data)
                row["eval_seconds"] = round(time.perf_counter() - started, 2)
                metric = main_metric(task, metrics)
                row[metric] = round(100 * metrics[metric], 2) if task != "qa" else round(metrics[metric], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)

    base = rows[0]["throughput_seq_per_s_b32_s128"]
    metric = next((k for k in rows[0] if k not in ("contender", "threads", "latency_ms_b1_s128",
                                                  "throughput_seq_per_s_b32_s128", "eval_seconds")), None)
    print("\n| contender | batch 1, seq 128: latency (ms) | batch 32, seq 128: seq/s | vs PyTorch fp32 |"
          + (f" {metric} | evaluating --eval-data (s) |" if metric else ""))
    print("|---|---|---|---|" + ("---|---|" if metric else ""))
    for row in rows:
        print(f"| {row['contender']} | {row['latency_ms_b1_s128']} | {row['throughput_seq_per_s_b32_s128']} | "
              f"{row['throughput_seq_per_s_b32_s128'] / base:.2f}x |"
              + (f" {row[metric]} | {row['eval_seconds']} |" if metric else ""))


if __name__ == "__main__":
    main()
