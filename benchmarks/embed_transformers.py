"""The transformers peer of `bertkit embed`, as a user writes it: a whole process, for timing side by side.

    python benchmarks/embed_transformers.py MODEL_DIR --input texts.txt --output emb.npy --batch-size 32 --max-length 256

Batches in input order, each padded to its longest text, sdpa attention, mean pooling over real
tokens (sentence-transformers' definition), float32 (lines, hidden) .npy, row i = line i.
Compare: `bertkit embed MODEL_DIR --input texts.txt --output emb.npy --batch-size 32 --max-length 256
--pooling mean --no-normalize` (see benchmarks/bench_embed_process.sh).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256)
    args = p.parse_args()
    with open(args.input, encoding="utf-8") as f:
        texts = f.read().split("\n")
    if texts and texts[-1] == "":
        texts.pop()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model, attn_implementation="sdpa").eval()
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), args.batch_size):
            enc = tokenizer(texts[start:start + args.batch_size], padding=True, truncation=True,
                            max_length=args.max_length, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy())
    np.save(args.output, np.concatenate(rows).astype(np.float32))


if __name__ == "__main__":
    main()
