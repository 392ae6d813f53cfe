"""`PreTrainedModel`: what every bertkit model shares: config, initialisation, load and save."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from . import checkpoint
from .config import EncoderConfig

M = TypeVar("M", bound="PreTrainedModel")


class PreTrainedModel(nn.Module):
    head_kind = "base"  # what the model computes (families.HEAD_KINDS): picks the transformers class it saves as

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.load_report: checkpoint.LoadReport | None = None  # set by from_pretrained
        config.family.architecture(self.head_kind)  # refuse, before anything is built, a head the family lacks

    @property
    def base_model_prefix(self) -> str:
        """The attribute holding the encoder in task models, and the key prefix in files (`bert`, `roberta`)."""
        return self.config.family.prefix

    @property
    def base_model(self) -> nn.Module:
        """The encoder: the model itself for a bare encoder, else its `bert` / `roberta` / ... attribute."""
        return getattr(self, self.base_model_prefix, self)

    # --- initialisation ---

    def init_weights(self) -> None:
        """Initialise this model's own modules; a nested PreTrainedModel has already done its own."""
        for child in self.children():
            if not isinstance(child, PreTrainedModel):
                child.apply(self._init_module)
        self.tie_weights()

    def _init_module(self, module: nn.Module) -> None:
        """BERT's initialisation: N(0, initializer_range) for matrices and embeddings, LayerNorm to identity."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        if getattr(module, "sinusoidal", False):  # after its children: the table was just drawn at random
            module.reset_sinusoidal_positions()

    def tie_weights(self) -> None:
        """Heads whose output matrix is the word-embedding matrix share the parameter here."""

    def tied_parameter_names(self) -> list[str]:
        """State-dict keys that alias another parameter; neither saved nor expected when loading."""
        return []

    # --- conveniences ---

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count, tied matrices counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def gradient_checkpointing_enable(self, enabled: bool = True) -> None:
        self.config.gradient_checkpointing = enabled

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # --- Hugging Face-format directories ---

    @classmethod
    def from_pretrained(
        cls: type[M],
        directory: str | os.PathLike,
        *,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        **config_overrides: Any,
    ) -> M:
        """Load a Hugging Face-format model directory (config.json + safetensors or a safe .bin).

        Keyword arguments override config fields, e.g. `num_labels=3` or `attn_implementation="eager"`.
        Weights missing from the file (a new task head) are initialised and listed in `load_report`
        and a warning; weights the model has no use for (another head) are ignored. The model is
        returned in eval mode, as transformers does.
        """
        config = checkpoint.load_config(directory, **config_overrides)
        model = checkpoint.build_loaded(lambda: cls(config), checkpoint.read_state_dict(directory), str(directory))
        if dtype is not None or device is not None:
            model.to(device=device, dtype=dtype)
        return model.eval()

    def save_pretrained(self, directory: str | os.PathLike, tokenizer: checkpoint.SavesPretrained | None = None,
                        state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write config.json + model.safetensors (+ the tokenizer's files), replacing `directory` atomically.
        `state_dict` replaces the model's own tensors (e.g. the gathered weights of a sharded model)."""
        return checkpoint.save_model(self, directory, tokenizer, state_dict)
