"""The BERT encoder: embeddings, bidirectional self-attention layers, pooler, and `BertModel`.

Module and parameter names follow Hugging Face's (`embeddings.word_embeddings`,
`encoder.layer.N.attention.self.query`, ...), so a state dict is a transformers state dict.
Shapes: B batch, T tokens, H hidden size, nH heads, dH head size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .activations import get_activation
from .attention import ATTENTION_KERNELS, padding_mask_bias
from .config import BertConfig
from .outputs import EncoderOutput
from .pretrained import PreTrainedModel


class BertEmbeddings(nn.Module):
    """word + segment + learned absolute position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None, position_ids: torch.Tensor | None
    ) -> torch.Tensor:
        seq_len = input_ids.size(-1)
        if seq_len > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"sequence of {seq_len} tokens is longer than max_position_embeddings="
                f"{self.position_embeddings.num_embeddings}; truncate it or use sliding windows"
            )
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=input_ids.device)  # (T,), broadcast over B
        embeddings = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)  # (B, T, H)
        if token_type_ids is None:
            embeddings = embeddings + self.token_type_embeddings.weight[0]  # all segment A
        else:
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    """The Q, K, V projections; the attention itself is a kernel function chosen by name."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, T, H) -> (B, nH, T, dH)

    def forward(
        self, hidden: torch.Tensor, mask_bias: torch.Tensor | None, kernel: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        query, key, value = (self._split_heads(proj(hidden)) for proj in (self.query, self.key, self.value))
        dropout_p = self.dropout_p if self.training else 0.0
        context, probs = ATTENTION_KERNELS[kernel](query, key, value, mask_bias, dropout_p)  # (B, nH, T, dH)
        return context.transpose(1, 2).flatten(-2), probs  # (B, T, H)


class BertResidualOutput(nn.Module):
    """LayerNorm(residual + dropout(dense(x))): the post-LN sublayer exit, used after attention and FFN."""

    def __init__(self, config: BertConfig, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertResidualOutput(config, config.hidden_size)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = get_activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))  # (B, T, intermediate)


class BertLayer(nn.Module):
    """One post-LN transformer block: self-attention sublayer, then feed-forward sublayer."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertResidualOutput(config, config.intermediate_size)

    def forward(
        self, hidden: torch.Tensor, mask_bias: torch.Tensor | None, kernel: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, probs = self.attention.self(hidden, mask_bias, kernel)
        hidden = self.attention.output(context, hidden)  # (B, T, H)
        hidden = self.output(self.intermediate(hidden), hidden)  # (B, T, H)
        return hidden, probs


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self,
        hidden: torch.Tensor,
        mask_bias: torch.Tensor | None,
        kernel: str,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        all_hidden = [hidden] if output_hidden_states else None
        all_probs = [] if kernel == "eager" else None
        recompute = self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layer:
            if recompute:
                hidden, probs = checkpoint(layer, hidden, mask_bias, kernel, use_reentrant=False)
            else:
                hidden, probs = layer(hidden, mask_bias, kernel)
            if all_hidden is not None:
                all_hidden.append(hidden)
            if all_probs is not None:
                all_probs.append(probs)
        return hidden, _tuple_or_none(all_hidden), _tuple_or_none(all_probs)


class BertPooler(nn.Module):
    """tanh(dense(h_[CLS])): the sentence vector NSP and sequence classification read."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, H)


class BertModel(PreTrainedModel):
    """The bare encoder: returns the last hidden states and the pooled [CLS] vector."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> EncoderOutput:
        """input_ids, attention_mask, token_type_ids: (B, T). Padding is marked by attention_mask == 0.

        Attention maps need the eager kernel; asking for them switches this call to it.
        """
        kernel = "eager" if output_attentions else self.config.attn_implementation
        hidden = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, H)
        mask_bias = padding_mask_bias(attention_mask, hidden.dtype)  # (B, 1, 1, T) or None
        hidden, all_hidden, all_probs = self.encoder(hidden, mask_bias, kernel, output_hidden_states)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return EncoderOutput(
            last_hidden_state=hidden,
            pooler_output=pooled,
            hidden_states=all_hidden,
            attentions=all_probs if output_attentions else None,
        )


def _tuple_or_none(items: list[torch.Tensor] | None) -> tuple[torch.Tensor, ...] | None:
    return tuple(items) if items is not None else None


__all__ = ["BertModel", "BertEmbeddings", "BertEncoder", "BertLayer", "BertPooler"]
