#!/usr/bin/env bash
# The GPU checks in one run, for a lent CUDA machine that has torch and transformers (bertkit need not be
# installed): the FlashAttention-varlen test, then BERT-base bf16 throughput and MFU at 128 x 128 (bertkit eager
# and torch.compile against transformers sdpa) and on the mixed-length texts. Logs and JSON rows go to
# ${OUT:-gpu_results}/. Extra arguments go to bench_mfu.py (e.g. --repeats 10).
#   bash benchmarks/gpu_checks.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-gpu_results}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$OUT/gpu.txt"
"$PYTHON" -m pytest -m gpu tests/test_unpad.py -q 2>&1 | tee "$OUT/pytest_gpu.log" || status=1
"$PYTHON" benchmarks/bench_mfu.py --compile --mixed "$@" >"$OUT/mfu.jsonl" 2> >(tee "$OUT/mfu.log" >&2) || status=1
exit $status
