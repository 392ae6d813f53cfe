"""What the models return: small dataclasses with Hugging Face's attribute names."""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensors = tuple[torch.Tensor, ...]


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooler_output: torch.Tensor | None = None  # (B, H): tanh(dense(h_[CLS])); None without a pooler
    hidden_states: Tensors | None = None  # L+1 tensors (B, T, H): embeddings, then each layer
    attentions: Tensors | None = None  # L tensors (B, nH, T, T), when asked for


@dataclass
class LogitsOutput:
    """Masked LM (B, T, V), sequence classification (B, labels), token classification (B, T, labels),
    multiple choice (B, choices)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class PreTrainingOutput:
    prediction_logits: torch.Tensor  # (B, T, V) masked-LM scores; (targets, V) with masked_positions_only
    seq_relationship_logits: torch.Tensor  # (B, 2): 0 = B follows A, 1 = B is random
    loss: torch.Tensor | None = None  # MLM loss + NSP loss
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class QuestionAnsweringOutput:
    start_logits: torch.Tensor  # (B, T)
    end_logits: torch.Tensor  # (B, T)
    loss: torch.Tensor | None = None  # mean of start and end cross-entropy
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
