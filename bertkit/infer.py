"""Batched inference: sentence embeddings and fill-mask.

Inputs are tokenised once (the tokenizer's parallel batch path), sorted by length and batched, so
each batch pads only to its own longest member; results come back in input order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batching import Feature, collate, feature_length
from .heads import BertForMaskedLM
from .model import BertLayer, BertModel
from .tokenizer import Tokenizer

logger = logging.getLogger("bertkit")

M = TypeVar("M", bound=torch.nn.Module)

POOLINGS = ("mean", "cls")


@dataclass
class EmbeddingSettings:
    pooling: str = "mean"  # mean of real tokens' last hidden states, or the [CLS] token's
    normalize: bool = False  # scale each embedding to unit length (cosine = dot product)
    max_length: int | None = None  # tokens per text; None = the tokenizer's model_max_length

    @classmethod
    def for_model(cls, model_dir: str | Path) -> EmbeddingSettings:
        """Defaults a sentence-transformers model directory declares (pooling, Normalize, max_seq_length)."""
        model_dir = Path(model_dir)
        settings = cls()
        pooling_file = model_dir / "1_Pooling" / "config.json"
        if pooling_file.is_file():
            settings.pooling = _declared_pooling(json.loads(pooling_file.read_text(encoding="utf-8")))
        modules_file = model_dir / "modules.json"
        if modules_file.is_file():
            modules = json.loads(modules_file.read_text(encoding="utf-8"))
            settings.normalize = any(m.get("type", "").endswith(".Normalize") for m in modules)
        st_config = model_dir / "sentence_bert_config.json"
        if st_config.is_file():
            settings.max_length = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
        return settings


# sentence-transformers' pooling names (6.x: "pooling_mode": NAME; before: "pooling_mode_NAME": true) -> bertkit's.
_ST_POOLINGS = {"cls": "cls", "cls_token": "cls", "mean": "mean", "mean_tokens": "mean"}
_ST_POOLING_FLAGS = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens",
                     "lasttoken")


def _declared_pooling(declared: dict) -> str:
    """The pooling a sentence-transformers 1_Pooling/config.json declares, in either of its formats. One bertkit
    does not compute (max, last token, ...) keeps its name, so that embedding with it fails (never a silent mean)
    unless another pooling is chosen."""
    mode = declared.get("pooling_mode") or next(
        (flag for flag in _ST_POOLING_FLAGS if declared.get(f"pooling_mode_{flag}")), "mean_tokens")
    return _ST_POOLINGS.get(mode, mode)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) hidden states -> (B, H) sentence vectors."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    raise ValueError(f"pooling {pooling!r} is not supported; bertkit pools by {' or '.join(POOLINGS)} "
                     "(choose one with --pooling)")


def length_sorted_batches(lengths: Sequence[int], batch_size: int,
                          max_tokens: int | None = None) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, longest first (memory peaks early, not late).

    A batch holds at most `batch_size` inputs and, with `max_tokens`, at most that many tokens once
    padded to its longest member (but always at least one input): long texts come in smaller batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        longest = lengths[batch[0]] if batch else lengths[i]
        if batch and (len(batch) == batch_size or (max_tokens is not None and (len(batch) + 1) * longest > max_tokens)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


# Task inference caps a batch at this many tokens (padding included) as well as at its batch size: 512-token
# windows of long documents then come 32 to a batch rather than 64, which halves the activation memory peak.
TASK_BATCH_TOKENS = 16384


@torch.no_grad()
def forward_outputs(model: torch.nn.Module, features: Sequence[Feature], pad_token_id: int, batch_size: int = 64,
                    with_targets: bool = False) -> Iterator[tuple[list[int], Any]]:
    """(indices, model output) over length-sorted batches of features: a task head's inference loop.
    With `with_targets` the features' targets go in too, so the output carries the loss."""
    for batch in length_sorted_batches([feature_length(f) for f in features], batch_size, TASK_BATCH_TOKENS):
        chosen = [features[i] for i in batch]
        if not with_targets:
            chosen = [{k: f[k] for k in ("input_ids", "token_type_ids") if k in f} for f in chosen]
        inputs = collate(chosen, pad_token_id)
        yield batch, model(**{k: v.to(model.device) for k, v in inputs.items()})


def forward_batches(model: torch.nn.Module, features: Sequence[Feature], pad_token_id: int,
                    batch_size: int = 64) -> Iterator[tuple[list[int], np.ndarray]]:
    """(indices, float32 logits) over length-sorted batches of features."""
    for batch, out in forward_outputs(model, features, pad_token_id, batch_size):
        yield batch, out.logits.float().cpu().numpy()


def compile_encoder(model: M) -> M:
    """`model` with each encoder layer compiled by torch.compile, in place; outputs unchanged (within 1e-6).

    Layers, not the whole model: the model's entry decides from the data whether to unpad (a host-side
    check that would split the graph), while a layer is tensor code alone. Every family runs the same layers
    (BERT, RoBERTa, DistilBERT, ELECTRA: what differs is in the embeddings and heads), so this covers them all. Shapes are dynamic, so batch sizes
    and lengths do not recompile; each kind of batch (unpadded, padded with or without padding) compiles once.
    Measured on a 2-core CPU: no faster than eager, after 20-60 s of compiling; it is meant for GPUs, where
    fusing the bias, GELU and residual additions saves memory traffic.
    """
    for layer in model.modules():
        if isinstance(layer, BertLayer):
            layer.compile(dynamic=True)
    return model


def _token_ids(tokenizer: Tokenizer, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Each text's ids (e.g. [CLS] text [SEP]) through the tokenizer's batch path, with a warning if any were cut."""
    encoded = tokenizer(list(texts), max_length=max_length, padding=False, return_tensors=None)
    if encoded.num_truncated:
        logger.warning("%d of %d texts were longer than %d tokens and were truncated",
                       encoded.num_truncated, len(texts), max_length or tokenizer.model_max_length)
    return encoded.input_ids


def _collate_texts(ids: Sequence[list[int]], batch: list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """The single-segment texts `batch` indexes, padded to their longest (no token types: all would be 0)."""
    return collate([{"input_ids": ids[i]} for i in batch], pad_token_id)


@torch.inference_mode()
def embed(
    model: BertModel,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    settings: EmbeddingSettings = EmbeddingSettings(),
    batch_size: int = 32,
    progress: bool = False,
    max_tokens: int | None = None,
) -> np.ndarray:
    """(N, H) float32 embeddings of `texts`, in input order (batches: see `length_sorted_batches`)."""
    ids = _token_ids(tokenizer, texts, settings.max_length)
    return embed_ids(model, ids, tokenizer.pad_token_id, settings, batch_size, progress, max_tokens)


@torch.inference_mode()
def embed_ids(
    model: BertModel,
    ids: Sequence[list[int]],
    pad_token_id: int,
    settings: EmbeddingSettings = EmbeddingSettings(),
    batch_size: int = 32,
    progress: bool = False,
    max_tokens: int | None = None,
) -> np.ndarray:
    """`embed` for texts already tokenised (special tokens included); `settings.max_length` is not applied."""
    out = np.empty((len(ids), model.config.hidden_size), dtype=np.float32)
    device = model.device
    with tqdm(total=len(ids), desc="embed", unit="text", disable=not progress) as bar:
        for batch in length_sorted_batches([len(s) for s in ids], batch_size, max_tokens):
            inputs = _collate_texts(ids, batch, pad_token_id)
            attention_mask = inputs["attention_mask"].to(device)
            hidden = model(inputs["input_ids"].to(device), attention_mask).last_hidden_state  # (B, T, H)
            vectors = pool(hidden.float(), attention_mask, settings.pooling)  # pooled in fp32 whatever the precision
            if settings.normalize:
                vectors = F.normalize(vectors, dim=-1)
            out[batch] = vectors.cpu().numpy()
            bar.update(len(batch))
    return out


@dataclass
class MaskPrediction:
    token: str
    token_id: int
    score: float  # softmax probability at this mask
    sequence: str  # the text with this mask filled in


class MissingMaskError(ValueError):
    """A text given to fill-mask holds no mask token; `index` is its place in the input."""

    def __init__(self, text: str, index: int, mask_token: str = "[MASK]") -> None:
        super().__init__(f"no {mask_token} token in {text!r}; write {mask_token} where a word should be predicted")
        self.index = index
        self.mask_token = mask_token


@torch.inference_mode()
def fill_mask(model: BertForMaskedLM, tokenizer: Tokenizer, text: str, top_k: int = 5) -> list[list[MaskPrediction]]:
    """For each mask token in `text` ([MASK], <mask>: the tokenizer's), the `top_k` most probable non-special
    tokens (each mask predicted independently)."""
    return fill_masks(model, tokenizer, [text], top_k)[0]


def mask_window(model: BertForMaskedLM, tokenizer: Tokenizer) -> int:
    """Tokens fill-mask reads of a text, its specials included: the tokenizer's limit or the model's positions."""
    return min(tokenizer.model_max_length, model.config.max_length)


@torch.inference_mode()
def fill_masks(model: BertForMaskedLM, tokenizer: Tokenizer, texts: Sequence[str], top_k: int = 5,
               batch_size: int = 32, max_tokens: int | None = None) -> list[list[list[MaskPrediction]]]:
    """`fill_mask` for many texts: tokenised at once, run in length-sorted batches (see `length_sorted_batches`),
    returned in input order. The vocabulary projection runs on the mask positions alone.

    A text longer than the window (`mask_window`) is cut; a mask beyond the cut is not predicted: its entry is an
    empty list, and a warning names the text and the mask's token position."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    window = mask_window(model, tokenizer)
    ids = _token_ids(tokenizer, texts, window)
    mask = tokenizer.mask_token_id
    long = [i for i, row in enumerate(ids) if len(row) >= window]  # cut, or just fitting
    full = tokenizer([texts[i] for i in long], padding=False, truncation=False, return_tensors=None).input_ids \
        if long else []
    cut_off = {i: [p for p, t in enumerate(row) if t == mask][ids[i].count(mask):] for i, row in zip(long, full)}
    cut_off = {i: positions for i, positions in cut_off.items() if positions}
    for index, row in enumerate(ids):
        if mask not in row and index not in cut_off:
            raise MissingMaskError(texts[index], index, tokenizer.mask_token)
    if cut_off:
        first = min(cut_off)
        logger.warning("%d of %d texts have a %s beyond the %d tokens read (text %d: %s at token %d of %d): cut off, "
                       "not predicted", len(cut_off), len(texts), tokenizer.mask_token, window, first + 1,
                       tokenizer.mask_token, cut_off[first][0] + 1, len(full[long.index(first)]))
    # Probabilities stay those of the full vocabulary; the five role specials are just never proposed.
    specials = [tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id,
                tokenizer.mask_token_id]
    k = min(top_k, model.config.vocab_size - len(specials))
    results: list[list[list[MaskPrediction]]] = [[] for _ in ids]
    for batch in length_sorted_batches([len(row) for row in ids], batch_size, max_tokens):
        inputs = _collate_texts(ids, batch, tokenizer.pad_token_id)
        input_ids = inputs["input_ids"].to(model.device)
        hidden = model.base_model(input_ids, inputs["attention_mask"].to(model.device)).last_hidden_state  # (B, T, H)
        is_mask = input_ids == tokenizer.mask_token_id
        probs = model.cls.predictions(hidden[is_mask]).float().softmax(-1)  # (masks, V), row-major over the batch
        candidates = probs.index_fill(1, torch.tensor(specials, device=probs.device), -1.0)
        scores, top = candidates.topk(k, dim=-1)
        rows, positions = is_mask.nonzero(as_tuple=True)
        for row, position, score_row, id_row in zip(rows.tolist(), positions.tolist(), scores.tolist(), top.tolist()):
            tokens = tokenizer.convert_ids_to_tokens(id_row)
            results[batch[row]].append([MaskPrediction(token, token_id, score,
                                                       _filled(tokenizer, ids[batch[row]], position, token_id))
                                        for token, token_id, score in zip(tokens, id_row, score_row)])
    for index, positions in cut_off.items():
        results[index].extend([] for _ in positions)
    return results


def _filled(tokenizer: Tokenizer, ids: list[int], position: int, token_id: int) -> str:
    """The text with the token at `position` replaced; the other masks are shown as the mask token (the frame's
    specials and padding are left out)."""
    filled = list(ids)
    filled[position] = token_id
    frame = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    return tokenizer.decode([t for t in filled if t not in frame], skip_special_tokens=False)
