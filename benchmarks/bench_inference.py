"""Inference speed on real mixed-length text: bertkit against transformers as users write it.

The texts are real and packaged (`bertkit data`): Rotten Tomatoes review snippets, WNUT-16 tweets and
news articles (cut at --max-length tokens), shuffled together. Every contender embeds the same texts
(mean pooling over real tokens, as sentence-transformers does) on the same machine in one run; each
is repeated, in turns with the others, and the median is reported, with its ratio to bertkit. Contenders:

- bertkit: `bertkit.infer.embed` (tokenise once, sort by length, batch, restore input order);
- transformers sdpa / eager, batches in input order, each padded to its longest text (what a user
  writes first: on mixed text most of these tokens are padding);
- transformers sdpa, length-sorted batches (what a careful user writes).

Tokenisation is inside every timing: a user pays for it too. The embeddings of all contenders are
compared with bertkit's (max |diff| is printed). One JSON line per contender at the end.

    python benchmarks/bench_inference.py                     # MiniLM-L6, 1,000 texts, batch 32, max 256
    python benchmarks/bench_inference.py --fixed 128         # also batches of texts of exactly 128 tokens
    python benchmarks/bench_inference.py --bf16              # also bertkit and transformers in bfloat16
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Callable

import numpy as np
import torch

from bertkit import BertModel, Tokenizer, packaged, packaged_data
from bertkit.infer import EmbeddingSettings, embed


def mixed_texts(n: int, seed: int) -> list[str]:
    """Reviews, tweets and news articles in the proportions 5 : 3 : 2, shuffled."""
    rotten = [r.text for r in packaged_data.load("rotten-tomatoes")["test"]]
    tweets = [" ".join(s.tokens) for split in ("dev", "test") for s in packaged_data.load("wnut16")[split]]
    news = [r.text for r in packaged_data.load("news")["test"]]
    rng = random.Random(seed)
    texts = rng.sample(rotten, n * 5 // 10) + rng.sample(tweets, n * 3 // 10) + rng.sample(news, n - n * 8 // 10)
    rng.shuffle(texts)
    return texts


def transformers_embedder(model_dir: str, attn: str, sort: bool, batch_size: int, max_length: int,
                          dtype: torch.dtype = torch.float32) -> Callable:
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir, attn_implementation=attn, dtype=dtype).eval()

    @torch.inference_mode()
    def run(texts: list[str]) -> np.ndarray:
        order = list(range(len(texts)))
        if sort:  # by token count, as bertkit does (characters would be a rougher proxy)
            lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
            order.sort(key=lambda i: -lengths[i])
        out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[batch] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy()
        return out

    return run


def bertkit_embedder(model_dir: str, batch_size: int, max_length: int,
                     dtype: torch.dtype = torch.float32) -> Callable:
    tokenizer = Tokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir, dtype=dtype).eval()
    settings = EmbeddingSettings(pooling="mean", normalize=False, max_length=max_length)
    return lambda texts: embed(model, tokenizer, texts, settings, batch_size=batch_size)


def fixed_length_texts(model_dir: str, tokens: int, count: int) -> list[str]:
    """News passages that tokenise to exactly `tokens` ids ([CLS] and [SEP] included): no padding anywhere."""
    tokenizer = Tokenizer.from_pretrained(model_dir)
    texts = []
    for article in (r.text for r in packaged_data.load("news")["test"]):
        ids = tokenizer.encode(article)
        if len(ids) < tokens:
            continue
        candidate = tokenizer.decode(ids[1:tokens - 1])
        if len(tokenizer.encode(candidate)) == tokens:  # decoding can merge or split a piece at the cut
            texts.append(candidate)
        if len(texts) == count:
            return texts
    raise SystemExit(f"only {len(texts)} news passages reach {tokens} tokens")


def padding_share(model_dir: str, texts: list[str], batch_size: int, max_length: int, sort: bool) -> float:
    """Fraction of the tokens in padded batches that are padding."""
    lengths = [len(ids) for ids in Tokenizer.from_pretrained(model_dir)(texts, max_length=max_length, padding=False,
                                                                          return_tensors=None).input_ids]
    if sort:
        lengths = sorted(lengths, reverse=True)
    padded = sum(max(lengths[i:i + batch_size]) * len(lengths[i:i + batch_size])
                 for i in range(0, len(lengths), batch_size))
    return 1 - sum(lengths) / padded


def measure(contenders: list[tuple[str, Callable]], texts: list[str], repeats: int) -> list[dict]:
    """Median seconds of each contender, repetitions taken in turns (A B C A B C ...) so that the machine's
    slow and fast spells fall on all of them alike; embeddings compared with the first contender's."""
    for _, run in contenders:
        run(texts[:64])  # warm-up: allocator, kernels, lazy imports
    seconds: dict[str, list[float]] = {name: [] for name, _ in contenders}
    results: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, run in contenders:
            started = time.perf_counter()
            results[name] = run(texts)
            seconds[name].append(time.perf_counter() - started)
    reference = results[contenders[0][0]]
    rows = []
    for name, _ in contenders:
        median = statistics.median(seconds[name])
        diff = float(np.abs(results[name] - reference).max())
        rows.append({"contender": name, "median_s": round(median, 3), "texts_per_s": round(len(texts) / median, 1),
                     "max_abs_diff_vs_bertkit": diff, "runs_s": [round(t, 2) for t in seconds[name]]})
        print(f"{name:<38} {median:8.2f} s  {len(texts) / median:8.1f} texts/s  max|diff| {diff:.1e}  "
              f"runs {' '.join(f'{t:.2f}' for t in seconds[name])}", file=sys.stderr)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="all-minilm-l6-v2", help="model directory or packaged model")
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fixed", type=int, default=0, help="also time batches of texts all exactly this many tokens")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--skip-eager", action="store_true")
    p.add_argument("--bf16", action="store_true", help="also bertkit and length-sorted transformers in bfloat16 "
                   "(fast on CPUs with AMX or AVX512-BF16; their max|diff| shows what the precision costs)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = str(packaged.resolve(args.model).model_dir)
    texts = mixed_texts(args.texts, seed=0)
    print(f"{len(texts)} mixed texts; padding share of input-order batches "
          f"{padding_share(model_dir, texts, args.batch_size, args.max_length, False):.0%}, of length-sorted "
          f"{padding_share(model_dir, texts, args.batch_size, args.max_length, True):.0%}; torch threads "
          f"{torch.get_num_threads()}", file=sys.stderr)
    suites = [("mixed", texts)]
    if args.fixed:
        suites.append((f"fixed{args.fixed}", fixed_length_texts(model_dir, args.fixed, count=256)))
    rows = []
    for suite, data in suites:
        contenders = [("bertkit", bertkit_embedder(model_dir, args.batch_size, args.max_length)),
                      ("transformers sdpa, input order", transformers_embedder(model_dir, "sdpa", False,
                                                                                args.batch_size, args.max_length)),
                      ("transformers sdpa, length-sorted", transformers_embedder(model_dir, "sdpa", True,
                                                                                  args.batch_size, args.max_length))]
        if args.bf16:
            contenders += [("bertkit bf16", bertkit_embedder(model_dir, args.batch_size, args.max_length,
                                                             torch.bfloat16)),
                           ("transformers sdpa bf16, length-sorted", transformers_embedder(
                               model_dir, "sdpa", True, args.batch_size, args.max_length, torch.bfloat16))]
        if not args.skip_eager:
            contenders.append(("transformers eager, input order",
                               transformers_embedder(model_dir, "eager", False, args.batch_size, args.max_length)))
        print(f"-- {suite}", file=sys.stderr)
        rows.extend({"suite": suite, **row} for row in measure(contenders, data, args.repeats))
        base = next(r for r in rows if r["suite"] == suite and r["contender"] == "bertkit")["median_s"]
        for r in rows:
            if r["suite"] == suite:
                r["bertkit_speedup"] = round(r["median_s"] / base, 2)
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
