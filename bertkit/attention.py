"""Attention kernels as plain functions, picked by name (`config.attn_implementation`).

Every kernel takes queries, keys and values split into heads, `(B, heads, T, head_dim)`, and an
additive mask bias `(B, 1, 1, T)` that is 0 on real keys and the dtype's minimum on padding (or None
when nothing is padded). It returns the attended values in the same layout and, where the kernel
materialises them, the attention probabilities `(B, heads, T, T)`.

The unpadded encoder (see `unpad.py`) packs the real tokens of all sequences as `(N, heads, head_dim)`;
`varlen_attention` attends within each packed sequence.
"""

from __future__ import annotations

from functools import cache
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .unpad import Unpadded, pad, unpad

AttentionKernel = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor], float],
    tuple[torch.Tensor, Optional[torch.Tensor]],
]


def eager_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask_bias: torch.Tensor | None, dropout_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(QKᵀ/√d + mask)·V written out, so the probabilities can be returned."""
    scores = query @ key.transpose(-1, -2) * query.size(-1) ** -0.5  # (B, nH, T, T)
    if mask_bias is not None:
        scores = scores + mask_bias
    probs = scores.softmax(dim=-1)
    dropped = F.dropout(probs, p=dropout_p) if dropout_p > 0 else probs
    context = dropped @ value  # (B, nH, T, dH)
    return context, probs


def sdpa_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask_bias: torch.Tensor | None, dropout_p: float
) -> tuple[torch.Tensor, None]:
    """PyTorch's fused scaled-dot-product attention (flash / memory-efficient / math, chosen by torch)."""
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask_bias, dropout_p=dropout_p)
    return context, None


ATTENTION_KERNELS: dict[str, AttentionKernel] = {"eager": eager_attention, "sdpa": sdpa_attention}


def padding_mask_bias(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, T) 1/0 mask -> (B, 1, 1, T) additive bias, or None when no position is padded.

    Returning None for an all-ones mask lets SDPA take its fastest (mask-free) path.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return mask_bias(attention_mask, dtype)


def mask_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) 1/0 mask -> (B, 1, 1, T): 0 on real keys, the dtype's minimum on padding."""
    keep = attention_mask[:, None, None, :].to(dtype)  # (B, 1, 1, T)
    return (1.0 - keep) * torch.finfo(dtype).min


def varlen_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    unpadded: Unpadded,
    dropout_p: float,
    kernel: str = "sdpa",
) -> torch.Tensor:
    """Packed (N, nH, dH) queries, keys, values -> (N, nH, dH): each token attends within its own sequence.

    FlashAttention's varlen kernel where it runs (CUDA, fp16/bf16, and no dropout: it has no dropout
    argument). Elsewhere q, k, v are re-padded for one call of the padded kernel: on CPU that measured
    faster than one SDPA call per sequence (32 small calls per layer, each waking the threads) and far
    faster than nested jagged tensors (whose CPU SDPA loops over sequences in the math kernel).
    Projections and feed-forward, most of the work, skip padding either way.
    """
    if kernel == "sdpa" and _flash_varlen_runs(query, dropout_p):
        max_len = unpadded.max_seqlen
        flash = flash_varlen_kernel()
        return flash(query, key, value, unpadded.cu_seqlens, unpadded.cu_seqlens, max_len, max_len)
    query, key, value = (pad(x, unpadded).transpose(1, 2) for x in (query, key, value))  # (B, nH, T, dH)
    # An unpadded batch has padding (that is why it was unpadded): no need to check the mask on the host.
    bias = mask_bias(unpadded.attention_mask, query.dtype)
    context, _ = ATTENTION_KERNELS[kernel](query, key, value, bias, dropout_p)  # (B, nH, T, dH)
    return unpad(context.transpose(1, 2), unpadded)


def _flash_varlen_runs(query: torch.Tensor, dropout_p: float) -> bool:
    return (query.is_cuda and query.dtype in (torch.float16, torch.bfloat16) and dropout_p == 0.0
            and torch.cuda.get_device_capability(query.device) >= (8, 0) and flash_varlen_kernel() is not None)


@cache
def flash_varlen_kernel() -> Callable[..., torch.Tensor] | None:
    """FlashAttention's varlen kernel (CUDA, torch >= 2.10), imported on first use: its module imports
    torch._dynamo, seconds of start-up that a CPU process never needs."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:  # pragma: no cover - older torch
        return None
    return varlen_attn
