"""Padding removal: a padded batch `(B, T, ...)` <-> its real tokens packed as `(N, ...)`.

A batch padded to its longest sequence spends most of its work on padding when lengths vary
(texts of 8..256 tokens padded to 256 are about half padding). Every part of BERT except
attention treats tokens independently, so it can run on the N real tokens alone; attention then
needs to know where each sequence starts and ends, which `cu_seqlens` (cumulative sequence
lengths, the layout FlashAttention's varlen kernels use) records.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Unpadded:
    """Where the real tokens of a padded `(batch, seqlen)` batch are, once packed row after row."""

    indices: torch.Tensor  # (N,) flat positions (row * seqlen + column) of the real tokens, in order
    cu_seqlens: torch.Tensor  # (batch + 1,) int32: sequence i is packed rows cu_seqlens[i]:cu_seqlens[i+1]
    max_seqlen: int  # the longest sequence's real length
    batch: int
    seqlen: int  # T, the padded length
    attention_mask: torch.Tensor  # (B, T) the mask it came from, for kernels that re-pad

    @property
    def num_tokens(self) -> int:
        return self.indices.numel()


def unpad_input(attention_mask: torch.Tensor) -> Unpadded:
    """(B, T) 1/0 mask -> where its real tokens are. Any pattern works: right, left or holes."""
    batch, seqlen = attention_mask.shape
    keep = attention_mask.bool()
    lengths = keep.sum(dim=1, dtype=torch.int32)  # (B,)
    cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))  # (B + 1,), starts at 0
    indices = keep.flatten().nonzero().squeeze(1)  # row-major, so each sequence's tokens stay together
    return Unpadded(indices, cu_seqlens, int(lengths.max()) if batch else 0, batch, seqlen, attention_mask)


def unpad(x: torch.Tensor, u: Unpadded) -> torch.Tensor:
    """(B, T, ...) -> (N, ...): the real tokens only."""
    return x.flatten(0, 1).index_select(0, u.indices)


def pad(x: torch.Tensor, u: Unpadded, fill: float = 0.0) -> torch.Tensor:
    """(N, ...) -> (B, T, ...), with `fill` at the padding positions (which then get no gradient)."""
    padded = x.new_full((u.batch * u.seqlen, *x.shape[1:]), fill)
    return padded.index_put((u.indices,), x).unflatten(0, (u.batch, u.seqlen))


__all__ = ["Unpadded", "unpad_input", "unpad", "pad"]
