"""Turning tokenised examples into padded batches: length grouping, dynamic padding, sharding."""

from __future__ import annotations

from typing import Any, Sequence

import torch

Feature = dict[str, Any]  # input_ids, token_type_ids (lists of ints; absent for models without), labels, ...
POSITION_TARGETS = ("start_positions", "end_positions")  # QA's per-feature token indices


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, shuffle: bool = True, group_factor: int = 50
) -> list[list[int]]:
    """Batches of indices whose members have similar lengths, so padding stays small.

    Shuffles, cuts the order into mega-batches of `group_factor` batches, sorts each by length,
    splits it into batches, then shuffles the batch order. The same (seed, epoch) gives the same
    batches on every rank and after a resume.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist() if shuffle else list(range(len(lengths)))
    batches: list[list[int]] = []
    mega = batch_size * group_factor
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def feature_length(feature: Feature) -> int:
    """Tokens a feature costs: its sequence length, or the sum over its choices (multiple choice)."""
    ids = feature["input_ids"]
    return sum(len(choice) for choice in ids) if ids and isinstance(ids[0], list) else len(ids)


def shard(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This rank's batches: every world_size-th, trimmed so that all ranks take the same number of steps."""
    usable = len(batches) - len(batches) % world_size if len(batches) >= world_size else len(batches)
    return batches[rank:usable:world_size]


def collate(features: Sequence[Feature], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest member; labels become a tensor (token labels padded with -100).

    token_type_ids are in the batch when the features carry them (tokenizers of RoBERTa-like models give
    none). Multiple-choice features (input_ids a list of choices) become (B, choices, T) tensors; QA's
    start_positions / end_positions become LongTensors. Other keys (bookkeeping such as which example
    a window belongs to) stay out of the batch.
    """
    if features[0]["input_ids"] and isinstance(features[0]["input_ids"][0], list):
        return _collate_choices(features, pad_token_id)
    width = max(len(f["input_ids"]) for f in features)
    batch = len(features)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    with_types = "token_type_ids" in features[0]
    token_type_ids = torch.zeros((batch, width), dtype=torch.long) if with_types else None
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        input_ids[row, :n] = torch.tensor(f["input_ids"])
        if token_type_ids is not None:
            token_type_ids[row, :n] = torch.tensor(f["token_type_ids"])
        attention_mask[row, :n] = 1
    out = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        out["token_type_ids"] = token_type_ids
    if "labels" in features[0]:
        out["labels"] = collate_labels([f["labels"] for f in features], width)
    for key in POSITION_TARGETS:
        if key in features[0]:
            out[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
    return out


def _collate_choices(features: Sequence[Feature], pad_token_id: int) -> dict[str, torch.Tensor]:
    """(B, C, T) inputs: every choice of every example padded to the batch's longest choice."""
    choices = len(features[0]["input_ids"])
    if any(len(f["input_ids"]) != choices for f in features):
        raise ValueError("every multiple-choice example in a batch needs the same number of choices")
    flat = [{key: f[key][choice] for key in ("input_ids", "token_type_ids") if key in f}
            for f in features for choice in range(choices)]
    out = collate(flat, pad_token_id)
    out = {k: v.view(len(features), choices, -1) for k, v in out.items()}
    if "labels" in features[0]:
        out["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
    return out


def collate_labels(labels: list[Any], width: int) -> torch.Tensor:
    """int -> class ids; float -> regression targets; list[float] -> multi-hot rows;
    list[int] -> per-token tags, padded with -100 (ignored by the loss)."""
    first = labels[0]
    if isinstance(first, list) and all(isinstance(x, int) for x in first):
        padded = torch.full((len(labels), width), -100, dtype=torch.long)
        for row, seq in enumerate(labels):
            padded[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        return padded
    if isinstance(first, (float, list)):
        return torch.tensor(labels, dtype=torch.float)
    return torch.tensor(labels, dtype=torch.long)


def label_units(batch: dict[str, torch.Tensor]) -> int:
    """How many targets a batch's mean loss averages over: non-ignored labels (token tasks) or rows
    (batches without a `labels` tensor, such as QA's start/end positions, count rows)."""
    labels = batch.get("labels")
    if labels is None:
        return batch["input_ids"].size(0)
    if labels.dtype == torch.long and labels.dim() == 2:
        return int((labels != -100).sum())
    return labels.size(0)
