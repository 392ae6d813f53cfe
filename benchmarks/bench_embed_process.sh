#!/usr/bin/env bash
# Whole-process timing of `bertkit embed` against the transformers script doing the same work, on the same
# 1,000 real mixed texts (reviews, tweets, news), one after the other, REPEATS times each; prints both times
# and checks the embeddings agree. Usage: bash benchmarks/bench_embed_process.sh [REPEATS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPEATS=${1:-3}
OUT=$(mktemp -d)
MODEL=$(python -c "from bertkit import packaged; print(packaged.resolve('all-minilm-l6-v2').model_dir)")
python -c "
import sys; sys.path.insert(0, 'benchmarks')
from bench_inference import mixed_texts
open('$OUT/texts.txt', 'w', encoding='utf-8').write(''.join(t.replace('\n', ' ') + '\n' for t in mixed_texts(1000, 0)))"
for i in $(seq "$REPEATS"); do
  /usr/bin/time -f "bertkit      %e s" bertkit embed "$MODEL" --input "$OUT/texts.txt" --output "$OUT/bk.npy" \
    --batch-size 32 --max-length 256 --pooling mean --no-normalize --quiet 2>&1 | grep -v truncated
  /usr/bin/time -f "transformers %e s" python benchmarks/embed_transformers.py "$MODEL" --input "$OUT/texts.txt" \
    --output "$OUT/hf.npy" --batch-size 32 --max-length 256 2>&1 | grep -v "Loading\|truncated"
done
python -c "import numpy as np; a, b = np.load('$OUT/bk.npy'), np.load('$OUT/hf.npy'); print('max |diff|', abs(a - b).max(), a.shape)"
rm -rf "$OUT"
