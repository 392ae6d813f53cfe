"""The model-FLOP count that MFU figures rest on, checked against what torch counts the encoder doing; and the
unpadded encoder's matrix products counted on real tokens alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bertkit import BertModel
from bertkit.flops import encoder_forward_flops, gpu_peak_tflops
from conftest import tiny_config
from family_models import build, family_config

ROOT = Path(__file__).resolve().parents[1]


def counted_flops(model: BertModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(input_ids, attention_mask)
    return {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize("intermediate_size", [37, 128])  # f = 4·d and not
def test_forward_flops_equal_what_the_eager_encoder_does(intermediate_size: int) -> None:
    config = tiny_config(intermediate_size=intermediate_size, attn_implementation="eager")
    model = BertModel(config).eval()
    input_ids = torch.randint(0, config.vocab_size, (3, 11))
    counted = counted_flops(model, input_ids)
    assert sum(counted.values()) == encoder_forward_flops(config, [11, 11, 11])  # addmm (Linear) + bmm (attention)
    assert encoder_forward_flops(config, [11], pooler=False) == encoder_forward_flops(config, [11]) - 2 * 32 * 32


@pytest.mark.parametrize("family", ["roberta", "distilbert", "electra"])
def test_forward_flops_equal_what_each_familys_encoder_does(family: str) -> None:
    """RoBERTa has BERT's pooler, DistilBERT and ELECTRA none; ELECTRA projects its 16-wide embeddings to the
    hidden 32 (2·E·H per token)."""
    model = build(family, "base", attn_implementation="eager")
    config = model.config
    lengths = [11, 11, 11]
    counted = counted_flops(model, torch.randint(3, config.vocab_size, (3, 11)))
    assert sum(counted.values()) == encoder_forward_flops(config, lengths)
    projection = 2 * 16 * 32 * sum(lengths) if family == "electra" else 0
    pooler = 2 * 32 * 32 * len(lengths) if family == "roberta" else 0
    unprojected = tiny_config(hidden_size=32, intermediate_size=37)  # BERT's shape, no pooler, no projection
    assert encoder_forward_flops(config, lengths) == \
        encoder_forward_flops(unprojected, lengths, pooler=False) + projection + pooler


def test_electra_of_equal_widths_has_no_projection() -> None:
    config = family_config("electra", embedding_size=32)
    assert build("electra", "base", embedding_size=32).embeddings_project is None
    assert encoder_forward_flops(config, [9]) == encoder_forward_flops(tiny_config(hidden_size=32, intermediate_size=37),
                                                                       [9], pooler=False)


def test_bert_base_flops_match_the_literature() -> None:
    """L·(24·d² + 4·s·d) per token: 22.3 GFLOP for a 128-token sequence of BERT-base (plus its pooler)."""
    config = tiny_config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    per_sequence = encoder_forward_flops(config, [128], pooler=False)
    assert per_sequence == 12 * (24 * 768**2 + 4 * 128 * 768) * 128
    assert round(per_sequence / 1e9, 1) == 22.3


def test_unpadded_encoder_multiplies_real_tokens_only() -> None:
    """Projections and feed-forward (every Linear: addmm) cost the real tokens' FLOPs when unpadded, the padded
    batch's when not. (CPU attention re-pads, and torch counts no FLOPs for its flash kernel.)"""
    config = tiny_config()
    lengths = [9, 2, 5]
    mask = (torch.arange(9) < torch.tensor(lengths)[:, None]).long()
    input_ids = torch.randint(1, config.vocab_size, (3, 9)) * mask
    d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers

    def linear_flops(tokens: int) -> int:
        return layers * tokens * (8 * d * d + 4 * d * f) + len(lengths) * 2 * d * d  # + the pooler on [CLS]

    config.unpad = True
    assert counted_flops(BertModel(config).eval(), input_ids, mask)["aten.addmm"] == linear_flops(sum(lengths))
    config.unpad = False
    assert counted_flops(BertModel(config).eval(), input_ids, mask)["aten.addmm"] == linear_flops(3 * 9)


def test_unpadded_electra_projects_real_tokens_only() -> None:
    """ELECTRA's embedding projection, like every Linear, runs on the packed real tokens when unpadded."""
    lengths = [9, 2, 5]
    mask = (torch.arange(9) < torch.tensor(lengths)[:, None]).long()
    model = build("electra", "base", unpad=True)
    input_ids = torch.randint(1, model.config.vocab_size, (3, 9)) * mask
    d, f, layers = 32, 37, 2
    tokens = sum(lengths)
    assert counted_flops(model, input_ids, mask)["aten.addmm"] == layers * tokens * (8 * d * d + 4 * d * f) + tokens * 2 * 16 * d


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.4),
    ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H200", 989.4),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA L40S", 362.1),
    ("NVIDIA L4", 121.0),
    ("NVIDIA L40", None),  # not L4
    ("NVIDIA GeForce RTX 4090", None),
])
def test_gpu_peaks_by_device_name(name: str, peak: float | None, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    cuda = torch.device("cuda")
    assert gpu_peak_tflops(cuda, torch.bfloat16) == peak
    assert gpu_peak_tflops(cuda, torch.float32) is None  # tensor-core peaks are for 16-bit types
    assert gpu_peak_tflops(torch.device("cpu"), torch.bfloat16) is None


def test_mfu_benchmark_runs_on_cpu() -> None:
    """benchmarks/bench_mfu.py (written for GPUs) runs end to end; its rows carry its FLOP count."""
    run = subprocess.run(
        [sys.executable, "benchmarks/bench_mfu.py", "--device", "cpu", "--preset", "tiny", "--batch", "2", "--seq", "16",
         "--repeats", "1", "--warmups", "0", "--mixed", "--texts", "40", "--peak-tflops", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["suite"], r["contender"]) for r in rows] == [
        ("fixed2x16", "bertkit"), ("fixed2x16", "transformers sdpa"), ("mixed", "bertkit"),
        ("mixed", "transformers sdpa, input order"), ("mixed", "transformers sdpa, length-sorted")]
    for r in rows:
        assert r["mfu"] == pytest.approx(r["tflops"], abs=0.01)  # a peak of 1 TFLOP/s
    assert all(r["max_abs_diff_vs_bertkit"] < 1e-5 for r in rows if r["suite"] == "mixed")  # the same embeddings
