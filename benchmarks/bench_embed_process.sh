#!/usr/bin/env bash
# Whole-process timing of `bertkit embed` against the transformers script doing the same work, on the same
# 1,000 real mixed texts (reviews, tweets, news), one after the other, REPEATS times each; prints every run, the
# medians and their ratio, and checks the embeddings agree. Usage: bash benchmarks/bench_embed_process.sh [REPEATS]
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
  /usr/bin/time -a -o "$OUT/bertkit.s" -f "%e" bertkit embed "$MODEL" --input "$OUT/texts.txt" --output "$OUT/bk.npy" \
    --batch-size 32 --max-length 256 --pooling mean --no-normalize --quiet 2>"$OUT/log" || { cat "$OUT/log"; exit 1; }
  /usr/bin/time -a -o "$OUT/transformers.s" -f "%e" python benchmarks/embed_transformers.py "$MODEL" \
    --input "$OUT/texts.txt" --output "$OUT/hf.npy" --batch-size 32 --max-length 256 >"$OUT/log" 2>&1 \
    || { cat "$OUT/log"; exit 1; }
  echo "run $i: bertkit $(tail -1 "$OUT/bertkit.s") s, transformers $(tail -1 "$OUT/transformers.s") s"
done
python - "$OUT" <<'PY'
import statistics, sys
import numpy as np
out = sys.argv[1]
runs = {name: [float(t) for t in open(f"{out}/{name}.s")] for name in ("bertkit", "transformers")}
bertkit, transformers = (statistics.median(runs[name]) for name in runs)
print(f"medians: bertkit {bertkit:.2f} s, transformers {transformers:.2f} s: bertkit {transformers / bertkit:.2f}x")
a, b = np.load(f"{out}/bk.npy"), np.load(f"{out}/hf.npy")
print(f"max |diff| {abs(a - b).max():.1e} over {a.shape[0]} x {a.shape[1]} embeddings")
PY
rm -rf "$OUT"
