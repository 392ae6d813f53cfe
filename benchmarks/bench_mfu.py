"""Throughput and model FLOP utilisation (MFU) of a BERT size on one device: bertkit against transformers.

Weights are random (speed does not depend on them) and the same in both libraries. Two workloads:

- fixed: batches of --batch sequences of exactly --seq tokens (BERT-base, bf16, 128 x 128 is the GPU goal);
- mixed (--mixed): the token counts of bench_inference.py's 1,000 real mixed texts (reviews, tweets, news;
  benchmarks/mixed_lengths.txt) filled with random ids, mean pooling, batch 32: bertkit's `embed_ids`
  (length-sorted, unpadded) against transformers in input order and length-sorted. Tokenising is left out:
  both sides would pay the same for it.

MFU = model FLOPs (`bertkit.flops`: real tokens only) / seconds / the device's data-sheet peak (or --peak-tflops).
Each contender runs in turns with the others (A B C A B C ...); medians are reported, with ratios to bertkit.

    python benchmarks/bench_mfu.py                       # CUDA: base, bf16, 128 x 128 (+ --mixed, --compile)
    python benchmarks/bench_mfu.py --device cpu --preset mini --dtype fp32 --batch 8 --mixed --texts 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bertkit import BertConfig, BertModel
from bertkit.runtime import PRECISIONS, precision_dtype
from bertkit.flops import encoder_forward_flops, gpu_peak_tflops
from bertkit.infer import EmbeddingSettings, embed_ids, pool

LENGTHS_FILE = Path(__file__).with_name("mixed_lengths.txt")
CLS_ID, SEP_ID = 101, 102  # BERT's uncased vocabulary; the other ids are random


def mixed_lengths(max_length: int, count: int) -> list[int]:
    """The first `count` token counts of the mixed texts (as tokenised for at most 512), cut at max_length."""
    lines = [line for line in LENGTHS_FILE.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return [min(int(line), max_length) for line in lines[:count]]


def write_mixed_lengths() -> None:
    """Regenerate mixed_lengths.txt from the packaged texts (needs the data packages of `bertkit data`)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_inference import mixed_texts

    from bertkit import Tokenizer, packaged

    tokenizer = Tokenizer.from_pretrained(packaged.resolve("all-minilm-l6-v2").model_dir)
    ids = tokenizer(mixed_texts(1000, seed=0), max_length=512, padding=False, return_tensors=None).input_ids
    header = ("# Token counts ([CLS] and [SEP] included, cut at 512) of bench_inference.py's mixed_texts(1000, seed=0)\n"
              "# under MiniLM's uncased vocabulary, in input order. Written by: python benchmarks/bench_mfu.py "
              "--write-lengths\n")
    LENGTHS_FILE.write_text(header + "".join(f"{len(row)}\n" for row in ids), encoding="utf-8")
    print(f"wrote {LENGTHS_FILE}: {len(ids)} lengths", file=sys.stderr)


def random_ids(lengths: list[int], vocab_size: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [[CLS_ID, *torch.randint(1000, vocab_size, (n - 2,), generator=g).tolist(), SEP_ID] for n in lengths]


def transformers_twin(model: BertModel, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """transformers' BertModel (sdpa) holding the same weights."""
    import transformers

    config = transformers.BertConfig(**model.config.to_dict(), attn_implementation="sdpa")
    twin = transformers.BertModel(config)
    twin.load_state_dict(model.state_dict())  # the same names: a transformers state dict
    return twin.to(device=device, dtype=dtype).eval()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(contenders: list[tuple[str, Callable[[], object]]], repeats: int, warmups: int,
            device: torch.device) -> dict[str, list[float]]:
    """Seconds of each call, contenders in turns after `warmups` untimed calls each (compilation, autotuning)."""
    for _, run in contenders:
        for _ in range(warmups):
            run()
    seconds: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for _ in range(repeats):
        for name, run in contenders:
            synchronize(device)
            started = time.perf_counter()
            run()
            synchronize(device)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def report(suite: str, seconds: dict[str, list[float]], flops: int, sequences: int, peak: float | None,
           diffs: dict[str, float] | None = None) -> list[dict]:
    """Print and return a row per contender; `diffs`: each one's max |difference| from bertkit's output."""
    base = statistics.median(seconds["bertkit"])
    rows = []
    for name, runs in seconds.items():
        median = statistics.median(runs)
        tflops = flops / median / 1e12
        row = {"suite": suite, "contender": name, "median_s": round(median, 5),
               "sequences_per_s": round(sequences / median, 1), "tflops": round(tflops, 2),
               "mfu": round(tflops / peak, 4) if peak else None, "bertkit_speedup": round(median / base, 2)}
        if diffs is not None:
            row["max_abs_diff_vs_bertkit"] = diffs[name]
        rows.append(row)
        mfu = f"  MFU {row['mfu']:.1%}" if peak else ""
        print(f"{name:<34} {median * 1e3:10.2f} ms  {row['sequences_per_s']:10.1f} seq/s  {tflops:8.2f} TFLOP/s{mfu}"
              f"  bertkit {row['bertkit_speedup']:.2f}x", file=sys.stderr)
    return rows


def fixed_suite(model: BertModel, twin: torch.nn.Module, compiled: torch.nn.Module | None, args: argparse.Namespace,
                device: torch.device, peak: float | None) -> list[dict]:
    """One forward of batch x seq real tokens (an all-ones mask, as a user's fixed-length batch has)."""
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, model.config.vocab_size, (args.batch, args.seq), generator=g).to(device)
    mask = torch.ones_like(input_ids)
    contenders = [("bertkit", lambda: model(input_ids, mask)),
                  ("transformers sdpa", lambda: twin(input_ids=input_ids, attention_mask=mask))]
    if compiled is not None:
        contenders.insert(1, ("bertkit torch.compile", lambda: compiled(input_ids, mask)))
    with torch.inference_mode():
        seconds = measure(contenders, args.repeats, args.warmups, device)
    flops = encoder_forward_flops(model.config, [args.seq] * args.batch)
    print(f"-- fixed: {args.batch} x {args.seq} tokens, {flops / 1e12:.3f} TFLOP a batch", file=sys.stderr)
    return report(f"fixed{args.batch}x{args.seq}", seconds, flops, args.batch, peak)


def transformers_embed_ids(twin: torch.nn.Module, ids: list[list[int]], batch_size: int, sort: bool,
                           device: torch.device) -> np.ndarray:
    """Mean-pooled embeddings as a transformers user computes them: batches padded to their longest."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i])) if sort else list(range(len(ids)))
    out = np.empty((len(ids), twin.config.hidden_size), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(len(ids[i]) for i in batch)
        input_ids = torch.tensor([ids[i] + [0] * (width - len(ids[i])) for i in batch], device=device)
        mask = (input_ids != 0).long()
        hidden = twin(input_ids=input_ids, attention_mask=mask).last_hidden_state
        out[batch] = pool(hidden.float(), mask, "mean").cpu().numpy()
    return out


def mixed_suite(model: BertModel, twin: torch.nn.Module, args: argparse.Namespace, device: torch.device,
                peak: float | None) -> list[dict]:
    lengths = mixed_lengths(args.max_length, args.texts)
    ids = random_ids(lengths, model.config.vocab_size)
    settings = EmbeddingSettings(pooling="mean", normalize=False)
    results: dict[str, np.ndarray] = {}

    def keep(name: str, run: Callable[[], np.ndarray]) -> tuple[str, Callable[[], None]]:
        return name, lambda: results.__setitem__(name, run())

    contenders = [keep("bertkit", lambda: embed_ids(model, ids, 0, settings, batch_size=32)),
                  keep("transformers sdpa, input order", lambda: transformers_embed_ids(twin, ids, 32, False, device)),
                  keep("transformers sdpa, length-sorted", lambda: transformers_embed_ids(twin, ids, 32, True, device))]
    with torch.inference_mode():
        seconds = measure(contenders, args.repeats, 1, device)
    flops = encoder_forward_flops(model.config, lengths, pooler=False)
    padded = sum(max(lengths[i:i + 32]) * len(lengths[i:i + 32]) for i in range(0, len(lengths), 32))
    diffs = {name: float(np.abs(vectors - results["bertkit"]).max()) for name, vectors in results.items()}
    print(f"-- mixed: {len(lengths)} texts, {sum(lengths)} tokens ({1 - sum(lengths) / padded:.0%} of input-order "
          f"batches are padding), {flops / 1e12:.3f} TFLOP; max|diff| vs bertkit: "
          + ", ".join(f"{name} {diff:.1e}" for name, diff in diffs.items() if name != "bertkit"), file=sys.stderr)
    return report("mixed", seconds, flops, len(lengths), peak, diffs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--preset", default="base", help="a BertConfig preset: tiny, mini, small, medium, base, large")
    p.add_argument("--dtype", choices=PRECISIONS, help="default: bf16 on CUDA, fp32 elsewhere")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmups", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also bertkit under torch.compile (fixed workload)")
    p.add_argument("--mixed", action="store_true", help="also the mixed-length workload")
    p.add_argument("--texts", type=int, default=1000, help="mixed texts to take (at most 1,000)")
    p.add_argument("--max-length", type=int, default=256, help="mixed texts are cut at this many tokens")
    p.add_argument("--peak-tflops", type=float, help="the device's peak for this dtype (default: data sheet, GPUs)")
    p.add_argument("--write-lengths", action="store_true", help="regenerate mixed_lengths.txt and exit")
    args = p.parse_args()
    if args.write_lengths:
        return write_mixed_lengths()
    device = torch.device(args.device)
    dtype = precision_dtype(args.dtype or ("bf16" if device.type == "cuda" else "fp32"))
    peak = args.peak_tflops or gpu_peak_tflops(device, dtype)
    torch.manual_seed(0)
    model = BertModel(BertConfig.from_preset(args.preset)).to(device=device, dtype=dtype).eval()
    twin = transformers_twin(model, device, dtype)
    compiled = torch.compile(model) if args.compile else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, {args.preset} ({model.num_parameters() / 1e6:.0f}M parameters), {dtype}, torch {torch.__version__}, "
          f"peak {f'{peak} TFLOP/s' if peak else 'not known (MFU not shown; give --peak-tflops)'}", file=sys.stderr)
    rows = fixed_suite(model, twin, compiled, args, device, peak)
    if args.mixed:
        rows += mixed_suite(model, twin, args, device, peak)
    for row in rows:
        print(json.dumps({"device": name, "preset": args.preset, "dtype": str(dtype).removeprefix("torch."), **row}))


if __name__ == "__main__":
    main()
