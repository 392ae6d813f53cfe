"""Sentence similarity with a bi-encoder: both texts of a pair are embedded separately by one encoder
and compared by cosine. (A cross-encoder, which reads both texts together, is `classify` on pairs.)

Data: a table with `text`, `text_pair` and an optional `label`. Two losses, as sentence-transformers':

- `cosine` (CosineSimilarityLoss): MSE between cos(u, v) and the pair's score mapped linearly onto
  [0, 1], by the training set's lowest and highest score unless `score_range=(lo, hi)` fixes the
  map (e.g. (0, 5) for STS-B). The default when the scores vary.
- `contrastive` (MultipleNegativesRankingLoss): cross-entropy over scale·cos(a_i, b_j), the other
  pairs of the batch being the negatives (`symmetric` adds the b -> a direction). It needs only
  positive pairs: the default when there are no labels, or every label is the same.

Evaluation: with scored eval pairs, Spearman (the best-model metric) and Pearson between cosine and
gold score; with positive pairs only, retrieval over the whole eval set (each `text` ranks every
`text_pair`): accuracy@1 and MRR (the best-model metric).

The output directory is a plain `BertModel` checkpoint (loads in transformers) plus
sentence-transformers' module files (modules.json, 1_Pooling/, sentence_bert_config.json), so
`bertkit embed` and `sentence_transformers.SentenceTransformer(dir)` give the same embeddings.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import checkpoint
from ..batching import Feature, collate
from ..config import EncoderConfig
from ..infer import POOLINGS, EmbeddingSettings, embed, pool
from ..metrics import pearson, spearman
from ..model import EncoderModel
from ..pretrained import PreTrainedModel
from ..readers import DataError, Record, read_table
from ..tokenizer import Tokenizer
from ..train import TrainArgs, TrainResult, fit, prepare_output_dir, seed_everything, warn_no_eval_data
from .classify import Columns

logger = logging.getLogger("bertkit")

TASK = "similarity"
LOSSES = ("cosine", "contrastive")


@dataclass(frozen=True)
class SimilaritySettings:
    """How a bi-encoder embeds and trains; saved in config.json under "bertkit"."""

    pooling: str = "mean"  # mean of real tokens, or the [CLS] vector
    normalize: bool = True  # unit-length embeddings (cosine = dot product); does not change any cosine
    max_length: int | None = None  # tokens per text (sentence-transformers' max_seq_length)
    loss: str = "contrastive"  # cosine | contrastive
    score_range: tuple[float, float] | None = None  # cosine loss target: (score - lo) / (hi - lo)
    scale: float = 20.0  # contrastive: logits are scale·cos (1 / temperature)
    symmetric: bool = False  # contrastive: also rank the texts for each text_pair

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r} must be one of {POOLINGS}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} must be one of {LOSSES}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale!r}")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"max_length must leave room for a token between [CLS] and [SEP], got {self.max_length}")
        if self.score_range is not None:
            lo, hi = self.score_range
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"score_range must be two finite numbers, low < high; got {self.score_range!r}")
            object.__setattr__(self, "score_range", (float(lo), float(hi)))

    @property
    def embedding(self) -> EmbeddingSettings:
        return EmbeddingSettings(self.pooling, self.normalize, self.max_length)

    def to_config(self) -> dict[str, Any]:
        data = asdict(self)
        data["score_range"] = list(self.score_range) if self.score_range is not None else None
        return {"task": TASK, **data}

    @classmethod
    def from_config(cls, config: EncoderConfig) -> SimilaritySettings | None:
        """The settings a bertkit similarity fine-tune saved, or None for any other model."""
        saved = config.task_settings(TASK)
        if not saved:
            return None
        if saved.get("score_range") is not None:
            saved["score_range"] = tuple(saved["score_range"])
        return cls(**saved)

    def scaled(self, score: float) -> float:
        assert self.score_range is not None, "only the cosine loss scales scores, and it always has a range"
        lo, hi = self.score_range
        return (score - lo) / (hi - lo)


@dataclass
class SimilarityOutput:
    loss: torch.Tensor | None  # the configured loss of this batch
    scores: torch.Tensor  # (B,) cosine similarity of each pair
    embeddings: torch.Tensor  # (B, H) of the texts
    embeddings_b: torch.Tensor  # (B, H) of the text pairs


def cosine_loss(a: torch.Tensor, b: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' CosineSimilarityLoss: MSE between cos(a_i, b_i) and the target."""
    return F.mse_loss(F.cosine_similarity(a.float(), b.float(), dim=-1), targets.float().view(-1))


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, scale: float = 20.0, symmetric: bool = False) -> torch.Tensor:
    """sentence-transformers' MultipleNegativesRankingLoss: b_i is a_i's answer among all b_j
    (symmetric: also a_i is b_i's among all a_j; the two cross-entropies are averaged)."""
    return ranking_loss(cosine_matrix(a, b), scale, symmetric)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) cosine similarity of every a_i with every b_j."""
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def ranking_loss(similarities: torch.Tensor, scale: float, symmetric: bool) -> torch.Tensor:
    """Cross-entropy of picking column i for row i among all columns of scale * similarities."""
    logits = scale * similarities
    targets = torch.arange(logits.size(0), device=logits.device)
    loss = F.cross_entropy(logits, targets)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, targets)) / 2
    return loss


class BiEncoder(PreTrainedModel):
    """One encoder (any family) embeds both sides of a pair: pooling (mean | cls), then optionally unit length."""

    def __init__(self, config: EncoderConfig, add_pooling_layer: bool = False) -> None:
        super().__init__(config)
        # The pooler is never used here. It is kept (frozen, so DDP does not wait for its gradients) only
        # when the checkpoint has one, so that it is saved back unchanged.
        encoder = EncoderModel(config, add_pooling_layer=add_pooling_layer)
        self.add_module(config.family.prefix, encoder)
        if encoder.pooler is not None:
            encoder.pooler.requires_grad_(False)
        self.settings = SimilaritySettings.from_config(config) or SimilaritySettings()
        config.extra["bertkit"] = self.settings.to_config()

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *,
        settings: SimilaritySettings | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        **config_overrides: Any,
    ) -> BiEncoder:
        """Any encoder directory as a bi-encoder, with `settings`, else those bertkit saved there, else
        those its sentence-transformers modules declare (pooling, Normalize, max_seq_length)."""
        config = checkpoint.load_config(directory, **config_overrides)
        if settings is None:
            settings = SimilaritySettings.from_config(config)
        if settings is None:
            declared = EmbeddingSettings.for_model(directory)
            settings = SimilaritySettings(declared.pooling, declared.normalize, declared.max_length)
        config.extra["bertkit"] = settings.to_config()
        state = checkpoint.read_state_dict(directory)
        pooler = any(k.startswith(("pooler.", f"{config.family.prefix}.pooler.")) for k in state)
        model = checkpoint.build_loaded(lambda: cls(config, add_pooling_layer=pooler), state, str(directory))
        if dtype is not None or device is not None:
            model.to(device=device, dtype=dtype)
        return model.eval()

    def save_pretrained(self, directory: str | os.PathLike, tokenizer: checkpoint.SavesPretrained | None = None,
                        state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """The encoder as a plain encoder checkpoint (BertModel, RobertaModel, ...), plus sentence-transformers'
        files, in one atomic save. `state_dict` replaces this model's own tensors (e.g. the gathered weights of a
        sharded model)."""
        if state_dict is not None:  # keyed like this model ("bert.…"); the file holds the encoder alone
            prefix = f"{self.base_model_prefix}."
            state_dict = {k.removeprefix(prefix): v for k, v in state_dict.items()}
        return checkpoint.save_model(self.base_model, directory, _WithModuleFiles(self, tokenizer), state_dict)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, H) sentence embeddings."""
        hidden = self.base_model(input_ids, attention_mask, token_type_ids).last_hidden_state
        vectors = pool(hidden, attention_mask, self.settings.pooling)
        return F.normalize(vectors, dim=-1) if self.settings.normalize else vectors

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        *,
        input_ids_b: torch.Tensor,
        attention_mask_b: torch.Tensor,
        token_type_ids_b: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SimilarityOutput:
        """Both sides (B, T) and (B, T'); labels: (B,) scores already scaled to [0, 1] (cosine loss only)."""
        a = self.encode(input_ids, attention_mask, token_type_ids)
        b = self.encode(input_ids_b, attention_mask_b, token_type_ids_b)
        loss = None
        if self.settings.loss == "contrastive":
            loss = contrastive_loss(a, b, self.settings.scale, self.settings.symmetric)
        elif labels is not None:
            loss = cosine_loss(a, b, labels)
        return SimilarityOutput(loss, F.cosine_similarity(a.float(), b.float(), dim=-1), a, b)


class _WithModuleFiles:
    """Stands in for the tokenizer in `checkpoint.save_model`, so the tokenizer's files and
    sentence-transformers' are written into the same staging directory as the weights."""

    def __init__(self, model: BiEncoder, tokenizer: checkpoint.SavesPretrained | None) -> None:
        self.model, self.tokenizer = model, tokenizer

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)
        write_module_files(Path(directory), self.model.settings, self.model.config)


def write_module_files(directory: Path, settings: SimilaritySettings, config: EncoderConfig) -> None:
    """modules.json (Transformer -> Pooling [-> Normalize]), 1_Pooling/config.json and
    sentence_bert_config.json, in the layout sentence-transformers reads (and writes)."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if settings.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {"word_embedding_dimension": config.hidden_size,
               "pooling_mode_cls_token": settings.pooling == "cls",
               "pooling_mode_mean_tokens": settings.pooling == "mean",
               "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    max_length = settings.max_length or config.max_position_embeddings
    files = {"modules.json": modules, "1_Pooling/config.json": pooling,
             "sentence_bert_config.json": {"max_seq_length": max_length, "do_lower_case": False}}
    for name, content in files.items():
        (directory / name).parent.mkdir(exist_ok=True)
        (directory / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


# --- data ---

def _noun(path: str | os.PathLike | None) -> str:
    """How readers name a place in the file: a CSV/TSV column, a JSON field."""
    return "column" if {".csv", ".tsv"} & set(Path(path or "").suffixes) else "field"


def read_pairs(path: str | os.PathLike, columns: Columns = Columns()) -> list[Record]:
    """A table of pairs (read_table refuses an empty one): the pair column is required, scores are optional."""
    records = read_table(path, text_column=columns.text, pair_column=columns.text_pair, label_column=columns.label,
                         require_label=False)
    if records[0].text_pair is None:
        raise DataError(f"a similarity pair needs a second text, but there is no {columns.text_pair!r} column",
                        path=path, line=records[0].line, field=columns.text_pair, noun=_noun(path))
    return records


def scores_of(records: Sequence[Record], column: str = "label") -> list[float] | None:
    """Every pair's score as a float, or None when no pair has one; a pair without one (when others
    have one) or a score that is not a finite number raises DataError naming its line."""
    labelled = next((r for r in records if r.label is not None), None)
    if labelled is None:
        return None
    scores = []
    for record in records:
        where = {"path": record.source, "line": record.line, "field": column, "noun": _noun(record.source)}
        if record.label is None:
            raise DataError(f"no score, but the pair on line {labelled.line} has one: score every pair or none", **where)
        try:
            value = float(record.label)  # type: ignore[arg-type]  # a list (multi-label) raises TypeError, refused
        except (TypeError, ValueError):
            raise DataError(f"score {record.label!r} is not a number", **where) from None
        if not math.isfinite(value):
            raise DataError(f"score {record.label!r} is not a finite number", **where)
        scores.append(value)
    return scores


def is_scored(scores: list[float] | None) -> bool:
    """Scores that can be ranked; none, or all equal, means positive pairs."""
    return scores is not None and min(scores) < max(scores)


def choose_loss(requested: str | None, scores: list[float] | None, source: str) -> str:
    """cosine for varying scores, contrastive for positive pairs; a loss that cannot use the data is refused."""
    if requested is not None and requested not in LOSSES:
        raise ValueError(f"loss={requested!r} must be one of {LOSSES}")
    scored = is_scored(scores)
    if requested is None:
        return "cosine" if scored else "contrastive"
    if requested == "cosine" and not scored:
        found = "no scores" if scores is None else f"the same score ({scores[0]:g}) for every pair"
        raise ValueError(f"{source}: the cosine loss needs pairs with varying scores, but the file has {found}; "
                         "use the contrastive loss for positive pairs")
    if requested == "contrastive" and scored:
        raise ValueError(f"{source}: the contrastive loss trains on positive pairs only, but the scores vary from "
                         f"{min(scores):g} to {max(scores):g}; use the cosine loss, or keep only positive pairs")
    return requested


def check_range(records: Sequence[Record], scores: list[float], score_range: tuple[float, float], column: str) -> None:
    lo, hi = score_range
    for record, score in zip(records, scores):
        if not lo <= score <= hi:
            raise DataError(f"score {score:g} is outside the score range [{lo:g}, {hi:g}]", path=record.source,
                            line=record.line, field=column, noun=_noun(record.source))


def encode(records: Sequence[Record], tokenizer: Tokenizer, settings: SimilaritySettings,
           scores: list[float] | None, source: str) -> list[Feature]:
    """Each side tokenised on its own (e.g. [CLS] text [SEP]); `labels` are the scaled scores (cosine loss)."""
    sides = [tokenizer(texts, max_length=settings.max_length, padding=False, return_tensors=None)
             for texts in ([r.text for r in records], [r.text_pair or "" for r in records])]
    truncated = sum(side.num_truncated for side in sides)
    if truncated:
        logger.warning("%s: %d of %d texts were longer than %d tokens and were truncated", source, truncated,
                       2 * len(records), settings.max_length or tokenizer.model_max_length)
    features = []
    for i, (a, b) in enumerate(zip(*(side.rows() for side in sides))):
        feature: Feature = {**a, **{f"{key}_b": value for key, value in b.items()}}
        if settings.loss == "cosine" and scores is not None:
            feature["labels"] = settings.scaled(scores[i])
        features.append(feature)
    return features


def collate_pairs(features: Sequence[Feature], pad_token_id: int) -> dict[str, torch.Tensor]:
    """`BiEncoder` inputs: each side padded to its own longest member; `labels` when present."""
    batch = collate(features, pad_token_id)  # side A and labels (collate leaves the *_b keys out)
    side_b = collate([{key: f[f"{key}_b"] for key in ("input_ids", "token_type_ids") if f"{key}_b" in f}
                      for f in features], pad_token_id)
    batch.update({f"{key}_b": value for key, value in side_b.items()})
    return batch


# --- evaluation and prediction ---

def embed_pairs(model: BiEncoder, tokenizer: Tokenizer, texts: Sequence[str], pairs: Sequence[str],
                batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H) embeddings of each side; a text that occurs several times is embedded once."""
    unique = list(dict.fromkeys([*texts, *pairs]))
    vectors = torch.from_numpy(embed(model.base_model, tokenizer, unique, model.settings.embedding, batch_size))
    row = {text: i for i, text in enumerate(unique)}
    return vectors[[row[t] for t in texts]], vectors[[row[t] for t in pairs]]


def retrieval_metrics(similarities: np.ndarray) -> dict[str, float]:
    """Row i's right answer is column i: accuracy@1 and mean reciprocal rank. Rank = 1 + the columns
    scoring strictly higher, so an exact tie (a duplicate of the right text) does not count against it."""
    right = np.diag(similarities)[:, None]
    ranks = 1 + (similarities > right).sum(axis=1)
    return {"accuracy": float((ranks == 1).mean()), "mrr": float((1.0 / ranks).mean())}


def evaluate(model: BiEncoder, tokenizer: Tokenizer, records: Sequence[Record], scores: list[float] | None,
             batch_size: int = 64) -> dict[str, float]:
    """Scored pairs: spearman, pearson (and the cosine loss when the model has a score range);
    positive pairs: retrieval over all of them (accuracy@1, mrr) and the contrastive loss."""
    a, b = embed_pairs(model, tokenizer, [r.text for r in records], [r.text_pair or "" for r in records], batch_size)
    settings = model.settings
    if is_scored(scores):
        cosine = F.cosine_similarity(a, b, dim=-1).numpy()
        metrics = {"spearman": spearman(cosine, scores), "pearson": pearson(cosine, scores)}
        if settings.score_range is not None:
            targets = torch.tensor([settings.scaled(s) for s in scores])
            metrics = {"loss": float(cosine_loss(a, b, targets)), **metrics}
        return metrics
    similarities = cosine_matrix(a, b)  # (N, N): built once for the loss and the ranks
    loss = float(ranking_loss(similarities, settings.scale, settings.symmetric))
    return {"loss": loss, **retrieval_metrics(similarities.numpy())}


def evaluate_file(model: BiEncoder, tokenizer: Tokenizer, data_file: str | os.PathLike, columns: Columns = Columns(),
                  batch_size: int = 64) -> dict[str, float]:
    """`evaluate` on a table of pairs (scored or positive), plus the number of pairs."""
    records = read_pairs(data_file, columns)
    scores = scores_of(records, columns.label)
    return {"examples": len(records), **evaluate(model, tokenizer, records, scores, batch_size)}


def predict(model: BiEncoder, tokenizer: Tokenizer, texts: Sequence[str], pairs: Sequence[str],
            batch_size: int = 64) -> list[dict[str, float]]:
    """{"score": cosine similarity} for each (text, pair)."""
    if len(texts) != len(pairs):
        raise ValueError(f"got {len(texts)} texts but {len(pairs)} pairs")
    if not texts:
        return []
    a, b = embed_pairs(model, tokenizer, texts, pairs, batch_size)
    return [{"score": float(s)} for s in F.cosine_similarity(a, b, dim=-1)]


# --- fine-tuning ---

def finetune(
    model_dir: str | Path,
    train_file: str | Path,
    eval_file: str | Path | None,
    args: TrainArgs,
    *,
    max_length: int = 128,
    pooling: str = "mean",
    normalize: bool = True,
    loss: str | None = None,
    columns: Columns = Columns(),
    score_range: tuple[float, float] | None = None,
    scale: float = 20.0,
    symmetric: bool = False,
) -> TrainResult:
    """Fine-tune an encoder as a bi-encoder on pairs; the best model lands in args.output_dir.

    loss: None picks cosine for varying scores, contrastive for positive pairs. score_range: the
    cosine loss maps scores linearly from it onto [0, 1] (default: the training set's min and max).
    """
    # Read and check everything before a model is loaded or a file written.
    train_records = read_pairs(train_file, columns)
    eval_records = read_pairs(eval_file, columns) if eval_file else []
    train_scores = scores_of(train_records, columns.label)
    eval_scores = scores_of(eval_records, columns.label) if eval_records else None
    loss = choose_loss(loss, train_scores, str(train_file))
    if loss == "contrastive" and score_range is not None:
        raise ValueError("score_range applies to the cosine loss only (the contrastive loss reads no scores)")
    if loss == "contrastive" and args.batch_size < 2:
        raise ValueError("the contrastive loss needs batch_size >= 2: the other pairs of a batch are the negatives")
    given_range = score_range is not None
    if loss == "cosine" and not given_range:
        score_range = (min(train_scores), max(train_scores))  # choose_loss gives cosine only with scores
    settings = SimilaritySettings(pooling, normalize, max_length, loss, score_range, scale, symmetric)
    if given_range:  # a score outside a range the user gave (validated by SimilaritySettings) is an error
        for records, scores in ((train_records, train_scores), (eval_records, eval_scores)):
            check_range(records, scores or [], score_range, columns.label)
    checkpoint.check_max_length(model_dir, max_length)
    tokenizer = checkpoint.model_tokenizer(model_dir)
    train_features = encode(train_records, tokenizer, settings, train_scores, str(train_file))
    prepare_output_dir(args, inputs={"--model": model_dir, "--train": train_file, "--eval": eval_file},
                       settings={**settings.to_config(), "text_column": columns.text, "pair_column": columns.text_pair,
                                 "label_column": columns.label})

    seed_everything(args.seed)  # weights the checkpoint lacks, if any, are initialised reproducibly
    model = BiEncoder.from_pretrained(model_dir, settings=settings, attn_implementation="sdpa")
    if not eval_records:
        warn_no_eval_data()
        eval_records, eval_scores = train_records, train_scores
    args.metric, args.greater_is_better = ("spearman" if is_scored(eval_scores) else "mrr"), True
    logger.info("%s: %d pairs, %s loss, %s pooling", train_file, len(train_features), loss, pooling)
    return fit(model, train_features, args, lambda m: evaluate(m, tokenizer, eval_records, eval_scores),
               tokenizer.pad_token_id, tokenizer, collate_fn=collate_pairs)
