"""Model FLOPs of the encoder, and the peak a GPU is sold with: what model FLOP utilisation (MFU) is measured by.

MFU counts the work the model needs, not what an implementation spends: real tokens only (padding is waste,
not work), a multiply-add as 2 FLOPs, matrix products only (LayerNorm, softmax and GELU are a rounding
error beside them). Per sequence of s tokens, width d, feed-forward width f and L layers:

    L · (8·s·d²  +  4·s·d·f  +  4·s²·d)  +  2·s·e·d  +  2·d²
         Q K V O    feed-forward  QKᵀ and PV    E -> H       pooler

which is the BERT literature's L·(24·d² + 4·s·d) per token when f = 4·d. The embedding projection is ELECTRA's,
whose embeddings have their own width e (only when e != d); the pooler is counted where the family's bare encoder
has one (BERT, RoBERTa; not DistilBERT or ELECTRA). Every family runs this same encoder (`model.py`).
"""

from __future__ import annotations

import re
from typing import Iterable

import torch

from .config import EncoderConfig

# Dense (not 2:4-sparse) tensor-core peaks in TFLOP/s for bf16 and fp16, from NVIDIA's data sheets, by a word
# of torch.cuda.get_device_name() ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"); the first match counts,
# so "H100 PCIe" comes before "H100". A GPU not listed needs its peak given.
GPU_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM
    ("H200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
)


def encoder_forward_flops(config: EncoderConfig, lengths: Iterable[int], pooler: bool | None = None) -> int:
    """FLOPs of one forward pass of the encoder over sequences of these real lengths; `pooler`: count the pooler
    (default: where the family's encoder has one)."""
    d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    e = config.embedding_width
    projection = 2 * e * d if e != d else 0  # per token
    pooled = 2 * d * d if (config.family.pooler if pooler is None else pooler) else 0
    total = 0
    for s in lengths:
        total += layers * (8 * s * d * d + 4 * s * d * f + 4 * s * s * d) + s * projection + pooled
    return total


def gpu_peak_tflops(device: torch.device, dtype: torch.dtype) -> float | None:
    """The data-sheet bf16/fp16 peak of a CUDA device, or None (CPU, another dtype, or a GPU not listed)."""
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_PEAK_TFLOPS if re.search(rf"\b{re.escape(key)}\b", name)), None)


__all__ = ["GPU_PEAK_TFLOPS", "encoder_forward_flops", "gpu_peak_tflops"]
