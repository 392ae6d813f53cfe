"""Synthetic English-like corpora and a tiny pretraining run; run directly or under torchrun (test_pretrain.py).

usage: pretrain_tiny.py CORPUS_FILE OUTPUT_DIR BATCH_SIZE GRAD_ACCUM TOKENIZER_DIR [fsdp]

Runs that must match share a tokenizer: tokenizers' WordPiece trainer is not deterministic
(huggingface/tokenizers#1794: continuation pieces get ids in hash-map order, which breaks merge ties).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bertkit.pretrain import PretrainArgs, PretrainResult, pretrain  # noqa: E402
from bertkit.pretraining_data import ExampleSettings  # noqa: E402
from bertkit.train import TrainArgs  # noqa: E402

SUBJECTS = ["the sailor", "a whale", "the captain", "my friend", "the ship", "our crew", "the old man", "a harpooneer"]
VERBS = ["sees", "follows", "hunts", "fears", "loves", "watches", "finds", "remembers"]
OBJECTS = ["the sea", "a storm", "the white whale", "the harbour", "an island", "the night", "the compass", "a letter"]
ENDINGS = ["at dawn", "with great care", "in silence", "before the storm", "every morning", "without a word"]


def write_tokenizer(corpus: Path, directory: Path) -> Path:
    from bertkit import Tokenizer

    directory.mkdir(parents=True)
    Tokenizer.train([corpus], vocab_size=400, show_progress=False).save_pretrained(directory)
    return directory


def write_corpus(path: Path, documents: int, seed: int = 0) -> Path:
    """Documents of 4-12 sentences separated by blank lines; each document keeps to one subject and verb family."""
    rng = random.Random(seed)
    lines = []
    for _ in range(documents):
        subject = rng.choice(SUBJECTS)
        sentences = [f"{subject.capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ENDINGS)}."
                     for _ in range(rng.randint(4, 12))]
        lines.append(" ".join(sentences))
    path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(corpus: Path, output: Path, batch_size: int = 8, grad_accum: int = 1, steps: int = 30, resume: bool = False,
        objective: str = "nsp", dropout: float = 0.1, eval_every: int = 10, tokenizer: Path | None = None,
        fsdp: bool = False) -> PretrainResult:
    args = PretrainArgs(corpus=[corpus], tokenizer=tokenizer, preset="tiny", vocab_size=400, eval_fraction=0.1,
                        examples=ExampleSettings(objective=objective, max_length=48),
                        config_overrides={"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout})
    train = TrainArgs(output_dir=output, max_steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=2e-3,
                      warmup_ratio=0.1, seed=3, eval_every=eval_every, progress=False, resume=resume,
                      overwrite=not resume, fsdp=fsdp)
    return pretrain(args, train)


if __name__ == "__main__":
    import torch

    corpus_file, out, bs, accum, tokenizer = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    run(corpus_file, out, batch_size=bs, grad_accum=accum, steps=12, dropout=0.0, tokenizer=tokenizer,
        fsdp="fsdp" in sys.argv[6:])
    from bertkit import BertForPreTraining

    if int(__import__("os").environ.get("RANK", "0")) == 0:
        model = BertForPreTraining.from_pretrained(out / "checkpoint-last" / "model")
        torch.save(model.state_dict(), out / "final_state.pt")
