"""The encoder every family runs: embeddings, bidirectional self-attention layers, pooler, and `EncoderModel`.

Module and parameter names are BERT's in transformers (`embeddings.word_embeddings`,
`encoder.layer.N.attention.self.query`, ...); a family whose files name them otherwise (DistilBERT's `q_lin`)
is translated at load and save time (`families/`). What differs between families is chosen by the config:
embedding width (ELECTRA), positions counted after padding (RoBERTa), token types or none (DistilBERT), a pooler.
Shapes: B batch, T tokens, H hidden size, E embedding width, nH heads, dH head size.

The encoder runs either on the padded batch (B, T, H) or, unpadded, on its N real tokens packed as
(N, H) (see `unpad.py`): everything but attention works token by token, so only attention needs to
know which case it is in, from the mask it is given.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .activations import get_activation
from .attention import ATTENTION_KERNELS, padding_mask_bias, varlen_attention
from .config import EncoderConfig
from .outputs import EncoderOutput
from .pretrained import PreTrainedModel
from .unpad import Unpadded, pad, unpad, unpad_input

# Padded: the (B, 1, 1, T) additive bias, or None when nothing is padded. Unpadded: where each sequence lies.
AttentionMask = torch.Tensor | Unpadded | None

# With fewer padding positions than this, unpadding costs about what it saves (measured at MiniLM sizes: 0.99-1.03x
# with 5-14 padding positions, 1.7x with 130), so `config.unpad=None` keeps such batches padded.
AUTO_UNPAD_MIN_PADDING = 64

# Without gradients, the feed-forward runs on this many bytes of (tokens, intermediate) activation at a time. A
# whole batch's (32 x 256 tokens at MiniLM sizes: 50 MB) is above glibc's largest mmap threshold (32 MiB), so
# it is mapped fresh and page-faulted in again by every layer; in chunks it is reused from the heap and stays
# in cache. Measured on a 32 x 256 batch of MiniLM on 2 cores: 1.14x for the whole forward pass, results
# unchanged (tokens are independent here). Training keeps the whole batch: autograd stores every chunk anyway.
FEED_FORWARD_CHUNK_BYTES = 8 << 20


class BertEmbeddings(nn.Module):
    """word + segment + position embeddings (width E), then LayerNorm and dropout.

    Positions are 0..T-1 (BERT), or counted from pad_token_id + 1 over the non-padding tokens of each row
    (RoBERTa: padding keeps position pad_token_id), or a fixed sinusoidal table (DistilBERT's option)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        width = config.embedding_width
        offset_positions = config.family.position_offset
        self.word_embeddings = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, width,
                                                padding_idx=config.pad_token_id if offset_positions else None)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width) if config.type_vocab_size else None
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pad_token_id = config.pad_token_id if offset_positions else None
        self.max_length = config.max_length
        self.family_name = config.family.name
        self.sinusoidal = config.sinusoidal_positions
        if self.sinusoidal:
            self.position_embeddings.weight.requires_grad_(False)

    def reset_sinusoidal_positions(self) -> None:
        """DistilBERT's table: sin at even, cos at odd dimensions, pos / 10000^(2·(j // 2) / E)."""
        table = self.position_embeddings.weight
        positions = torch.arange(table.size(0), dtype=torch.float64)[:, None]
        rates = 10000.0 ** (2 * (torch.arange(table.size(1)) // 2) / table.size(1)).double()
        angles = positions / rates  # (P, E)
        with torch.no_grad():
            table[:, 0::2] = angles[:, 0::2].sin().to(table.dtype)
            table[:, 1::2] = angles[:, 1::2].cos().to(table.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        unpadded: Unpadded | None = None,
    ) -> torch.Tensor:
        """(B, T) ids -> (B, T, E); with `unpadded`, (N, E) for the real tokens only (looked up alone)."""
        seq_len = input_ids.size(-1)
        if seq_len > self.max_length:
            raise ValueError(f"sequence of {seq_len} tokens is longer than max_position_embeddings="
                             f"{self.position_embeddings.num_embeddings} allows ({self.max_length} tokens); "
                             "truncate it or use sliding windows")
        if token_type_ids is not None and self.token_type_embeddings is None:
            raise ValueError(f"{self.family_name} takes no token_type_ids (it has no segment embeddings); "
                             "pass token_type_ids=None")
        if position_ids is None:
            position_ids = (positions_after_padding(input_ids, self.pad_token_id) if self.pad_token_id is not None
                            else torch.arange(seq_len, device=input_ids.device))  # (B, T), or (T,) broadcast
        if unpadded is not None:
            input_ids, position_ids = unpad(input_ids, unpadded), unpad(position_ids.expand_as(input_ids), unpadded)
            token_type_ids = unpad(token_type_ids, unpadded) if token_type_ids is not None else None
        embeddings = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)  # (B, T, E) or (N, E)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                embeddings = embeddings + self.token_type_embeddings.weight[0]  # all segment A
            else:
                embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


def positions_after_padding(input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """(B, T) ids -> RoBERTa's (B, T) position ids: pad_token_id + 1, + 2, ... over each row's non-padding tokens,
    pad_token_id on padding (as transformers counts them: from the ids, not the attention mask)."""
    real = input_ids.ne(pad_token_id).long()
    return real.cumsum(dim=1) * real + pad_token_id


class BertSelfAttention(nn.Module):
    """The Q, K, V projections; the attention itself is a kernel function chosen by name."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(
        self, hidden: torch.Tensor, mask: AttentionMask, kernel: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # (B, T, H) -> (B, T, nH, dH), or unpadded (N, H) -> (N, nH, dH)
        query, key, value = (proj(hidden).unflatten(-1, (self.num_heads, self.head_dim))
                             for proj in (self.query, self.key, self.value))
        dropout_p = self.dropout_p if self.training else 0.0
        if isinstance(mask, Unpadded):
            return varlen_attention(query, key, value, mask, dropout_p, kernel).flatten(-2), None  # (N, H)
        query, key, value = (x.transpose(1, 2) for x in (query, key, value))  # (B, nH, T, dH)
        context, probs = ATTENTION_KERNELS[kernel](query, key, value, mask, dropout_p)  # (B, nH, T, dH)
        return context.transpose(1, 2).flatten(-2), probs  # (B, T, H)


class BertResidualOutput(nn.Module):
    """LayerNorm(residual + dropout(dense(x))): the post-LN sublayer exit, used after attention and FFN."""

    def __init__(self, config: EncoderConfig, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class BertAttention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertResidualOutput(config, config.hidden_size)


class BertIntermediate(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = get_activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))  # (B, T, intermediate)


class BertLayer(nn.Module):
    """One post-LN transformer block: self-attention sublayer, then feed-forward sublayer."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertResidualOutput(config, config.intermediate_size)

    def forward(
        self, hidden: torch.Tensor, mask: AttentionMask, kernel: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, probs = self.attention.self(hidden, mask, kernel)
        hidden = self.attention.output(context, hidden)  # (B, T, H) or (N, H)
        return self.feed_forward(hidden), probs  # (B, T, H) or (N, H)

    def feed_forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """LayerNorm(hidden + W2·act(W1·hidden)), in chunks of tokens when no gradient is kept (eager only: a
        compiled graph would unroll the chunks, and compile anew for every number of tokens)."""
        token_bytes = self.intermediate.dense.out_features * hidden.element_size()
        chunk_tokens = max(1, FEED_FORWARD_CHUNK_BYTES // token_bytes)
        if (torch.is_grad_enabled() or torch.compiler.is_compiling()
                or hidden.numel() <= chunk_tokens * hidden.size(-1)):
            return self.output(self.intermediate(hidden), hidden)
        tokens = hidden.reshape(-1, hidden.size(-1))  # (B·T or N, H)
        return torch.cat([self.output(self.intermediate(part), part) for part in tokens.split(chunk_tokens)]
                         ).view_as(hidden)


class BertEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self,
        hidden: torch.Tensor,
        mask: AttentionMask,
        kernel: str,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        all_hidden = [hidden] if output_hidden_states else None
        all_probs = [] if output_attentions else None  # (B, nH, T, T) per layer: kept only when asked for
        recompute = self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layer:
            if recompute:
                hidden, probs = checkpoint(layer, hidden, mask, kernel, use_reentrant=False)
            else:
                hidden, probs = layer(hidden, mask, kernel)
            if all_hidden is not None:
                all_hidden.append(hidden)
            if all_probs is not None:
                all_probs.append(probs)
        return hidden, _tuple_or_none(all_hidden), _tuple_or_none(all_probs)


class BertPooler(nn.Module):
    """tanh(dense(h_[CLS])): the sentence vector NSP and sequence classification read."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, H)


class EncoderModel(PreTrainedModel):
    """The bare encoder of any family: returns the last hidden states and, where the family has one, the pooled
    first-token vector."""

    head_kind = "base"

    def __init__(self, config: EncoderConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        # ELECTRA's narrower embeddings are projected to the hidden size (E != H).
        self.embeddings_project = (nn.Linear(config.embedding_width, config.hidden_size)
                                   if config.embedding_width != config.hidden_size else None)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer and config.family.pooler else None
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

        Hidden states come back as (B, T, H) either way. At padding positions their values mean nothing:
        the padded encoder computes them (as transformers does), the unpadded one (`config.unpad`) leaves zeros.
        Attention maps need the eager kernel; asking for them switches this call to it.
        """
        kernel = "eager" if output_attentions else self.config.attn_implementation
        unpadded = self._unpadded(attention_mask, output_attentions)
        hidden = self.embeddings(input_ids, token_type_ids, position_ids, unpadded)  # (B, T, E), or (N, E)
        if self.embeddings_project is not None:
            hidden = self.embeddings_project(hidden)  # (B, T, H), or (N, H)
        mask = unpadded if unpadded is not None else padding_mask_bias(attention_mask, hidden.dtype)
        hidden, all_hidden, all_probs = self.encoder(hidden, mask, kernel, output_hidden_states, output_attentions)
        to_padded = partial(pad, u=unpadded) if unpadded is not None else _unchanged
        hidden = to_padded(hidden)  # (B, T, H)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return EncoderOutput(
            last_hidden_state=hidden,
            pooler_output=pooled,
            hidden_states=tuple(map(to_padded, all_hidden)) if all_hidden is not None else None,
            attentions=all_probs,
        )

    def _unpadded(self, attention_mask: torch.Tensor | None, output_attentions: bool) -> Unpadded | None:
        """Where the real tokens are, if this call runs unpadded: as `config.unpad` says, or when it is None,
        once the batch has AUTO_UNPAD_MIN_PADDING padding positions (on CPU, unpadding 32 texts of 8..256
        tokens measured 1.2-1.6x faster; with a few padding positions it gains nothing).
        Attention maps are (B, nH, T, T), so asking for them keeps the padded layout.
        """
        if output_attentions or attention_mask is None or self.config.unpad is False:
            return None
        if self.config.unpad is None and int((attention_mask == 0).sum()) < AUTO_UNPAD_MIN_PADDING:
            return None
        return unpad_input(attention_mask)


def _unchanged(hidden: torch.Tensor) -> torch.Tensor:
    return hidden


def _tuple_or_none(items: list[torch.Tensor] | None) -> tuple[torch.Tensor, ...] | None:
    return tuple(items) if items is not None else None


BertModel = EncoderModel  # the name it had when bertkit was BERT only; the same class

__all__ = ["BertEmbeddings", "BertEncoder", "BertLayer", "BertModel", "BertPooler", "EncoderModel",
           "positions_after_padding"]
