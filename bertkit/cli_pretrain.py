"""`bertkit prepare` and `bertkit pretrain`: raw text -> memory-mapped shards -> a pretrained BERT."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .errors import UsageError
from .families import FAMILIES
from .cli_tasks import add_engine_options, print_run_summary, train_args


def cmd_prepare(args: argparse.Namespace) -> None:
    from .corpus import prepare_corpus
    from .files import atomic_directory
    from .pretrain import TOKENIZER_DIR
    from .tokenizer import Tokenizer

    output = Path(args.output)
    tokenizer = Tokenizer.from_pretrained(args.tokenizer)
    stats = prepare_corpus(args.corpus, tokenizer, output, shard_tokens=args.shard_tokens, workers=args.workers,
                           progress=not args.quiet, overwrite=args.overwrite)
    with atomic_directory(output / TOKENIZER_DIR) as staging:  # `pretrain --data` finds its tokenizer here
        tokenizer.save_pretrained(staging)
    print(json.dumps({"output": str(output), "documents": stats.documents, "sentences": stats.sentences,
                      "tokens": stats.tokens, "shards": stats.shards}))


def _example_settings(args: argparse.Namespace, init_from: Path | None) -> Any:
    """--objective and --packing, with the family's defaults: RoBERTa packs FULL-SENTENCES for its masked LM."""
    from .pretrain import default_objective
    from .pretraining_data import ExampleSettings

    objective = args.objective or default_objective(args.family, init_from)
    packing = args.packing or ("full-sentences" if objective == "mlm" and args.family == "roberta" else "doc-sentences")
    if packing == "full-sentences" and objective != "mlm":
        raise UsageError(f"--packing full-sentences is for --objective mlm; {objective} makes its own pairs")
    return ExampleSettings(objective=objective, max_length=args.max_length, short_seq_prob=args.short_seq_prob,
                           cross_documents=packing == "full-sentences")


def _pretrain_args(args: argparse.Namespace) -> tuple[Any, Any]:
    from .masking import MaskingSettings
    from .pretrain import PretrainArgs

    optional = lambda value: Path(value) if value else None  # noqa: E731
    pretrain_args = PretrainArgs(
        corpus=[Path(f) for f in args.corpus or ()], data=optional(args.data), tokenizer=optional(args.tokenizer),
        init_from=optional(args.init_from), preset=args.preset, family=args.family, vocab_size=args.vocab_size, cased=args.cased,
        examples=_example_settings(args, optional(args.init_from)),
        masking=MaskingSettings(probability=args.mask_prob, max_predictions=args.max_predictions,
                                whole_word=args.whole_word_mask),
        static_masking=args.static_masking, eval_fraction=args.eval_fraction,
        eval_max_examples=args.eval_max_examples, workers=args.workers)
    train = train_args(args, max_steps=args.steps or 0, log_every=args.log_every)
    return pretrain_args, train


def cmd_pretrain(args: argparse.Namespace) -> None:
    from .pretrain import pretrain

    if (args.steps is None) == (args.epochs is None):
        raise UsageError("give --steps N or --epochs N (one of them)")
    result = pretrain(*_pretrain_args(args))
    print_run_summary({"output": args.output, "steps": result.steps, "seconds": round(result.seconds, 1),
                       "train_examples": result.train_examples, "eval_examples": result.eval_examples,
                       **{f"before_{k}": round(v, 4) for k, v in result.baseline.items()},
                       **{f"eval_{k}": round(v, 4) for k, v in result.best_metrics.items()}})


def add_pretrain_commands(sub: Any) -> None:
    from .config import PRESETS
    from .pretraining_data import OBJECTIVES

    p = sub.add_parser("prepare", help="raw text files -> sentence-split, tokenized, memory-mapped shards")
    p.add_argument("--corpus", nargs="+", required=True, help="UTF-8 text files: documents separated by blank lines "
                   "(a file is always a document boundary)")
    p.add_argument("--tokenizer", required=True, help="tokenizer (or model) directory to encode with")
    p.add_argument("--output", required=True, help="directory for the shards and manifest.json")
    p.add_argument("--shard-tokens", type=int, default=50_000_000, help="tokens per shard (default 50M)")
    p.add_argument("--workers", type=int, default=None, help="processes splitting sentences (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("pretrain", help="pretrain BERT (MLM + NSP, SOP or MLM only) from raw text or prepared shards")
    data = p.add_argument_group("data and model")
    data.add_argument("--corpus", nargs="+", help="raw UTF-8 text files (prepared into OUTPUT/corpus)")
    data.add_argument("--data", help="a corpus prepared by `bertkit prepare` (instead of --corpus)")
    data.add_argument("--output", required=True, help="directory for the model (HF format), logs and checkpoints")
    data.add_argument("--tokenizer", help="tokenizer directory (default: --init-from's, else trained on --corpus)")
    data.add_argument("--vocab-size", type=int, default=30522, help="size of a vocabulary trained here (default 30522)")
    data.add_argument("--cased", action="store_true", help="a vocabulary trained here keeps case and accents")
    data.add_argument("--init-from", help="continue pretraining this checkpoint (domain adaptation)")
    data.add_argument("--preset", choices=list(PRESETS), default="tiny", help="size of a fresh model (default tiny)")
    data.add_argument("--family", choices=[f.model_type for f in FAMILIES], default="bert",
                      help="a fresh model's family (default bert); roberta, distilbert and electra pretrain with "
                           "--objective mlm")
    data.add_argument("--workers", type=int, default=None, help="processes preparing the corpus (default: all cores)")

    task = p.add_argument_group("examples and masking")
    task.add_argument("--objective", choices=OBJECTIVES, default=None,
                      help="nsp: BERT's next-sentence prediction; sop: ALBERT's sentence order; mlm: masked LM only "
                           "(default: nsp for BERT, mlm for the others; --init-from: as its family)")
    task.add_argument("--packing", choices=("doc-sentences", "full-sentences"), default=None,
                      help="mlm: runs of sentences that stop at the end of a document, or go on into the next "
                           "(RoBERTa's FULL-SENTENCES; the default for --family roberta)")
    task.add_argument("--max-length", type=int, default=128, help="tokens per example (default 128)")
    task.add_argument("--short-seq-prob", type=float, default=0.1, help="share of shorter examples (default 0.1)")
    task.add_argument("--mask-prob", type=float, default=0.15, help="share of tokens to predict (default 0.15)")
    task.add_argument("--max-predictions", type=int, default=None, help="cap of masked tokens per example")
    task.add_argument("--whole-word-mask", action="store_true", help="mask all pieces of a word together")
    task.add_argument("--static-masking", action="store_true", help="one mask per example (default: fresh each epoch)")
    task.add_argument("--eval-fraction", type=float, default=0.01, help="share of documents held out (default 0.01)")
    task.add_argument("--eval-max-examples", type=int, default=2000, help="cap on held-out examples (default 2000)")

    run = p.add_argument_group("training")
    run.add_argument("--steps", type=int, default=None, help="optimizer steps")
    run.add_argument("--epochs", type=float, default=None, help="passes over the examples (instead of --steps)")
    add_engine_options(run, lr=1e-4, warmup_ratio=0.01)  # BERT's peak rate; pretraining warms up briefly
    run.add_argument("--log-every", type=int, default=10, help="steps between metrics.jsonl lines (default 10)")
    p.set_defaults(func=cmd_pretrain)
