"""Convert a fairseq RoBERTa masked LM (checkpoint + dict.txt) into a Hugging Face RoBERTa directory.

The output is what transformers' `RobertaForMaskedLM.from_pretrained` and `AutoTokenizer.from_pretrained`
read: config.json, model.safetensors (transformers' key names) and tokenizer files. fairseq is never
imported: the checkpoint is read with `torch.load(weights_only=True)` and an allow-list holding only
`argparse.Namespace` (fairseq keeps its training arguments in one), so no pickled code can run.

What fairseq's RoBERTa is, and so what this accepts (fairseq `models/roberta/model.py`, `base_architecture`):
post-LN layers (`encoder_normalize_before` false), a LayerNorm on the embeddings, learned positions that start
at padding_idx + 1 (transformers' RoBERTa numbers them the same way), GELU, an LM head
dense -> GELU -> LayerNorm -> vocabulary projection. Anything else is refused with the reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import save_file

from .checkpoint import safe_torch_load
from .errors import CheckpointError
from .files import atomic_directory

logger = logging.getLogger("bertkit")

# fairseq's Dictionary puts these first, in this order; the masked-LM task appends <mask> after dict.txt.
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
BOS, PAD, EOS, UNK = FAIRSEQ_SPECIALS
BOS_ID, PAD_ID, EOS_ID = range(3)
MASK = "<mask>"
# The classes a fairseq checkpoint legitimately pickles besides tensors and plain containers.
ALLOWED_GLOBALS = [argparse.Namespace]
# fairseq's LayerNorm default; transformers reads it from config.json.
LAYER_NORM_EPS = 1e-5

# Per-layer renames, fairseq -> transformers (`layers.N.` -> `roberta.encoder.layer.N.`).
_LAYER_KEYS = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "output.LayerNorm",
}
_LM_HEAD_KEYS = ("dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias")
# Buffers fairseq saves that carry no weights (a format version; sinusoidal positions' dtype holder).
_IGNORED_SUFFIXES = ("version", "_float_tensor")


@dataclass(frozen=True)
class FairseqRoberta:
    """What a fairseq RoBERTa checkpoint holds once read and checked: the HF config and state dict."""

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    vocabulary: list[str]
    arch: str


def convert_fairseq_roberta(checkpoint: Path, dict_file: Path, output: Path, overwrite: bool = False) -> Path:
    """Write `output` as an HF RoBERTa masked-LM directory converted from a fairseq checkpoint and its dict.txt.

    Everything is read and checked before anything is written; the directory appears complete or not at all.
    An existing non-empty `output` is refused unless `overwrite` (then it is replaced as a whole).
    """
    checkpoint, dict_file, output = Path(checkpoint), Path(dict_file), Path(output)
    empty_directory = output.is_dir() and not any(output.iterdir())
    if output.exists() and not empty_directory and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    model = read_fairseq_roberta(checkpoint, dict_file)
    tokenizer_files = tokenizer_files_for(model.vocabulary, model_max_length=model.config["max_position_embeddings"] - 2)
    with atomic_directory(output, keep_old=lambda name: False) as staging:
        (staging / "config.json").write_text(json.dumps(model.config, indent=2, sort_keys=True) + "\n")
        save_file(model.state_dict, str(staging / "model.safetensors"), metadata={"format": "pt"})
        for name, content in tokenizer_files.items():
            (staging / name).write_text(content)
    return output


def read_fairseq_roberta(checkpoint: Path, dict_file: Path) -> FairseqRoberta:
    """Load, check and map a fairseq RoBERTa checkpoint (nothing is written)."""
    raw = load_fairseq_checkpoint(checkpoint)
    args = fairseq_args(raw, checkpoint)
    arch = str(args.get("arch") or args.get("_name") or "unknown")
    state = _encoder_state(raw, checkpoint, arch)
    _check_architecture(args, state, checkpoint, arch)
    symbols = read_fairseq_dictionary(dict_file)
    vocabulary = _vocabulary(symbols, rows=state["sentence_encoder.embed_tokens.weight"].shape[0],
                             checkpoint=checkpoint, dict_file=dict_file)
    config = _hf_config(args, state, checkpoint, len(vocabulary))
    return FairseqRoberta(config=config, state_dict=_hf_state_dict(args, state, config, checkpoint),
                          vocabulary=vocabulary, arch=arch)


# --- reading ---

def load_fairseq_checkpoint(file: Path) -> dict[str, Any]:
    """The checkpoint's top-level dict, unpickled with `weights_only=True` and only `argparse.Namespace` allowed."""
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such checkpoint file")
    raw = safe_torch_load(file, "PyTorch checkpoint", ALLOWED_GLOBALS)
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), Mapping):
        found = sorted(raw)[:8] if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{file}: not a fairseq checkpoint (expected a dict with a 'model' state dict; found {found})")
    return raw


def fairseq_args(raw: Mapping[str, Any], file: Path) -> dict[str, Any]:
    """The model's arguments: `args` (a Namespace, fairseq < 0.10.2) or `cfg["model"]` (dict or Namespace, later)."""
    source = raw.get("args")
    if source is None and isinstance(raw.get("cfg"), Mapping):
        source = raw["cfg"].get("model")
    if isinstance(source, argparse.Namespace):
        return vars(source)
    if isinstance(source, Mapping):
        return dict(source)
    raise CheckpointError(f"{file}: no model arguments (neither 'args' nor 'cfg.model'); cannot tell its architecture")


def read_fairseq_dictionary(file: Path) -> list[str]:
    """fairseq's Dictionary as fairseq builds it: the four specials, then one symbol per dict.txt line.

    A line is `SYMBOL COUNT`, optionally followed by `#fairseq:overwrite` (then a repeated symbol keeps its first
    index instead of being an error), the way `Dictionary.add_from_file` reads it.
    """
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such dictionary file")
    symbols = list(FAIRSEQ_SPECIALS)
    seen = set(symbols)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{file}: not UTF-8 text (byte {e.start}); expected fairseq's dict.txt") from None
    for number, line in enumerate(lines, start=1):
        fields = line.rstrip().rsplit(" ", 1)
        overwrite = len(fields) == 2 and fields[1] == "#fairseq:overwrite"
        if overwrite:
            fields = fields[0].rsplit(" ", 1)
        if len(fields) != 2 or not fields[0] or not fields[1].lstrip("-").isdigit():
            raise CheckpointError(f"{file}, line {number}: expected 'SYMBOL COUNT [#fairseq:overwrite]', got {line!r}")
        symbol = fields[0]
        if symbol in seen:
            if overwrite:
                continue
            raise CheckpointError(f"{file}, line {number}: symbol {symbol!r} repeats (fairseq refuses it without "
                             f"#fairseq:overwrite)")
        seen.add(symbol)
        symbols.append(symbol)
    return symbols


def _vocabulary(symbols: list[str], rows: int, checkpoint: Path, dict_file: Path) -> list[str]:
    """fairseq's id -> symbol list, matched to the embedding's row count.

    The masked-LM task appends <mask> (unless dict.txt has it). Rows beyond that are the `madeupwordNNNN` padding
    fairseq adds to reach a multiple of 8, named as fairseq names them; never used by the tokenizer.
    """
    vocabulary = symbols if MASK in symbols else [*symbols, MASK]
    extra = rows - len(vocabulary)
    if extra == 0:
        return vocabulary
    if 0 < extra < 8 and rows % 8 == 0:
        start = sum(s.startswith("madeupword") for s in vocabulary)  # dict.txt may list some already
        padding = [f"madeupword{i:04d}" for i in range(start, start + extra)]
        return [*vocabulary, *padding]
    raise CheckpointError(
        f"{checkpoint}: the token embedding has {rows} rows, but {dict_file} gives {len(vocabulary)} symbols "
        f"(4 specials + {len(symbols) - 4} lines + <mask>); is this the checkpoint's own dict.txt?")


# --- checking ---

def _encoder_state(raw: Mapping[str, Any], file: Path, arch: str) -> dict[str, torch.Tensor]:
    """The RoBERTa encoder's tensors without their `encoder.`/`decoder.` prefix, in the current fairseq names.

    fairseq < 0.10 called the encoder `decoder` and the embedding LayerNorm `emb_layer_norm`;
    `RobertaModel.upgrade_state_dict_named` renames both, and so does this.
    """
    model = raw["model"]
    prefix = next((p for p in ("encoder.", "decoder.") if f"{p}sentence_encoder.embed_tokens.weight" in model), None)
    if prefix is None:
        sample = ", ".join(sorted(model)[:4])
        raise CheckpointError(f"{file}: not a fairseq RoBERTa (arch {arch!r}): no encoder.sentence_encoder.embed_tokens"
                              f".weight among its {len(model)} weights (first: {sample})")
    state: dict[str, torch.Tensor] = {}
    heads = sorted({key.split(".")[1] for key in model if key.startswith("classification_heads.")})
    if heads:  # sentence-level heads sit beside the encoder (RobertaModel.classification_heads)
        logger.warning("%s: classification heads %s are not converted (the output is the masked LM)", file, heads)
    for key, value in model.items():
        if key.startswith("classification_heads."):
            continue
        if not key.startswith(prefix):
            raise CheckpointError(f"{file}: weight {key!r} is outside the RoBERTa encoder (arch {arch!r}); "
                                  f"not a plain RoBERTa masked LM")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{file}: {key} is a {type(value).__name__}, not a tensor")
        name = key[len(prefix):].replace(".emb_layer_norm.", ".layernorm_embedding.")
        fused, _, part = name.rpartition(".in_proj_")
        if fused:  # old fairseq kept q, k, v in one tensor; split it as fairseq's own upgrade does
            for proj, piece in zip(("q", "k", "v"), value.chunk(3, dim=0)):
                state[f"{fused}.{proj}_proj.{part}"] = piece
        else:
            state[name] = value
    return state


def _check_architecture(args: Mapping[str, Any], state: Mapping[str, torch.Tensor], file: Path, arch: str) -> None:
    """Refuse what transformers' RobertaForMaskedLM cannot compute exactly."""
    where = f"{file} (arch {arch!r})"
    if args.get("encoder_normalize_before") or "sentence_encoder.layer_norm.weight" in state:
        raise CheckpointError(f"{where}: pre-LN layers (encoder_normalize_before=True); transformers' RoBERTa is "
                              f"post-LN, so this model cannot be converted to it")
    activation = args.get("activation_fn", "gelu")
    if activation != "gelu":
        raise CheckpointError(f"{where}: activation_fn {activation!r}; transformers' RoBERTa LM head always applies "
                              f"GELU, so only activation_fn 'gelu' converts exactly")
    if args.get("adaptive_input"):
        raise CheckpointError(f"{where}: adaptive input embeddings are not supported")
    for name in ("encoder_learned_pos", "layernorm_embedding"):
        if args.get(name) is False:
            raise CheckpointError(f"{where}: {name}=False; transformers' RoBERTa needs learned positions and an "
                                  f"embedding LayerNorm")
    if args.get("no_token_positional_embeddings"):
        raise CheckpointError(f"{where}: no_token_positional_embeddings=True; transformers' RoBERTa needs positions")


def _layer_count(state: Mapping[str, torch.Tensor]) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(r"sentence_encoder\.layers\.(\d+)\.", k))}
    return max(indices) + 1 if indices else 0


def _require(state: Mapping[str, torch.Tensor], key: str, shape: tuple[int, ...], file: Path) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{file}: missing weight encoder.{key}; not a complete fairseq RoBERTa masked LM")
    tensor = state[key]
    if tuple(tensor.shape) != shape:
        raise CheckpointError(f"{file}: encoder.{key} has shape {tuple(tensor.shape)}, expected {shape}")
    # fp16/bf16 checkpoints widen losslessly; transformers loads float32 by default. A copy, because
    # tied fairseq tensors share storage, which safetensors refuses to write.
    return tensor.detach().to(torch.float32, copy=True).contiguous()


def _hf_config(args: Mapping[str, Any], state: Mapping[str, torch.Tensor], file: Path, vocab_size: int) -> dict[str, Any]:
    """transformers' RobertaConfig fields: sizes from the weights, checked against the arguments where they say."""
    hidden = state["sentence_encoder.embed_tokens.weight"].shape[1]
    layers = _layer_count(state)
    fc1 = state.get("sentence_encoder.layers.0.fc1.weight")
    if layers == 0 or fc1 is None:
        raise CheckpointError(f"{file}: missing weight encoder.sentence_encoder.layers.0.fc1.weight; no encoder layers")
    kept = args.get("encoder_layers_to_keep")
    declared = {
        "encoder_layers": (len(str(kept).split(",")) if kept else args.get("encoder_layers"), layers),
        "encoder_embed_dim": (args.get("encoder_embed_dim"), hidden),
        "encoder_ffn_embed_dim": (args.get("encoder_ffn_embed_dim"), fc1.shape[0]),
    }
    for name, (said, found) in declared.items():
        if said is not None and said != found:
            raise CheckpointError(f"{file}: the arguments say {name}={said}, the weights have {found}")
    heads = args.get("encoder_attention_heads")
    if not isinstance(heads, int) or heads <= 0 or hidden % heads:
        raise CheckpointError(f"{file}: encoder_attention_heads {heads!r} does not divide the hidden size {hidden} "
                              f"(the weights do not say how many heads there are, so the arguments must)")
    positions = state.get("sentence_encoder.embed_positions.weight")
    if positions is None:
        raise CheckpointError(f"{file}: missing weight encoder.sentence_encoder.embed_positions.weight (learned "
                              f"positions); not a RoBERTa")
    max_positions = args.get("max_positions", args.get("tokens_per_sample"))
    # fairseq's LearnedPositionalEmbedding has padding_idx + 1 rows more than max_positions; transformers'
    # RoBERTa numbers positions from padding_idx + 1 the same way, so the table is copied as it is.
    if max_positions is not None and positions.shape[0] != max_positions + PAD_ID + 1:
        raise CheckpointError(f"{file}: embed_positions has {positions.shape[0]} rows, expected max_positions "
                              f"{max_positions} + {PAD_ID + 1}")
    return {
        "architectures": ["RobertaForMaskedLM"],
        "model_type": "roberta",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": fc1.shape[0],
        "hidden_act": "gelu",  # _check_architecture accepts no other
        "hidden_dropout_prob": float(args.get("dropout", 0.1)),
        "attention_probs_dropout_prob": float(args.get("attention_dropout", 0.1)),
        "max_position_embeddings": positions.shape[0],
        "type_vocab_size": 1,
        "initializer_range": 0.02,
        "layer_norm_eps": LAYER_NORM_EPS,
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "tie_word_embeddings": _tied(args, state),
    }


def _embed_scale(args: Mapping[str, Any], hidden: int) -> float:
    # RoBERTa's base_architecture sets no_scale_embedding=True; a model trained without it multiplies
    # token embeddings by sqrt(hidden) before adding positions.
    return 1.0 if args.get("no_scale_embedding", True) else math.sqrt(hidden)


def _tied(args: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> bool:
    """Whether the LM head's projection is the token embedding (fairseq ties them unless untie_weights_roberta)."""
    embed = state["sentence_encoder.embed_tokens.weight"]
    head = state.get("lm_head.weight")
    hidden = embed.shape[1]
    same = head is None or (head.shape == embed.shape and torch.equal(head, embed))
    return same and not args.get("untie_weights_roberta") and _embed_scale(args, hidden) == 1.0


def _hf_state_dict(args: Mapping[str, Any], state: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                   file: Path) -> dict[str, torch.Tensor]:
    """transformers' RobertaForMaskedLM weights; every fairseq encoder weight is used or the checkpoint is refused."""
    h, ffn, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    used: set[str] = set()

    def take(key: str, shape: tuple[int, ...]) -> torch.Tensor:
        used.add(key)
        return _require(state, key, shape, file)

    embed = take("sentence_encoder.embed_tokens.weight", (vocab, h))
    out: dict[str, torch.Tensor] = {
        # Folding the embedding scale into the table reproduces fairseq's scale * E[token] + P[position].
        "roberta.embeddings.word_embeddings.weight": embed * _embed_scale(args, h),
        "roberta.embeddings.position_embeddings.weight":
            take("sentence_encoder.embed_positions.weight", (config["max_position_embeddings"], h)),
        # fairseq has no token types; one zero row leaves the sum unchanged.
        "roberta.embeddings.token_type_embeddings.weight": torch.zeros(1, h),
        "roberta.embeddings.LayerNorm.weight": take("sentence_encoder.layernorm_embedding.weight", (h,)),
        "roberta.embeddings.LayerNorm.bias": take("sentence_encoder.layernorm_embedding.bias", (h,)),
    }
    for n in range(config["num_hidden_layers"]):
        src, dst = f"sentence_encoder.layers.{n}.", f"roberta.encoder.layer.{n}."
        for old, new in _LAYER_KEYS.items():
            rows, cols = {"fc1": (ffn, h), "fc2": (h, ffn)}.get(old, (h, h))
            is_norm = old.endswith("layer_norm")
            out[dst + new + ".weight"] = take(src + old + ".weight", (h,) if is_norm else (rows, cols))
            out[dst + new + ".bias"] = take(src + old + ".bias", (h,) if is_norm else (rows,))
    for key in _LM_HEAD_KEYS:
        shape = (h, h) if key == "dense.weight" else ((vocab,) if key == "bias" else (h,))
        out["lm_head." + key] = take("lm_head." + key, shape)
    if not config["tie_word_embeddings"]:
        # The head keeps fairseq's own projection (the unscaled embedding, or untied weights). Untied,
        # transformers' decoder also has a bias of its own (it saves both), so it gets the same values.
        out["lm_head.decoder.weight"] = take("lm_head.weight", (vocab, h)) if "lm_head.weight" in state else embed
        out["lm_head.decoder.bias"] = out["lm_head.bias"].clone()
    used.add("lm_head.weight")
    unused = sorted(k for k in state if k not in used and not k.endswith(_IGNORED_SUFFIXES))
    if unused:
        raise CheckpointError(f"{file}: weights a RoBERTa masked LM does not have: {', '.join(unused[:6])}"
                              f"{' ...' if len(unused) > 6 else ''}; not a plain RoBERTa (arch {args.get('arch')!r})")
    return out


# --- tokenizer ---

def tokenizer_files_for(vocabulary: list[str], model_max_length: int) -> dict[str, str]:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json for fairseq's vocabulary.

    fairseq encodes a line by splitting it on whitespace and looking each piece up. When every symbol is one
    character (a protein or character model), the tokenizer also splits every character, so `EVQL` and `E V Q L`
    give the same ids; otherwise it splits on whitespace only, as fairseq does. Either way `<s> $A </s>`
    surrounds the text (`<s> $A </s></s> $B </s>` for pairs), as RoBERTa's fairseq tasks do.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    ids = {symbol: i for i, symbol in enumerate(vocabulary)}
    specials = [*FAIRSEQ_SPECIALS, MASK]
    per_character = all(len(s) == 1 for s in vocabulary if s not in specials and not s.startswith("madeupword"))
    tokenizer = Tokenizer(models.WordLevel(ids, unk_token=UNK))
    splitters: list[pre_tokenizers.PreTokenizer] = [pre_tokenizers.WhitespaceSplit()]
    if per_character:
        splitters.append(pre_tokenizers.Split(Regex("."), behavior="isolated"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(splitters)
    if per_character:  # decode to `EVQL`, not the default space-joined `E V Q L`
        tokenizer.decoder = decoders.Fuse()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} {EOS} $B {EOS}",
        special_tokens=[(BOS, BOS_ID), (EOS, EOS_ID)])
    tokenizer.add_special_tokens(specials)
    names = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK, "sep_token": EOS, "cls_token": BOS,
             "pad_token": PAD, "mask_token": MASK}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **names,
        "model_max_length": model_max_length,
        "model_input_names": ["input_ids", "attention_mask"],  # RoBERTa has no token types
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
    }
    return {
        "tokenizer.json": tokenizer.to_str(pretty=True),
        "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
        "special_tokens_map.json": json.dumps(names, indent=2) + "\n",
    }


def describe(directory: str | os.PathLike) -> str:
    """One line about a converted directory, for the CLI."""
    config = json.loads((Path(directory) / "config.json").read_text())
    return (f"{config['num_hidden_layers']} layers, hidden {config['hidden_size']}, {config['num_attention_heads']} "
            f"heads, vocabulary {config['vocab_size']}, up to {config['max_position_embeddings'] - 2} tokens")
