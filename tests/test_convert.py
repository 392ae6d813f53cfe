"""fairseq RoBERTa -> Hugging Face RoBERTa conversion (bertkit.convert, `bertkit convert fairseq-roberta`).

The oracle is `fairseq_logits` below: fairseq's RoBERTa forward written out from the raw fairseq state dict
(fairseq itself is not installable here). transformers' RobertaForMaskedLM on the converted directory must give
the same logits; the real weights are sapiens' antibody models, small synthetic checkpoints cover the variants
and every refusal.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import bertkit
from bertkit import CheckpointError
from bertkit.cli import main
from bertkit.convert import convert_fairseq_roberta, read_fairseq_dictionary

transformers = pytest.importorskip("transformers")

SAPIENS = importlib.util.find_spec("sapiens")  # located, never imported (it imports fairseq)
SAPIENS_MODELS = Path(SAPIENS.submodule_search_locations[0]) / "models" / "v1" if SAPIENS else None
needs_sapiens = pytest.mark.skipif(SAPIENS is None, reason="sapiens==1.0.4 is not installed (scripts/setup.sh)")

# Published variable domains (INN sequences) of two therapeutic antibodies, and a short fragment so that
# a batch has padding.
HEAVY = [
    "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS",  # trastuzumab
    "EVQLVESGGGLVQPGRSLRLSCAASGFTFDDYAMHWVRQAPGKGLEWVSAITWNSGHIDYADSVEGRFTISRDNAKNSLYLQMNSLRAEDTAVYYCAKVSYLSTASSLDYWGQGTLVTVSS",  # adalimumab
    "QVQLVQSGAEVKKPGASVKVSCKAS",
]
LIGHT = [
    "DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPPTFGQGTKVEIK",  # trastuzumab
    "DIQMTQSPSSLSASVGDRVTITCRASQGIRNYLAWYQQKPGKAPKLLIYAASTLQSGVPSRFSGSGSGTDFTLTISSLQPEDVATYYCQRYNRAPYTFGQGTKVEIK",  # adalimumab
    "EIVLTQSPATLSLSPGERATLSC",
]
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


# --- the oracle: fairseq's RoBERTa forward from its own state dict ---

def fairseq_logits(model: dict[str, torch.Tensor], args: argparse.Namespace, tokens: torch.Tensor,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """fairseq RobertaModel(src_tokens) logits, (B, T, V): TransformerEncoder (post-LN) + RobertaLMHead."""
    state = {}
    for key, value in model.items():  # fairseq's upgrade_state_dict_named: decoder -> encoder, emb_layer_norm
        key = key.replace("decoder.", "encoder.", 1).replace(".emb_layer_norm.", ".layernorm_embedding.")
        if ".in_proj_" in key:  # fused q, k, v of old checkpoints
            stem, part = key.split(".in_proj_")
            for name, piece in zip("qkv", value.chunk(3)):
                state[f"{stem}.{name}_proj.{part}"] = piece
        else:
            state[key] = value
    s = {k[len("encoder.sentence_encoder."):]: v.to(dtype) for k, v in state.items() if k.startswith("encoder.sentence_encoder.")}
    head = {k[len("encoder.lm_head."):]: v.to(dtype) for k, v in state.items() if k.startswith("encoder.lm_head.")}
    hidden = s["embed_tokens.weight"].shape[1]
    heads = args.encoder_attention_heads
    pad = tokens.eq(1)  # (B, T)
    scale = 1.0 if getattr(args, "no_scale_embedding", True) else math.sqrt(hidden)
    # utils.make_positions: positions count non-pad tokens from padding_idx + 1; pads get padding_idx.
    positions = (torch.cumsum(~pad, dim=1) * ~pad) + 1  # (B, T)
    x = scale * F.embedding(tokens, s["embed_tokens.weight"]) + F.embedding(positions, s["embed_positions.weight"])
    x = F.layer_norm(x, (hidden,), s["layernorm_embedding.weight"], s["layernorm_embedding.bias"], 1e-5)
    x = x * (~pad).unsqueeze(-1)  # fairseq zeroes padded positions
    B, T, _ = x.shape
    layers = 1 + max(int(k.split(".")[1]) for k in s if k.startswith("layers."))
    for n in range(layers):
        p = lambda name: (s[f"layers.{n}.{name}.weight"], s[f"layers.{n}.{name}.bias"])  # noqa: E731
        split = lambda t: t.view(B, T, heads, hidden // heads).transpose(1, 2)  # noqa: E731  (B, h, T, d)
        q = split(F.linear(x, *p("self_attn.q_proj")) * (hidden // heads) ** -0.5)
        k = split(F.linear(x, *p("self_attn.k_proj")))
        v = split(F.linear(x, *p("self_attn.v_proj")))
        scores = (q @ k.transpose(-1, -2)).masked_fill(pad[:, None, None, :], float("-inf"))  # (B, h, T, T)
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, hidden)
        x = F.layer_norm(x + F.linear(attended, *p("self_attn.out_proj")), (hidden,), *p("self_attn_layer_norm"), 1e-5)
        ffn = F.linear(F.gelu(F.linear(x, *p("fc1"))), *p("fc2"))
        x = F.layer_norm(x + ffn, (hidden,), *p("final_layer_norm"), 1e-5)
    x = F.gelu(F.linear(x, head["dense.weight"], head["dense.bias"]))
    x = F.layer_norm(x, (hidden,), head["layer_norm.weight"], head["layer_norm.bias"], 1e-5)
    projection = head.get("weight", s["embed_tokens.weight"])
    return F.linear(x, projection) + head["bias"]  # (B, T, V)


def fairseq_tokens(sequences: list[str], dict_file: Path) -> torch.Tensor:
    """What fairseq's Dictionary.encode_line gives for `<s> E V Q ... </s>`, right-padded with <pad> (1)."""
    symbols = ["<s>", "<pad>", "</s>", "<unk>"] + [line.split()[0] for line in dict_file.read_text().splitlines()]
    index = {s: i for i, s in enumerate(symbols)}
    rows = [[0, *(index.get(c, 3) for c in seq), 2] for seq in sequences]
    width = max(map(len, rows))
    return torch.tensor([row + [1] * (width - len(row)) for row in rows])


def hf_logits(directory: Path, sequences: list[str], dtype: torch.dtype = torch.float32,
              attn_implementation: str = "eager") -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' logits on the converted directory, and the ids its AutoTokenizer gave."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.RobertaForMaskedLM.from_pretrained(directory, attn_implementation=attn_implementation)
    batch = tokenizer(sequences, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.to(dtype).eval()(**batch).logits, batch.input_ids


def load_raw(file: Path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(file, map_location="cpu", weights_only=True)


# --- real weights: sapiens' antibody heavy- and light-chain models ---

@needs_sapiens
@pytest.mark.parametrize("chain, sequences", [("vh", HEAVY), ("vl", LIGHT)])
def test_sapiens_logits_match_fairseq(tmp_path: Path, chain: str, sequences: list[str]):
    checkpoint, dict_file = SAPIENS_MODELS / f"checkpoint_{chain}.pt", SAPIENS_MODELS / "dict.txt"
    out = convert_fairseq_roberta(checkpoint, dict_file, tmp_path / chain)
    raw = load_raw(checkpoint)
    tokens = fairseq_tokens(sequences, dict_file)
    real = tokens.ne(1)
    with torch.no_grad():
        expected = {dtype: fairseq_logits(raw["model"], raw["args"], tokens, dtype) for dtype in (torch.float32, torch.float64)}
    # float64 on both sides leaves only the mapping to compare: it must be exact up to rounding.
    logits, input_ids = hf_logits(out, sequences, torch.float64)
    assert torch.equal(input_ids, tokens)  # AutoTokenizer gives fairseq's ids, padding included
    assert (logits - expected[torch.float64]).abs()[real].max() < 1e-10
    # float32, as a user runs it: within 1e-5 (eager attention does the oracle's arithmetic; SDPA rounds
    # differently, by up to ~3e-5 on these logits of magnitude ~6, as far from float64 as the oracle is).
    logits, _ = hf_logits(out, sequences)
    assert (logits - expected[torch.float32]).abs()[real].max() <= 1e-5
    sdpa, _ = hf_logits(out, sequences, attn_implementation="sdpa")
    assert (sdpa - expected[torch.float64]).abs()[real].max() <= 5e-5
    # Real weights, not a lucky shape match: the unmasked residues are read back.
    predicted = logits.argmax(-1)[real]
    assert (predicted == tokens[real]).float().mean() > 0.9


@needs_sapiens
def test_bertkit_loads_the_converted_model(tmp_path: Path):
    """bertkit's own tokenizer and RoBERTa read the directory: fairseq's ids and logits, padded batch included."""
    out = convert_fairseq_roberta(SAPIENS_MODELS / "checkpoint_vh.pt", SAPIENS_MODELS / "dict.txt", tmp_path / "vh")
    raw = load_raw(SAPIENS_MODELS / "checkpoint_vh.pt")
    tokens = fairseq_tokens(HEAVY, SAPIENS_MODELS / "dict.txt")
    batch = bertkit.Tokenizer.from_pretrained(out)(HEAVY)
    assert torch.equal(batch.input_ids, tokens) and torch.equal(batch.attention_mask, tokens.ne(1).long())
    real = tokens.ne(1)
    with torch.no_grad():
        expected = fairseq_logits(raw["model"], raw["args"], tokens, torch.float64)
        exact = bertkit.AutoModelForMaskedLM.from_pretrained(out, dtype=torch.float64).eval()
        assert (exact(batch.input_ids, attention_mask=batch.attention_mask).logits - expected).abs()[real].max() < 1e-10
        model = bertkit.AutoModelForMaskedLM.from_pretrained(out).eval()
        logits = model(batch.input_ids, attention_mask=batch.attention_mask).logits
    assert (logits.double() - expected).abs()[real].max() <= 5e-5  # float32 rounding, as transformers' SDPA


@needs_sapiens
def test_sapiens_vocabulary_and_config(tmp_path: Path):
    out = convert_fairseq_roberta(SAPIENS_MODELS / "checkpoint_vh.pt", SAPIENS_MODELS / "dict.txt", tmp_path / "vh")
    config = json.loads((out / "config.json").read_text())
    assert {k: config[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                   "intermediate_size", "max_position_embeddings", "hidden_act", "type_vocab_size",
                                   "pad_token_id", "bos_token_id", "eos_token_id", "layer_norm_eps")} == {
        "vocab_size": 25, "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 8,
        "intermediate_size": 256, "max_position_embeddings": 146, "hidden_act": "gelu", "type_vocab_size": 1,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "layer_norm_eps": 1e-5}
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_ids_to_tokens(list(range(25))) == [
        "<s>", "<pad>", "</s>", "<unk>", *AMINO_ACIDS, "<mask>"]
    assert tokenizer.model_max_length == 144
    from safetensors.torch import load_file

    weights = load_file(out / "model.safetensors")
    assert torch.equal(weights["roberta.embeddings.token_type_embeddings.weight"], torch.zeros(1, 128))
    assert "lm_head.decoder.weight" not in weights  # tied to the embedding, as fairseq trained it


@needs_sapiens
def test_sapiens_predicts_masked_residues(tmp_path: Path):
    """The converted heavy-chain model fills masked residues of trastuzumab and adalimumab VH."""
    out = convert_fairseq_roberta(SAPIENS_MODELS / "checkpoint_vh.pt", SAPIENS_MODELS / "dict.txt", tmp_path / "vh")
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.RobertaForMaskedLM.from_pretrained(out).eval()
    right = total = 0
    for sequence in HEAVY[:2]:
        ids = tokenizer(sequence, return_tensors="pt").input_ids
        positions = torch.arange(1, ids.shape[1] - 1, 7)  # every 7th residue, one at a time
        batch = ids.repeat(len(positions), 1)
        batch[torch.arange(len(positions)), positions] = tokenizer.mask_token_id
        with torch.no_grad():
            predicted = model(batch).logits[torch.arange(len(positions)), positions].argmax(-1)
        right += (predicted == ids[0, positions]).sum().item()
        total += len(positions)
    most_frequent = max(AMINO_ACIDS, key=lambda a: "".join(HEAVY[:2]).count(a))
    baseline = sum(HEAVY[i][p - 1] == most_frequent for i in range(2) for p in range(1, len(HEAVY[i]) + 1, 7))
    assert right / total > 0.7 and right > 3 * baseline


# --- synthetic checkpoints: fast variants and refusals ---

def synthetic_args(**overrides) -> argparse.Namespace:
    values = dict(arch="roberta_tiny", task="masked_lm", encoder_layers=2, encoder_embed_dim=16,
                  encoder_ffn_embed_dim=24, encoder_attention_heads=4, activation_fn="gelu", max_positions=20,
                  dropout=0.1, attention_dropout=0.1)
    return argparse.Namespace(**{**values, **overrides})


def synthetic_model(args: argparse.Namespace, vocab: int = 25, prefix: str = "encoder.", legacy: bool = False,
                    fused: bool = False, untied: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under fairseq RoBERTa's key names (legacy: fairseq < 0.10's `decoder.`/`emb_layer_norm`)."""
    g = torch.Generator().manual_seed(seed)
    h, ffn = args.encoder_embed_dim, args.encoder_ffn_embed_dim
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.5  # noqa: E731
    norm = lambda: (1 + rand(h) * 0.2, rand(h) * 0.2)  # noqa: E731
    enc = f"{prefix}sentence_encoder."
    model = {enc + "embed_tokens.weight": rand(vocab, h), enc + "embed_positions.weight": rand(args.max_positions + 2, h)}
    emb_norm = "emb_layer_norm" if legacy else "layernorm_embedding"
    model[enc + f"{emb_norm}.weight"], model[enc + f"{emb_norm}.bias"] = norm()
    for n in range(args.encoder_layers):
        layer = f"{enc}layers.{n}."
        if fused:
            model[layer + "self_attn.in_proj_weight"], model[layer + "self_attn.in_proj_bias"] = rand(3 * h, h), rand(3 * h)
        else:
            for proj in "qkv":
                model[layer + f"self_attn.{proj}_proj.weight"], model[layer + f"self_attn.{proj}_proj.bias"] = rand(h, h), rand(h)
        model[layer + "self_attn.out_proj.weight"], model[layer + "self_attn.out_proj.bias"] = rand(h, h), rand(h)
        model[layer + "fc1.weight"], model[layer + "fc1.bias"] = rand(ffn, h), rand(ffn)
        model[layer + "fc2.weight"], model[layer + "fc2.bias"] = rand(h, ffn), rand(h)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            model[layer + f"{ln}.weight"], model[layer + f"{ln}.bias"] = norm()
    if not legacy:
        model[enc + "version"] = torch.tensor([3.0])
    head = f"{prefix}lm_head."
    model[head + "dense.weight"], model[head + "dense.bias"] = rand(h, h), rand(h)
    model[head + "layer_norm.weight"], model[head + "layer_norm.bias"] = norm()
    model[head + "weight"] = rand(vocab, h) if untied else model[enc + "embed_tokens.weight"]
    model[head + "bias"] = rand(vocab)
    return model


def write_checkpoint(path: Path, model: dict, args: argparse.Namespace | None, cfg: dict | None = None) -> Path:
    torch.save({"args": args, "cfg": cfg, "model": model, "optimizer_history": [], "extra_state": {}}, path)
    return path


def write_dict(path: Path, symbols: str = AMINO_ACIDS) -> Path:
    path.write_text("".join(f"{s} {100 - i}\n" for i, s in enumerate(symbols)))
    return path


@pytest.fixture
def dict_file(tmp_path: Path) -> Path:
    return write_dict(tmp_path / "dict.txt")


def assert_parity(directory: Path, model: dict, args: argparse.Namespace, dict_file: Path) -> None:
    sequences = ["EVQLVESGGGL", "QVQ", "WYKD"]
    logits, input_ids = hf_logits(directory, sequences)
    tokens = fairseq_tokens(sequences, dict_file)
    assert torch.equal(input_ids, tokens)
    expected = fairseq_logits(model, args, tokens)
    torch.testing.assert_close(logits[tokens.ne(1)], expected[tokens.ne(1)], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["current", "legacy", "fused-qkv", "untied", "scaled-embedding", "fp16", "cfg"])
def test_synthetic_variants_match_fairseq(tmp_path: Path, dict_file: Path, variant: str):
    args = synthetic_args(**({"no_scale_embedding": False} if variant == "scaled-embedding" else {}))
    model = synthetic_model(args, prefix="decoder." if variant == "legacy" else "encoder.", legacy=variant == "legacy",
                            fused=variant == "fused-qkv", untied=variant == "untied")
    if variant == "fp16":
        model = {k: v.half() for k, v in model.items()}
    # fairseq >= 0.10.2 keeps its arguments as cfg["model"] (a dict once OmegaConf is flattened) and args=None.
    ckpt = (write_checkpoint(tmp_path / "ck.pt", model, None, cfg={"model": vars(args), "task": {}}) if variant == "cfg"
            else write_checkpoint(tmp_path / "ck.pt", model, args))
    out = convert_fairseq_roberta(ckpt, dict_file, tmp_path / "out")
    assert_parity(out, model, args, dict_file)
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is (variant not in ("untied", "scaled-embedding"))


def test_madeupword_padding_rows(tmp_path: Path):
    """fairseq pads a vocabulary to a multiple of 8 with madeupwordNNNN; those rows keep their ids."""
    args = synthetic_args()
    dict_file = write_dict(tmp_path / "dict.txt", AMINO_ACIDS[:18])  # 4 + 18 + <mask> = 23 -> 24 rows
    model = synthetic_model(args, vocab=24)
    out = convert_fairseq_roberta(write_checkpoint(tmp_path / "ck.pt", model, args), dict_file, tmp_path / "out")
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_ids_to_tokens([21, 22, 23]) == [AMINO_ACIDS[17], "<mask>", "madeupword0000"]
    assert tokenizer("Y").input_ids == [0, 3, 2]  # Y is not in this dictionary: <unk>


def test_tokenizer_layout(tmp_path: Path, dict_file: Path):
    args = synthetic_args()
    out = convert_fairseq_roberta(write_checkpoint(tmp_path / "ck.pt", synthetic_model(args), args), dict_file,
                                  tmp_path / "out")
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = {c: 4 + i for i, c in enumerate(AMINO_ACIDS)}
    assert tokenizer("EVQL").input_ids == [0, ids["E"], ids["V"], ids["Q"], ids["L"], 2]
    assert tokenizer("E V Q\tL").input_ids == tokenizer("EVQL").input_ids  # whitespace is dropped
    assert tokenizer("EV<mask>L").input_ids == [0, ids["E"], ids["V"], 24, ids["L"], 2]
    assert tokenizer("EV", "QL").input_ids == [0, ids["E"], ids["V"], 2, 2, ids["Q"], ids["L"], 2]
    assert tokenizer("EXV").input_ids == [0, ids["E"], 3, ids["V"], 2]  # X is not an amino-acid symbol: <unk>
    assert "token_type_ids" not in tokenizer("EV")
    assert tokenizer.decode(tokenizer("EVQL").input_ids, skip_special_tokens=True) == "EVQL"
    assert (tokenizer.mask_token, tokenizer.pad_token_id, tokenizer.model_max_length) == ("<mask>", 1, 20)


def test_word_vocabulary_splits_on_whitespace_only(tmp_path: Path):
    """A dictionary of multi-character symbols (e.g. BPE ids) gets fairseq's own whitespace split."""
    args = synthetic_args()
    words = [str(n) for n in range(20)]
    dict_file = tmp_path / "dict.txt"
    dict_file.write_text("".join(f"{w} 1\n" for w in words))
    out = convert_fairseq_roberta(write_checkpoint(tmp_path / "ck.pt", synthetic_model(args), args), dict_file,
                                  tmp_path / "out")
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer("12 3 19").input_ids == [0, 4 + 12, 4 + 3, 4 + 19, 2]


def test_dictionary_format(tmp_path: Path):
    file = tmp_path / "dict.txt"
    file.write_text("A 5\nB 3\nA 1 #fairseq:overwrite\nC D 2\n")
    assert read_fairseq_dictionary(file) == ["<s>", "<pad>", "</s>", "<unk>", "A", "B", "C D"]
    file.write_text("A 5\nB\n")
    with pytest.raises(CheckpointError, match=r"dict.txt, line 2: expected 'SYMBOL COUNT"):
        read_fairseq_dictionary(file)
    file.write_text("A 5\nA 3\n")
    with pytest.raises(CheckpointError, match=r"line 2: symbol 'A' repeats"):
        read_fairseq_dictionary(file)


def refused(tmp_path: Path, model: dict, args, dict_file: Path, match: str) -> CheckpointError:
    ckpt = write_checkpoint(tmp_path / "ck.pt", model, args)
    with pytest.raises(CheckpointError, match=match) as info:
        convert_fairseq_roberta(ckpt, dict_file, tmp_path / "out")
    assert str(ckpt) in str(info.value)  # the message names the file
    assert not (tmp_path / "out").exists()  # nothing written
    return info.value


def test_refuses_another_architecture(tmp_path: Path, dict_file: Path):
    """A translation Transformer: encoder.layers / decoder.layers, no sentence_encoder, no LM head."""
    g = torch.Generator().manual_seed(0)
    model = {f"{side}.layers.0.fc1.weight": torch.randn(8, 4, generator=g) for side in ("encoder", "decoder")}
    model["encoder.embed_tokens.weight"] = torch.randn(25, 4, generator=g)
    error = refused(tmp_path, model, synthetic_args(arch="transformer_iwslt_de_en"), dict_file,
                    r"not a fairseq RoBERTa \(arch 'transformer_iwslt_de_en'\)")
    assert "encoder.sentence_encoder.embed_tokens.weight" in str(error)


def test_refuses_pre_layer_norm(tmp_path: Path, dict_file: Path):
    args = synthetic_args(encoder_normalize_before=True, arch="roberta_prenorm")
    refused(tmp_path, synthetic_model(args), args, dict_file, r"pre-LN layers \(encoder_normalize_before=True\)")
    # The final LayerNorm of a pre-LN encoder gives it away even when the arguments do not say so.
    args = synthetic_args()
    model = synthetic_model(args)
    model["encoder.sentence_encoder.layer_norm.weight"] = torch.ones(16)
    refused(tmp_path, model, args, dict_file, "pre-LN layers")


@pytest.mark.parametrize("key", ["encoder.lm_head.dense.weight", "encoder.sentence_encoder.layers.1.fc2.bias",
                                 "encoder.sentence_encoder.layernorm_embedding.weight"])
def test_refuses_missing_weight(tmp_path: Path, dict_file: Path, key: str):
    args = synthetic_args()
    model = synthetic_model(args)
    del model[key]
    refused(tmp_path, model, args, dict_file, f"missing weight {key}")


@pytest.mark.parametrize("change, match", [
    ({"activation_fn": "relu"}, "activation_fn 'relu'"),
    ({"encoder_embed_dim": 32}, "encoder_embed_dim=32, the weights have 16"),
    ({"encoder_layers": 3}, "encoder_layers=3, the weights have 2"),
    ({"encoder_attention_heads": 5}, "encoder_attention_heads 5 does not divide the hidden size 16"),
    ({"max_positions": 30}, "embed_positions has 22 rows, expected max_positions 30 \\+ 2"),
])
def test_refuses_inconsistent_arguments(tmp_path: Path, dict_file: Path, change: dict, match: str):
    refused(tmp_path, synthetic_model(synthetic_args()), synthetic_args(**change), dict_file, match)


def test_refuses_unknown_weights_and_shapes(tmp_path: Path, dict_file: Path):
    args = synthetic_args()
    model = synthetic_model(args)
    model["encoder.sentence_encoder.layers.0.self_attn.compress_k.weight"] = torch.zeros(4, 4)  # e.g. Linformer
    refused(tmp_path, model, args, dict_file, "weights a RoBERTa masked LM does not have: "
            "sentence_encoder.layers.0.self_attn.compress_k.weight")
    model = synthetic_model(args)
    model["encoder.lm_head.dense.weight"] = torch.zeros(16, 8)
    refused(tmp_path, model, args, dict_file, r"encoder.lm_head.dense.weight has shape \(16, 8\), expected \(16, 16\)")


def test_refuses_a_dictionary_that_does_not_fit(tmp_path: Path):
    args = synthetic_args()
    dict_file = write_dict(tmp_path / "dict.txt", AMINO_ACIDS[:10])
    refused(tmp_path, synthetic_model(args), args, dict_file, r"embedding has 25 rows, but .*dict.txt gives 15 symbols")


def test_classification_heads_are_left_out(tmp_path: Path, dict_file: Path, caplog: pytest.LogCaptureFixture):
    args = synthetic_args()
    model = synthetic_model(args)
    model["classification_heads.mnli.dense.weight"] = torch.zeros(16, 16)
    model["classification_heads.mnli.out_proj.weight"] = torch.zeros(3, 16)
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        out = convert_fairseq_roberta(write_checkpoint(tmp_path / "ck.pt", model, args), dict_file, tmp_path / "out")
    assert "classification heads ['mnli'] are not converted" in caplog.text
    assert_parity(out, synthetic_model(args), args, dict_file)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_refuses_a_pickle_payload(tmp_path: Path, dict_file: Path):
    args = synthetic_args()
    marker = tmp_path / "payload-ran"
    model = synthetic_model(args)
    ckpt = tmp_path / "evil.pt"
    torch.save({"args": args, "model": model, "extra_state": {"hook": _Payload(marker)}}, ckpt)
    with pytest.raises(CheckpointError, match=r"evil.pt: refused to load.*weights_only=True.*system") as info:
        convert_fairseq_roberta(ckpt, dict_file, tmp_path / "out")
    assert "GLOBAL" in str(info.value) or "posix" in str(info.value)  # torch's own reason is shown
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_refuses_what_is_not_a_checkpoint(tmp_path: Path, dict_file: Path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable PyTorch checkpoint"):
        convert_fairseq_roberta(junk, dict_file, tmp_path / "out")
    bare = tmp_path / "bare.pt"
    torch.save({"weight": torch.zeros(2)}, bare)
    with pytest.raises(CheckpointError, match=r"bare.pt: not a fairseq checkpoint .*'model'"):
        convert_fairseq_roberta(bare, dict_file, tmp_path / "out")
    args_less = write_checkpoint(tmp_path / "noargs.pt", synthetic_model(synthetic_args()), None)
    with pytest.raises(CheckpointError, match="noargs.pt: no model arguments"):
        convert_fairseq_roberta(args_less, dict_file, tmp_path / "out")


def test_existing_output_is_not_clobbered(tmp_path: Path, dict_file: Path):
    args = synthetic_args()
    ckpt = write_checkpoint(tmp_path / "ck.pt", synthetic_model(args), args)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="out exists; pass --overwrite"):
        convert_fairseq_roberta(ckpt, dict_file, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    convert_fairseq_roberta(ckpt, dict_file, out, overwrite=True)  # replaced as a whole
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "special_tokens_map.json",
                                                     "tokenizer.json", "tokenizer_config.json"]
    empty = tmp_path / "empty"
    empty.mkdir()
    convert_fairseq_roberta(ckpt, dict_file, empty)  # an empty directory holds nothing to clobber
    assert (empty / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging directories left behind


def test_cli(tmp_path: Path, dict_file: Path, capsys: pytest.CaptureFixture):
    args = synthetic_args()
    model = synthetic_model(args)
    ckpt = write_checkpoint(tmp_path / "ck.pt", model, args)
    out = tmp_path / "out"
    assert main(["convert", "fairseq-roberta", str(ckpt), "--dict", str(dict_file), "--output", str(out)]) == 0
    assert "2 layers, hidden 16, 4 heads, vocabulary 25, up to 20 tokens" in capsys.readouterr().err
    assert_parity(out, model, args, dict_file)
    assert main(["convert", "fairseq-roberta", str(ckpt), "--dict", str(dict_file), "--output", str(out)]) == 2
    assert "bertkit convert: error:" in capsys.readouterr().err
    assert main(["convert", "fairseq-roberta", str(ckpt), "--dict", str(dict_file), "--output", str(out),
                 "--overwrite"]) == 0
    assert main(["convert", "fairseq-roberta", str(tmp_path / "missing.pt"), "--dict", str(dict_file),
                 "--output", str(tmp_path / "o2")]) == 2
    assert "missing.pt: no such checkpoint file" in capsys.readouterr().err
