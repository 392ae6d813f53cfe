"""Data parallelism for the engine: DDP (every process holds the whole model) or FSDP (parameters,
gradients and optimizer state sharded across processes, for models too large to replicate).

FSDP here is PyTorch's `fully_shard` (FSDP2): each encoder layer is one unit, gathered just before
it runs and freed after; then the encoder's embeddings (and pooler), then the heads. Saves gather the
full, unsharded tensors to rank 0, so the engine writes the same files with or without FSDP: an
ordinary Hugging Face directory, and a resume point keyed by parameter name.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from .model import BertLayer

# Full (unsharded) tensors on CPU; under FSDP only rank 0 receives them.
_FULL = {"full_state_dict": True, "cpu_offload": True}


def wrap(model: nn.Module, world_size: int, fsdp: bool) -> nn.Module:
    """The module to call for training: `model` itself (one process), DDP, or `model` sharded in place."""
    if world_size == 1:
        return model
    if not fsdp:
        return nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard

    # FSDP2 warns whenever a unit returns a view; the encoder never writes into its outputs in place.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    for module in model.modules():
        if isinstance(module, BertLayer):
            fully_shard(module)
    # The encoder is a unit of its own, so that calling it directly (a bi-encoder's evaluation embeds
    # through `model.bert`) gathers its embeddings. Not when a head shares the word-embedding matrix:
    # a shared parameter must live in a unit that holds both its users, here the root.
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if isinstance(base, nn.Module) and not getattr(model, "tied_parameter_names", list)():
        fully_shard(base)
    fully_shard(model)
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def gradient_sync(wrapped: nn.Module, enabled: bool) -> AbstractContextManager[Any]:
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) on micro-batches before the last."""
    if isinstance(wrapped, nn.parallel.DistributedDataParallel):
        return nullcontext() if enabled else wrapped.no_sync()
    if is_sharded(wrapped):
        wrapped.set_requires_gradient_sync(enabled)  # type: ignore[operator]
    return nullcontext()


def model_state(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The full state dict of a sharded model, gathered on rank 0 (None elsewhere); None when unsharded
    (the model's own `state_dict()` is then complete). A collective: every rank must call it."""
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(**_FULL))


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state keyed by parameter name, unsharded (rank 0's copy is the complete one)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(**_FULL))


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore `optimizer_state` output on every rank, each keeping its own shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def grad_scaler(model: nn.Module, device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """fp16 loss scaling; a sharded model's ranks must agree on skipping a step whose gradients overflowed."""
    if is_sharded(model):
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device.type, enabled=enabled)
    return torch.amp.GradScaler(device.type, enabled=enabled)
