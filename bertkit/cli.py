"""`bertkit` command line: one entry point, one function per subcommand.

Errors a user can fix (a missing file, a bad config, an unreadable line) print one clear line
and exit with status 2; `BERTKIT_DEBUG=1` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

import numpy as np

from . import checkpoint, packaged
from .errors import BertkitError, UsageError
from .families import HEAD_KINDS
from .files import atomic_directory, atomic_file
from .cli_options import add_backend_option, add_batch_options, add_precision_option
from .memory import keep_freed_memory
from .readers import read_lines, read_texts, refuse_empty
from .runtime import apply_torch_backend, check_precision, load_tokenizer, precision_dtype, resolve_device

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

logger = logging.getLogger("bertkit")


# --- subcommands ---

def cmd_info(args: argparse.Namespace) -> None:
    location = packaged.resolve(args.model)
    model_dir = location.model_dir
    config = checkpoint.load_config(model_dir)
    state = checkpoint.read_state_dict(model_dir)
    tensors = checkpoint.rename_legacy_keys(config.family.to_bertkit_keys(state, "base"))  # bertkit's names
    n_params = sum(t.numel() for k, t in tensors.items() if not k.endswith("predictions.decoder.weight"))
    weight_files = [p for p in sorted(model_dir.iterdir()) if p.name.endswith((".safetensors", ".bin")) and p.name != "training_args.bin"]
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()})
    has = lambda fragment: any(fragment in k for k in tensors)  # noqa: E731
    heads = [name for name, key in (("pooler", "pooler.dense"), ("masked-LM", "cls.predictions.transform"),
                                    ("next-sentence", "cls.seq_relationship"),
                                    ("replaced-token detection", "discriminator_predictions."), ("classifier", "classifier."),
                                    ("question-answering", "qa_outputs.")) if has(key)]
    tokenizer_files = [n for n in ("tokenizer.json", "vocab.txt") if (model_dir / n).is_file()]
    if location.vocab_file is not None:
        tokenizer_files.append(str(location.vocab_file))
    info = {
        "model": str(model_dir),
        "family": config.family.name,
        "model_type": config.model_type,
        "architectures": config.extra.get("architectures", []),
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": config.hidden_act,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "max_length": config.max_length,
        "type_vocab_size": config.type_vocab_size,
        "embedding_size": config.embedding_width,
        "parameters": n_params,
        "weights": [{"file": p.name, "bytes": p.stat().st_size} for p in weight_files],
        "dtype": dtypes,
        "heads": heads,
        "labels": config.id2label if "id2label" in json.loads((model_dir / "config.json").read_text()) else None,
        "tokenizer": tokenizer_files,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return
    size = sum(w["bytes"] for w in info["weights"])
    rows = [
        ("model", info["model"]),
        ("family", f"{config.family.name} (model_type {config.model_type})"),
        ("architecture", ", ".join(info["architectures"]) or "(not recorded)"),
        ("encoder", f"{config.num_hidden_layers} layers, hidden {config.hidden_size}, {config.num_attention_heads} heads "
                    f"of {config.head_dim}, feed-forward {config.intermediate_size}, {config.hidden_act}"),
        ("inputs", f"vocabulary {config.vocab_size}, up to {config.max_length} tokens, "
                   f"{config.type_vocab_size or 'no'} segment types"
                   + (f", embeddings of width {config.embedding_width}" if config.embedding_width != config.hidden_size else "")),
        ("parameters", f"{n_params:,} ({n_params / 1e6:.1f}M)"),
        ("weights", f"{', '.join(w['file'] for w in info['weights'])}: {size / 1e6:.1f} MB, {'/'.join(dtypes)}"),
        ("heads", ", ".join(heads) or "none (bare encoder)"),
        ("labels", ", ".join(f"{i}={label}" for i, label in info["labels"].items()) if info["labels"] else "-"),
        ("tokenizer", ", ".join(tokenizer_files) or "none found"),
    ]
    for key, value in rows:
        print(f"{key:<13}{value}")


def cmd_fill_mask(args: argparse.Namespace) -> None:
    from .heads import BertForMaskedLM
    from .infer import MissingMaskError, fill_masks, mask_window

    if args.input is not None and args.text:
        raise UsageError("give texts as arguments or in --input FILE, not both")
    texts = read_lines(args.input) if args.input is not None else args.text
    if not texts:
        raise UsageError(f"{args.input}: no lines" if args.input is not None else
                         'give a text with [MASK], e.g. "The [MASK] sat on the mat." (or --input FILE)')
    location = packaged.resolve(args.model)
    model_dir = location.model_dir
    model = BertForMaskedLM.from_pretrained(model_dir, device=resolve_device(args.device), dtype=precision_dtype(args.precision))
    if any(k.startswith("cls.predictions") for k in model.load_report.missing):
        raise UsageError(f"{model_dir} has no masked-LM head (cls.predictions.*); fill-mask needs a model "
                         "pretrained with one, e.g. the output of `bertkit pretrain`")
    tokenizer = load_tokenizer(location)
    try:
        results = fill_masks(model, tokenizer, texts, args.top_k, args.batch_size, args.max_tokens)
    except MissingMaskError as e:
        raise UsageError(f"{args.input}, line {e.index + 1}: {e}" if args.input is not None else str(e)) from None
    for number, (text, masks) in enumerate(zip(texts, results), start=1):
        for mask_index, predictions in enumerate(masks):
            cut_off = not predictions  # beyond the tokens the model reads (fill_masks warns)
            if args.json:
                line = {"line": number} if args.input is not None else {}
                print(json.dumps({"text": text, **line, "mask": mask_index, **({"cut_off": True} if cut_off else {}),
                                  "predictions": [p.__dict__ for p in predictions]}))
                continue
            print(f"{text}" + (f"  (mask {mask_index + 1})" if mask_index else ""))
            if cut_off:
                print(f"  cut off: this {tokenizer.mask_token} lies beyond the {mask_window(model, tokenizer)} tokens the "
                      "model reads")
            for p in predictions:
                print(f"  {p.score:7.4f}  {p.token:<15} {p.sequence}")


def _embedding_settings(args: argparse.Namespace, model_dir: Path):
    from .infer import EmbeddingSettings

    settings = EmbeddingSettings.for_model(model_dir)
    if args.pooling is not None:
        settings.pooling = args.pooling
    if args.normalize is not None:
        settings.normalize = args.normalize
    if args.max_length is not None:
        settings.max_length = args.max_length
    return settings


def _load_encoder(args: argparse.Namespace):
    from .model import BertModel

    check_precision(args.backend, args.precision)
    location = packaged.resolve(args.model)
    if args.backend.startswith("onnx"):
        from .onnx_backend import load_encoder

        model = load_encoder(location.model_dir, args.backend)
    else:
        model = BertModel.from_pretrained(location.model_dir,
                                          device="cpu" if args.backend == "torch-int8" else resolve_device(args.device))
        model = apply_torch_backend(model, args.backend, args.precision)
    return model, load_tokenizer(location), _embedding_settings(args, location.model_dir)


def cmd_embed(args: argparse.Namespace) -> None:
    from .infer import embed

    texts = read_lines(args.input)
    if not texts:
        raise UsageError(f"{args.input}: no lines to embed")
    empty = sum(1 for t in texts if not t.strip())
    if empty:
        logger.warning("%s: %d empty lines; their rows hold the embedding of an empty text", args.input, empty)
    model, tokenizer, settings = _load_encoder(args)
    vectors = embed(model, tokenizer, texts, settings, batch_size=args.batch_size, progress=not args.quiet,
                    max_tokens=args.max_tokens)
    output = Path(args.output)
    with atomic_file(output) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, vectors)
    print(f"wrote {output}: {vectors.shape[0]} embeddings of dimension {vectors.shape[1]} "
          f"(pooling={settings.pooling}, normalize={settings.normalize}, max_length={settings.max_length or tokenizer.model_max_length})",
          file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> None:
    from .export import ExportOptions, export_onnx
    from .quantize import Int8Settings

    int8_flags = [flag for flag, value in (("--weight-type", args.weight_type), ("--[no-]per-channel", args.per_channel),
                                           ("--keep-fp32", args.keep_fp32)) if value is not None]
    if int8_flags and not args.int8:
        raise UsageError(f"{', '.join(int8_flags)} only apply to INT8; add --int8")
    int8 = Int8Settings(weight_type=args.weight_type or "qint8", per_channel=args.per_channel is not False,
                        keep_fp32=tuple(g for g in (args.keep_fp32 or "").split(",") if g)) if args.int8 else None
    options = ExportOptions(head=args.head, opset=args.opset, fp16=args.fp16, int8=int8,
                            eval_data=Path(args.eval_data) if args.eval_data else None, max_drop=args.max_drop,
                            overwrite=args.overwrite)
    result = export_onnx(args.model, args.output, options, log=print)
    print(f"wrote {result.output}: {', '.join(result.report['files'].values())}, export.json")


def cmd_similarity(args: argparse.Namespace) -> None:
    from .infer import embed

    if args.input is not None:
        if args.query is None or len(args.texts) > 0:
            raise UsageError("with --input, give the search text as --query and no positional texts")
        if not args.query.strip():
            raise UsageError("--query is empty")
        corpus = read_texts(args.input)
    refuse_empty(args.texts)
    model, tokenizer, settings = _load_encoder(args)
    settings.normalize = True  # cosine similarity
    if args.input is not None:
        vectors = embed(model, tokenizer, [args.query, *corpus], settings)
        scores = vectors[1:] @ vectors[0]
        for i in np.argsort(-scores)[: args.top_k]:
            print(f"{scores[i]:.4f}  line {i + 1}: {corpus[i]}")
        return
    if len(args.texts) < 2:
        raise UsageError("give at least two texts to compare (or --input FILE --query TEXT to search)")
    vectors = embed(model, tokenizer, args.texts, settings)
    scores = vectors @ vectors.T
    for i in range(len(args.texts)):
        for j in range(i + 1, len(args.texts)):
            print(f"{scores[i, j]:.4f}  {args.texts[i]!r} ~ {args.texts[j]!r}")


def cmd_vocab(args: argparse.Namespace) -> None:
    from .tokenizer import Tokenizer

    output = Path(args.output)
    if output.exists() and any(output.iterdir()) and not args.overwrite:
        raise UsageError(f"{output} exists and is not empty; pass --overwrite to replace its tokenizer files")
    for name in args.input:
        if not Path(name).is_file():
            raise UsageError(f"{name}: no such input file")
    bpe = args.kind == "bpe"
    try:
        # A byte-level BPE vocabulary is cased (RoBERTa's); --cased concerns WordPiece.
        tokenizer = Tokenizer.train(args.input, kind=args.kind, vocab_size=args.vocab_size,
                                    lowercase=None if bpe else not args.cased, min_frequency=args.min_frequency,
                                    special_tokens=args.special_tokens, show_progress=not args.quiet)
    except ValueError as e:
        raise UsageError(f"--special-tokens: {e}") from None
    with atomic_directory(output) as staging:
        tokenizer.save_pretrained(staging)
    print(f"wrote {output}: {'byte-level BPE' if bpe else 'WordPiece'} vocabulary of {tokenizer.vocab_size} tokens "
          f"({'cased' if bpe or args.cased else 'uncased'}; special: "
          f"{' '.join(tokenizer.convert_ids_to_tokens(sorted(tokenizer.all_special_ids)))})", file=sys.stderr)


def cmd_data(args: argparse.Namespace) -> None:
    from . import packaged_data

    if args.name is None:
        for name, spec in packaged_data.DATASETS.items():
            print(f"{name:<17}{spec.task}: {spec.description}\n{'':<17}{spec.statistics}\n{'':<17}needs: {spec.pip_command}")
        return
    if args.output is None:
        raise UsageError("give --output DIR to write the splits")
    for split, path in packaged_data.materialize(args.name, args.output, overwrite=args.overwrite).items():
        print(f"{split:<6}{path}")


def cmd_convert(args: argparse.Namespace) -> None:
    from .convert import convert_fairseq_roberta, describe

    output = convert_fairseq_roberta(Path(args.checkpoint), Path(args.dict), Path(args.output), overwrite=args.overwrite)
    print(f"wrote {output}: Hugging Face RoBERTa masked LM from {args.checkpoint} ({describe(output)})", file=sys.stderr)


# --- argument parsing ---

def _add_model(p: argparse.ArgumentParser) -> None:
    names = ", ".join(packaged.PACKAGED_MODELS)
    p.add_argument("model", metavar="MODEL_DIR", help=f"a Hugging Face-format model directory, or a packaged model: {names}")


def _add_encoder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pooling", choices=("mean", "cls"), default=None,
                   help="mean of token vectors or the [CLS] vector (default: the model's sentence-transformers "
                        "setting if it has one, else mean)")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="unit-length embeddings (default: as the model's sentence-transformers modules say, else off)")
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per text; longer texts are truncated, with a warning (default: the model's)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    add_backend_option(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertkit", description="BERT end to end: inspect, embed, fill masks, "
                                     "train vocabularies. Every model is a Hugging Face-format directory.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('bertkit').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="show a model's configuration, size and heads")
    _add_model(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fill-mask", help="predict the tokens behind [MASK]")
    _add_model(p)
    p.add_argument("text", nargs="*", help='text with one or more [MASK], e.g. "The [MASK] sat on the mat."')
    p.add_argument("--input", help="UTF-8 file of texts with [MASK], one per line (instead of texts as arguments)")
    add_batch_options(p)
    p.add_argument("--top-k", type=int, default=5, help="predictions per mask (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per mask and line")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    add_precision_option(p)
    p.set_defaults(func=cmd_fill_mask)

    p = sub.add_parser("embed", help="embed a file of texts (one per line) into a .npy matrix")
    _add_model(p)
    p.add_argument("--input", required=True, help="UTF-8 text file, one text per line")
    p.add_argument("--output", required=True, help=".npy file to write: float32 (lines, hidden_size), row i = line i")
    add_batch_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_encoder_options(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("similarity", help="cosine similarity between texts, or search a file for a query")
    _add_model(p)
    p.add_argument("texts", nargs="*", help="texts to compare pairwise")
    p.add_argument("--input", help="file of candidate texts, one per line (with --query)")
    p.add_argument("--query", help="text to search for in --input")
    p.add_argument("--top-k", type=int, default=5, help="results shown with --query (default 5)")
    _add_encoder_options(p)
    p.set_defaults(func=cmd_similarity)

    p = sub.add_parser("export", help="export to ONNX (fp32, fp16) and INT8, checked against PyTorch")
    _add_model(p)
    p.add_argument("--format", choices=("onnx",), default="onnx", help="onnx (the only format so far)")
    p.add_argument("--output", required=True, help="directory to write: model.onnx, tokenizer, config, export.json")
    p.add_argument("--head", help=f"{', '.join(HEAD_KINDS)} (default: config.json's architectures)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (default 17)")
    p.add_argument("--fp16", action="store_true", help="also write model_fp16.onnx")
    p.add_argument("--int8", action="store_true", help="also write model_int8.onnx (dynamic quantisation)")
    p.add_argument("--weight-type", choices=("qint8", "quint8"), default=None, help="INT8 weights (default qint8)")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                   help="INT8: a scale per output channel (default), or one per tensor")
    p.add_argument("--keep-fp32", metavar="GROUPS", help="INT8: comma-separated groups left in fp32: embeddings, "
                   "layer.N (layer.-1 = the last), pooler, classifier")
    p.add_argument("--eval-data", help="labelled file in the task's format (as for `bertkit evaluate`): fail when "
                   "INT8 loses more than --max-drop points on it")
    p.add_argument("--max-drop", type=float, default=1.0, help="points of the task metric INT8 may lose (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("vocab", help="train a WordPiece (BERT) or byte-level BPE (RoBERTa) vocabulary from text files")
    p.add_argument("--input", nargs="+", required=True, help="UTF-8 text files")
    p.add_argument("--output", required=True,
                   help="directory for tokenizer.json, configs and vocab.txt (wordpiece) or vocab.json + merges.txt (bpe)")
    p.add_argument("--kind", choices=("wordpiece", "bpe"), default="wordpiece",
                   help="wordpiece: BERT's (default); bpe: RoBERTa's byte-level BPE, cased, <s> <pad> </s> <unk> <mask>")
    p.add_argument("--vocab-size", type=int, default=30522, help="vocabulary size (default 30522, BERT's)")
    p.add_argument("--cased", action="store_true",
                   help="wordpiece: keep case and accents (default: lowercase, strip accents); bpe is always cased")
    p.add_argument("--min-frequency", type=int, default=2, help="drop merges seen fewer times (default 2)")
    p.add_argument("--special-tokens", nargs="+", default=[], metavar="TOKEN",
                   help="extra tokens kept whole and never masked, after the kind's five ([PAD] [UNK] [CLS] [SEP] "
                        "[MASK] or <s> <pad> </s> <unk> <mask>; e.g. [URL] [USER])")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_vocab)

    p = sub.add_parser("data", help="list the packaged real datasets, or write one's train/dev/test files")
    p.add_argument("name", nargs="?", help="dataset name (omit to list them)")
    p.add_argument("--output", help="directory for train/dev/test files")
    p.add_argument("--overwrite", action="store_true", help="replace files that differ")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("convert", help="convert another library's checkpoint into a Hugging Face directory")
    formats = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    q = formats.add_parser("fairseq-roberta", help="a fairseq RoBERTa masked LM (checkpoint .pt + dict.txt), "
                           "read without unpickling code")
    q.add_argument("checkpoint", metavar="CHECKPOINT", help="fairseq checkpoint file (e.g. checkpoint_best.pt)")
    q.add_argument("--dict", required=True, metavar="FILE", help="the dict.txt the model was trained with")
    q.add_argument("--output", required=True, metavar="DIR", help="directory to write: config.json, "
                   "model.safetensors, tokenizer files")
    q.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    q.set_defaults(func=cmd_convert)

    from .cli_pretrain import add_pretrain_commands
    from .cli_tasks import add_task_commands

    add_task_commands(sub)
    add_pretrain_commands(sub)
    return parser


# Commands that load a model, write their output and are done. Run as the `bertkit` command, they end the process
# without tearing torch down (its operator registrations, thread pools, the model's memory), which costs a finished
# command about 0.4 s: `import torch` alone took 1.72 s with the teardown and 1.33 s without (medians of 12 runs).
# mypy exits this way for the same reason. Training commands (worker processes, checkpoint writers) exit normally.
HARD_EXIT_COMMANDS = frozenset({"info", "fill-mask", "embed", "similarity", "predict", "evaluate"})


def main(argv: Sequence[str] | None = None, hard_exit: bool = False) -> int:
    """Run one `bertkit` command; the exit status. `hard_exit` (the console command's): see HARD_EXIT_COMMANDS."""
    logging.basicConfig(level=logging.WARNING, format="bertkit: %(message)s")
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # batches reuse their activations' memory instead of faulting it back in (memory.py)
    status = _run_command(args)
    if hard_exit and args.command in HARD_EXIT_COMMANDS:
        _exit_now(status)
    return status


def _run_command(args: argparse.Namespace) -> int:
    handled: tuple[type[BaseException], ...] = (BertkitError, FileNotFoundError, FileExistsError, NotADirectoryError,
                                                IsADirectoryError, PermissionError, ValueError)
    run: Callable[[argparse.Namespace], None] = args.func
    try:
        run(args)
    except handled as e:
        if os.environ.get("BERTKIT_DEBUG"):
            raise
        print(f"bertkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `bertkit ... | head`
        return 0
    return 0


def _exit_now(status: int) -> None:
    """End the process at once, once the logs and standard streams are flushed (output files are closed by now)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone (`| head`) or a stream closed
            pass
    os._exit(status)


def console_main() -> None:
    """The `bertkit` console command."""
    sys.exit(main(hard_exit=True))


if __name__ == "__main__":
    console_main()
