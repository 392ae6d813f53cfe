"""The pretraining job: raw text (or a prepared corpus) -> a pretrained BERT in Hugging Face format.

`pretrain` runs the whole way: it trains a WordPiece vocabulary when none is given, prepares the
corpus into memory-mapped shards inside the output directory, holds out a share of the documents,
plans the examples (NSP, SOP or MLM only), measures the untrained model and a unigram baseline on
the held-out examples, and trains with the shared engine (`train.fit`: AdamW or LAMB, warm-up and
decay, bf16/fp16, accumulation, DDP or FSDP under torchrun, resume). Continued pretraining of an existing
checkpoint (domain adaptation) is the same call with `init_from`.

Output directory:
  config.json, model.safetensors, tokenizer files   the best model by held-out loss (BertForPreTraining,
                                                    or BertForMaskedLM for --objective mlm)
  tokenizer/                                        the tokenizer the corpus was encoded with
  corpus/                                           the prepared shards (unless --data points elsewhere)
  metrics.jsonl, curves.png, checkpoint-last/       as for fine-tuning; step 0 holds the baselines
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import checkpoint
from .config import PRESETS, EncoderConfig
from .families import family_of
from .corpus import Corpus, prepare_corpus, vocab_sha256
from .files import atomic_directory
from .heads import EncoderForMaskedLM, EncoderForPreTraining
from .outputs import PreTrainingOutput
from .masking import IGNORE, Masker, MaskingSettings
from .pretrained import PreTrainedModel
from .batching import Feature
from .pretraining_data import ExampleSettings, PretrainingDataset, plan_examples, pretraining_collate
from .tokenizer import Tokenizer
from .rundir import sync_run_dir
from .train import METRICS_FILE, TrainArgs, TrainResult, distributed_context, fit, prepare_output_dir, seed_everything

logger = logging.getLogger("bertkit")

TOKENIZER_DIR = "tokenizer"
CORPUS_DIR = "corpus"


@dataclass
class PretrainArgs:
    corpus: Sequence[Path] = ()  # raw UTF-8 text files (documents separated by blank lines, or one per file)
    data: Path | None = None  # a corpus prepared by `bertkit prepare` (instead of `corpus`)
    tokenizer: Path | None = None  # tokenizer directory; default: the init model's, else trained on `corpus`
    init_from: Path | None = None  # continue pretraining this checkpoint instead of a fresh model
    preset: str = "tiny"  # size of a fresh model (see config.PRESETS)
    family: str = "bert"  # a fresh model's family (config.json model_type: bert, roberta, distilbert, electra)
    config_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"hidden_dropout_prob": 0.0}
    vocab_size: int = 30522  # size of a vocabulary trained here
    cased: bool = False  # vocabulary trained here keeps case and accents
    examples: ExampleSettings = field(default_factory=ExampleSettings)
    masking: MaskingSettings = field(default_factory=MaskingSettings)
    static_masking: bool = False  # one mask per example for the whole run (BERT's original), not per epoch
    eval_fraction: float = 0.01  # share of documents held out for evaluation
    eval_max_examples: int = 2000  # cap on held-out examples (evaluation cost)
    workers: int | None = None  # processes for corpus preparation (default: all cores)


@dataclass
class PretrainResult(TrainResult):
    baseline: dict[str, float]  # the untrained model and the unigram guess on the held-out examples
    train_examples: int
    eval_examples: int


# --- inputs ---

def _check_inputs(args: PretrainArgs, train: TrainArgs) -> None:
    if bool(args.corpus) == (args.data is not None):
        raise ValueError("give either corpus files (--corpus) or a prepared corpus (--data), not both or neither")
    for name in args.corpus:
        if not Path(name).is_file():
            raise FileNotFoundError(f"{name}: no such corpus file")
    if args.data is not None and not (Path(args.data) / "manifest.json").is_file():
        raise FileNotFoundError(f"{args.data}: not a prepared corpus (no manifest.json); run `bertkit prepare` first")
    if args.init_from is not None:
        checkpoint.check_max_length(args.init_from, args.examples.max_length)
    elif args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; choose one of {list(PRESETS)}")
    elif args.examples.max_length > EncoderConfig().max_position_embeddings:
        raise ValueError(f"max_length={args.examples.max_length} exceeds BERT's 512 positions")
    else:
        family = family_of(args.family)
        if args.examples.objective != "mlm" and "pretraining" not in family.architectures:
            raise ValueError(f"--objective {args.examples.objective}: {family.name} has no sentence-pair head; "
                             f"pretrain it with --objective mlm (as {family.name} was)")
    if not 0.0 < args.eval_fraction < 1.0:
        raise ValueError(f"eval_fraction={args.eval_fraction} must lie strictly between 0 and 1")
    if train.max_steps <= 0 and train.epochs <= 0:
        raise ValueError("give a positive number of steps (or epochs)")


def _tokenizer(args: PretrainArgs, out: Path) -> Tokenizer:
    """The run's tokenizer, kept in OUT/tokenizer: the one given, the init model's, the prepared corpus's, or a
    vocabulary trained on the corpus files. An existing OUT/tokenizer (a resumed run, or rank 0's) wins."""
    kept = out / TOKENIZER_DIR
    if kept.is_dir():
        return Tokenizer.from_pretrained(kept)
    source = args.tokenizer or args.init_from
    if source is None and args.data is not None:
        source = Path(args.data) / TOKENIZER_DIR
        if not source.is_dir():
            raise FileNotFoundError(f"{args.data}: no {TOKENIZER_DIR}/ inside; give --tokenizer DIR (the one it was "
                                    "prepared with)")
    if source is not None:
        # A fresh model of a family without token types (DistilBERT) gets a tokenizer that writes none.
        takes_types = args.init_from is not None or family_of(args.family).token_types
        tokenizer = Tokenizer.from_pretrained(source, token_type_ids=None if takes_types else False)
    else:
        kind = family_of(args.family).tokenizer  # RoBERTa's byte-level BPE (cased by nature), else WordPiece
        logger.warning("training a %d-token %s vocabulary on %d file(s)", args.vocab_size,
                       "byte-level BPE" if kind == "bpe" else "WordPiece", len(args.corpus))
        tokenizer = Tokenizer.train(args.corpus, kind=kind, vocab_size=args.vocab_size,
                                    lowercase=None if kind == "bpe" else not args.cased, show_progress=False)
    with atomic_directory(kept) as staging:
        tokenizer.save_pretrained(staging)
    return tokenizer


def _corpus(args: PretrainArgs, tokenizer: Tokenizer, out: Path, progress: bool) -> Corpus:
    if args.data is not None:
        corpus = Corpus(args.data)
    elif (out / CORPUS_DIR / "manifest.json").is_file():  # resuming: prepared by the interrupted run
        corpus = Corpus(out / CORPUS_DIR)
    else:
        prepare_corpus(args.corpus, tokenizer, out / CORPUS_DIR, workers=args.workers, progress=progress)
        corpus = Corpus(out / CORPUS_DIR)
    if corpus.vocab_sha256 != vocab_sha256(tokenizer):
        raise ValueError(f"{corpus.directory} was prepared with another vocabulary than the model's tokenizer; "
                         "prepare it again with this tokenizer (bertkit prepare --tokenizer ...)")
    return corpus


def split_documents(num_documents: int, eval_fraction: float, seed: int, min_per_side: int) -> tuple[np.ndarray, np.ndarray]:
    """(train documents, held-out documents): a seeded random share held out, at least `min_per_side` each."""
    held_out = max(min_per_side, int(round(num_documents * eval_fraction)))
    if num_documents - held_out < min_per_side:
        raise ValueError(f"the corpus has {num_documents} document(s); pretraining with a held-out share needs at least "
                         f"{2 * min_per_side} (documents are separated by blank lines, and each file is one)")
    order = np.random.default_rng([seed, 104729]).permutation(num_documents)
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def _model(args: PretrainArgs, tokenizer: Tokenizer, seed: int) -> PreTrainedModel:
    cls = EncoderForMaskedLM if args.examples.objective == "mlm" else EncoderForPreTraining
    if args.init_from is not None:
        model = cls.from_pretrained(args.init_from, **args.config_overrides)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"{args.init_from}: vocab_size {model.config.vocab_size} != the tokenizer's {tokenizer.vocab_size}")
        return model
    seed_everything(seed)  # the fresh model's initial weights
    config = EncoderConfig.from_preset(args.preset, **fresh_family_fields(args.family, tokenizer.pad_token_id),
                                       vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                                       **args.config_overrides)
    return cls(config)


def default_objective(model_type: str, init_from: Path | None = None) -> str:
    """BERT's next-sentence prediction where the family has a pair head (BERT), else masked LM alone (RoBERTa,
    DistilBERT, ELECTRA's generator); for --init-from, as the family of the model continued."""
    family = checkpoint.load_config(init_from).family if init_from is not None else family_of(model_type)
    return "nsp" if "pretraining" in family.architectures else "mlm"


def fresh_family_fields(model_type: str, pad_token_id: int) -> dict[str, Any]:
    """The fields that make a fresh preset-sized model of this family: its token types, and 512 usable positions
    (RoBERTa's table is longer by pad_token_id + 1, as roberta-base's 514)."""
    family = family_of(model_type)
    fields: dict[str, Any] = {"model_type": family.model_type}
    if not family.token_types:
        fields["type_vocab_size"] = 0
    elif family.position_offset:
        fields.update(type_vocab_size=1, max_position_embeddings=512 + pad_token_id + 1)
    return fields


def collate_for(config: EncoderConfig) -> Callable[[Sequence[Feature], int], dict[str, Any]]:
    """The batching of pretraining examples for the model's family: without token types for one that takes none
    (DistilBERT, trained on single segments, so nothing is lost)."""
    if config.family.token_types:
        return pretraining_collate

    def without_token_types(features: Sequence[Feature], pad_token_id: int) -> dict[str, Any]:
        batch = pretraining_collate(features, pad_token_id)
        batch.pop("token_type_ids", None)
        return batch

    return without_token_types


# --- evaluation ---

@torch.no_grad()
def mlm_metrics(model: PreTrainedModel, dataset: PretrainingDataset, batch_size: int,
                pad_token_id: int) -> dict[str, float]:
    """Held-out masked-token loss, accuracy and perplexity; sentence-relation loss and accuracy when trained for one."""
    sums = {"mlm_loss": 0.0, "mlm_correct": 0, "targets": 0, "nsp_loss": 0.0, "nsp_correct": 0, "pairs": 0}
    for start in range(0, len(dataset), batch_size):
        batch = collate_for(model.config)([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))],
                                          pad_token_id)
        batch = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        out = model(**batch)
        logits = out.prediction_logits if isinstance(out, PreTrainingOutput) else out.logits  # (targets, V)
        targets = batch["labels"][batch["labels"] != IGNORE]
        sums["mlm_loss"] += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
        sums["mlm_correct"] += int((logits.argmax(-1) == targets).sum())
        sums["targets"] += len(targets)
        if "next_sentence_label" in batch:
            relation = out.seq_relationship_logits.float()
            sums["nsp_loss"] += float(F.cross_entropy(relation, batch["next_sentence_label"], reduction="sum"))
            sums["nsp_correct"] += int((relation.argmax(-1) == batch["next_sentence_label"]).sum())
            sums["pairs"] += len(relation)
    mlm_loss = sums["mlm_loss"] / max(sums["targets"], 1)
    metrics = {"mlm_loss": mlm_loss, "mlm_accuracy": sums["mlm_correct"] / max(sums["targets"], 1),
               "mlm_perplexity": math.exp(min(mlm_loss, 50.0))}
    if sums["pairs"]:
        metrics["nsp_loss"] = sums["nsp_loss"] / sums["pairs"]
        metrics["nsp_accuracy"] = sums["nsp_correct"] / sums["pairs"]
    metrics["loss"] = mlm_loss + metrics.get("nsp_loss", 0.0)  # what training minimises
    return metrics


def unigram_accuracy(corpus: Corpus, train_documents: np.ndarray, dataset: PretrainingDataset,
                     special_ids: frozenset[int]) -> tuple[float, int]:
    """(accuracy, token id) of always guessing the most frequent non-special training token at every target."""
    counts = np.zeros(corpus.vocab_size, dtype=np.int64)
    for doc in train_documents:
        sentences = corpus.document_sentences(int(doc))
        counts += np.bincount(corpus.tokens(sentences.start, sentences.stop), minlength=corpus.vocab_size)
    counts[list(special_ids)] = 0
    guess = int(counts.argmax())
    labels = np.concatenate([np.asarray(dataset[i]["labels"]) for i in range(len(dataset))])
    targets = labels[labels != IGNORE]
    return float((targets == guess).mean()) if len(targets) else 0.0, guess


# --- the job ---

def pretrain(args: PretrainArgs, train: TrainArgs) -> PretrainResult:
    _check_inputs(args, train)
    prepare_output_dir(train, inputs={"--corpus": list(args.corpus), "--data": args.data, "--tokenizer": args.tokenizer,
                                      "--init-from": args.init_from},
                       settings={"task": "pretraining", **asdict(args.examples), "masking": asdict(args.masking),
                                 "static_masking": args.static_masking, "preset": args.preset,
                                 "config_overrides": args.config_overrides, "vocab_size": args.vocab_size,
                                 "cased": args.cased, "eval_fraction": args.eval_fraction,
                                 "eval_max_examples": args.eval_max_examples})
    rank, world_size, _ = distributed_context()
    out = sync_run_dir(train, world_size)  # OUTPUT, or OUTPUT/new-run while replacing an earlier run's output
    if rank == 0:  # the vocabulary and the shards are made once; the other ranks then read them
        tokenizer = _tokenizer(args, out)
        corpus = _corpus(args, tokenizer, out, progress=train.progress)
    if world_size > 1:
        dist.barrier()
    if rank != 0:
        tokenizer = _tokenizer(args, out)
        corpus = _corpus(args, tokenizer, out, progress=False)

    objective = args.examples.objective
    train_docs, eval_docs = split_documents(corpus.num_documents, args.eval_fraction, train.seed,
                                            min_per_side=2 if objective == "nsp" else 1)
    masker = Masker.for_tokenizer(args.masking, tokenizer)
    specials = tokenizer.num_special_tokens(pair=args.examples.pairs)
    train_set = PretrainingDataset(corpus, plan_examples(corpus, train_docs, args.examples, train.seed, specials),
                                   masker, tokenizer, seed=train.seed, static=args.static_masking)
    eval_plan = plan_examples(corpus, eval_docs, args.examples, train.seed + 1, specials)
    if len(eval_plan) > args.eval_max_examples:
        keep = np.random.default_rng([train.seed, 15485863]).choice(len(eval_plan), args.eval_max_examples, replace=False)
        eval_plan = eval_plan[np.sort(keep)]
    eval_set = PretrainingDataset(corpus, eval_plan, masker, tokenizer, seed=train.seed + 1, static=True)
    if len(train_set) == 0 or len(eval_set) == 0:
        raise ValueError(f"{corpus.directory}: no {'training' if len(train_set) == 0 else 'held-out'} examples; "
                         "the corpus is too small")
    logger.info("%d training and %d held-out examples from %d + %d documents",
                len(train_set), len(eval_set), len(train_docs), len(eval_docs))

    model = _model(args, tokenizer, train.seed)
    model.config.extra["bertkit"] = {
        "task": "pretraining", **asdict(args.examples), "masking": asdict(args.masking),
        "static_masking": args.static_masking, "corpus": {"documents": corpus.num_documents, "tokens": corpus.num_tokens}}

    def evaluate(m: PreTrainedModel) -> dict[str, float]:
        return mlm_metrics(m, eval_set, train.batch_size, tokenizer.pad_token_id)

    baseline = _baseline(model, evaluate, corpus, train_docs, eval_set, tokenizer, out, train.resume, rank == 0)
    result = fit(model, train_set, train, evaluate, tokenizer.pad_token_id, tokenizer=tokenizer,
                 collate_fn=collate_for(model.config))
    return PretrainResult(result.best_metrics, result.steps, result.seconds, result.stopped_early, baseline,
                          len(train_set), len(eval_set))


def _baseline(model: PreTrainedModel, evaluate: Any, corpus: Corpus, train_docs: np.ndarray,
              eval_set: PretrainingDataset, tokenizer: Tokenizer, out: Path, resume: bool, is_main: bool) -> dict[str, float]:
    """Held-out metrics before training plus the unigram guess, logged as step 0 (kept from the first run on resume)."""
    metrics_file = out / METRICS_FILE
    if resume and metrics_file.is_file():
        first = json.loads(metrics_file.read_text(encoding="utf-8").splitlines()[0])
        return {k.removeprefix("eval_"): v for k, v in first.items() if k.startswith(("eval_", "baseline_"))}
    accuracy, guess = unigram_accuracy(corpus, train_docs, eval_set, tokenizer.all_special_ids)
    model.eval()
    with torch.no_grad():
        untrained = evaluate(model)
    record = {"step": 0, "epoch": 0.0, **{f"eval_{k}": v for k, v in untrained.items()},
              "baseline_unigram_accuracy": accuracy, "baseline_unigram_token": tokenizer.convert_ids_to_tokens(guess)}
    if is_main:
        with open(metrics_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    return {**untrained, "unigram_accuracy": accuracy}
