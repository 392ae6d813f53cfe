"""Fine-tuning speed on real mixed-length text: bertkit's engine against a transformers training loop.

Both train the same sequence classifier (MiniLM by default) on the same real texts (reviews, tweets,
news cut at --max-length; see bench_inference.py) with the same optimizer and batch size, for the
same number of optimizer steps, in one run. Labels are random: this measures speed, not accuracy.

- bertkit: `bertkit.train.fit` as `bertkit finetune classify` runs it (tokenise once, length-grouped
  batches, unpadded encoder); steps/s is read from its metrics.jsonl (evaluation and saving excluded).
- transformers: the loop users write: shuffled batches, the tokenizer pads each batch to its longest
  text (dynamic padding), forward, backward, clip, AdamW step.

    python benchmarks/bench_finetune.py --steps 30
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_inference import mixed_texts  # noqa: E402

from bertkit import BertForSequenceClassification, Tokenizer, packaged  # noqa: E402
from bertkit.readers import Record  # noqa: E402
from bertkit.tasks.classify import encode  # noqa: E402
from bertkit.train import TrainArgs, fit  # noqa: E402


def bertkit_steps_per_s(model_dir: str, texts: list[str], labels: list[int], args: argparse.Namespace) -> float:
    tokenizer = Tokenizer.from_pretrained(model_dir)
    records = [Record(t, None, str(y), i + 1) for i, (t, y) in enumerate(zip(texts, labels))]
    features = encode(records, tokenizer, args.max_length, {"0": 0, "1": 1}, "classification", "bench")
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(model_dir, id2label={0: "0", 1: "1"})
    with tempfile.TemporaryDirectory() as out:
        train_args = TrainArgs(output_dir=Path(out), epochs=1, batch_size=args.batch_size, lr=5e-5, seed=0,
                               log_every=1, progress=False, overwrite=True, eval_every=10**9)
        fit(model, features, train_args, lambda m: {"loss": 0.0}, tokenizer.pad_token_id, tokenizer)
        records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    rates = [r["examples_per_s"] for r in records if "examples_per_s" in r][2:]  # skip warm-up steps
    seconds = sum(args.batch_size / rate for rate in rates)
    return len(rates) / seconds


def transformers_steps_per_s(model_dir: str, texts: list[str], labels: list[int], args: argparse.Namespace) -> float:
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification.from_pretrained(model_dir, num_labels=2).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, eps=1e-6, weight_decay=0.01)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    timed, seconds = 0, 0.0
    for step in range(args.steps):
        batch = order[step * args.batch_size:(step + 1) * args.batch_size]
        started = time.perf_counter()
        enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=args.max_length,
                        return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([labels[i] for i in batch])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= 2:  # skip warm-up steps, as for bertkit
            timed, seconds = timed + 1, seconds + time.perf_counter() - started
    return timed / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="all-minilm-l6-v2")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=256)
    args = p.parse_args()
    model_dir = str(packaged.resolve(args.model).model_dir)
    # Cut long texts (a little below max_length) beforehand, so both read exactly the same tokens: bertkit
    # would otherwise read a long text as several windows, transformers only its beginning.
    tokenizer = Tokenizer.from_pretrained(model_dir)
    cut = tokenizer(mixed_texts(args.steps * args.batch_size, seed=1), max_length=args.max_length - 8, padding=False,
                    return_tensors=None)
    texts = [tokenizer.decode(ids) for ids in cut.input_ids]
    labels = [random.Random(i).randint(0, 1) for i in range(len(texts))]
    ours = bertkit_steps_per_s(model_dir, texts, labels, args)
    theirs = transformers_steps_per_s(model_dir, texts, labels, args)
    print(json.dumps({"steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length,
                      "bertkit_steps_per_s": round(ours, 3), "transformers_steps_per_s": round(theirs, 3),
                      "bertkit_speedup": round(ours / theirs, 2), "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
