"""Trains a tiny classifier on synthetic data; run directly or under torchrun (used by test_train.py).

usage: train_tiny.py OUTPUT_DIR BATCH_SIZE GRAD_ACCUM [resume] [fsdp] [kill-at-eval=N] [family=MODEL_TYPE]

family=electra: ELECTRA with 16-wide embeddings projected to 32; family=distilbert: no token types.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import tiny_config  # noqa: E402

from bertkit import BertForSequenceClassification  # noqa: E402
from bertkit.tasks.classify import evaluate  # noqa: E402
from bertkit.train import TrainArgs, fit, seed_everything  # noqa: E402


def synthetic(n: int, seed: int, token_types: bool = True) -> list[dict]:
    """Label 1 texts draw cue tokens from 10..12, label 0 from 20..22, amid random filler; lengths vary."""
    rng = random.Random(seed)
    features = []
    for _ in range(n):
        label = rng.randint(0, 1)
        body = [rng.choice([10, 11, 12] if label else [20, 21, 22]) if rng.random() < 0.5 else rng.randint(30, 90)
                for _ in range(rng.randint(3, 12))]
        ids = [2, *body, 3]
        features.append({"input_ids": ids, "labels": label, **({"token_type_ids": [0] * len(ids)} if token_types else {})})
    return features


def main(output: str, batch_size: int, grad_accum: int, resume: bool = False, kill_at_eval: int = 0,
         dropout: float = 0.1, epochs: float = 2.0, fsdp: bool = False,
         family: str = "bert") -> BertForSequenceClassification:
    shapes = {"bert": {}, "electra": {"embedding_size": 16}, "distilbert": {"type_vocab_size": 0}}[family]
    config = tiny_config(model_type=family, num_labels=2, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout, **shapes)
    token_types = config.family.token_types
    train, dev = synthetic(400, seed=0, token_types=token_types), synthetic(100, seed=1, token_types=token_types)
    seed_everything(0)
    model = BertForSequenceClassification(config)
    evaluations = {"n": 0}

    def run_eval(m):
        evaluations["n"] += 1
        if evaluations["n"] == kill_at_eval:
            raise KeyboardInterrupt("simulated kill")
        return evaluate(m, dev, 0, "classification")

    args = TrainArgs(output_dir=Path(output), epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, lr=1e-3,
                     seed=1, eval_every=10, metric="accuracy", greater_is_better=True, progress=False,
                     resume=resume, overwrite=not resume, fsdp=fsdp)
    fit(model, train, args, run_eval, pad_token_id=0)
    return model


if __name__ == "__main__":
    import os

    import torch

    from bertkit import parallel

    out, bs, accum, flags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    kill = [int(f.split("=")[1]) for f in flags if f.startswith("kill-at-eval=")]
    family = next((f.split("=")[1] for f in flags if f.startswith("family=")), "bert")
    try:
        model = main(out, bs, accum, resume="resume" in flags, dropout=0.0, fsdp="fsdp" in flags,
                     kill_at_eval=kill[0] if kill else 0, family=family)
    except KeyboardInterrupt:
        sys.exit(130)
    assert parallel.is_sharded(model) == ("fsdp" in flags and int(os.environ.get("WORLD_SIZE", "1")) > 1)
    state = parallel.model_state(model) or model.state_dict()  # a sharded model is gathered to rank 0
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(state, Path(out) / "final_state.pt")
