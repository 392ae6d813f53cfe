"""`bertkit export`, INT8 and the torch backends for every family, not only BERT: each head of RoBERTa, DistilBERT
and ELECTRA against PyTorch in ONNX Runtime, the inputs each family's graph takes, RoBERTa's positions in the
graph, INT8 groups found in every family's modules, the backends of predict / evaluate / embed on a DistilBERT
and an ELECTRA directory, and compiled encoder layers.

Where nothing tokenises, a directory carries the WordPiece test vocabulary whatever its family (the export copies
it); the RoBERTa classifier that `predict` and `evaluate` run has a byte-level BPE tokenizer of its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import bertkit
from bertkit import Tokenizer, checkpoint
from bertkit.cli import main
from bertkit.export import CHECK_SHAPES, ExportOptions, export_onnx, load_torch_head, trace_to_onnx
from bertkit.infer import compile_encoder, embed
from bertkit.onnx_backend import HEADS, ExportError, load
from bertkit.quantize import Int8Settings, group_of, quantize_onnx, quantize_torch

from conftest import BPE_TEXT, WORDS  # noqa: E402  (tests/ is on sys.path)
from family_models import NON_BERT, build, family_heads, save  # noqa: E402
import test_classify  # noqa: E402

# Weights wide enough that the heads' outputs are of order one (at BERT's 0.02 a classifier's logits are ~1e-3,
# and any error looks small beside them).
WIDE = dict(initializer_range=0.2)
TEXTS = ["the film was great", "a bad , awful film", "the cat sat on the mat", "good", "not a big dog ran away"]


def inputs_of(family: str) -> list[str]:
    """What each family's graph takes: token types only where there are two or more (BERT, ELECTRA)."""
    return ["input_ids", "attention_mask", *(["token_type_ids"] if family in ("bert", "electra") else [])]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *(f"filler{i}" for i in range(100))]))
    return Tokenizer.from_vocab(vocab)


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- parity, every family and head

@pytest.mark.parametrize("family,head", [*family_heads(NON_BERT), ("xlm-roberta", "base")])
def test_every_head_of_every_family_matches_pytorch(family: str, head: str, tokenizer: Tokenizer,
                                                    tmp_path: Path) -> None:
    model_dir = save(family, head, tmp_path / "model", tokenizer, num_labels=3, **WIDE)
    config = checkpoint.load_config(model_dir)
    fp16 = head == "base"
    report = export_onnx(model_dir, tmp_path / "onnx", ExportOptions(fp16=fp16)).report  # head from architectures
    assert report["head"] == head and report["architecture"] == config.family.architecture(head)
    assert report["inputs"] == inputs_of(family)
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    assert [i.name for i in graph.graph.input] == inputs_of(family)
    if head == "base":  # pooler_output only where the family's encoder has a pooler
        assert report["outputs"] == ["last_hidden_state", *(["pooler_output"] if config.family.pooler else [])]
    for precision, limit in (("fp32", 1e-4), *((("fp16", 1e-2),) if fp16 else ())):
        figures = report["parity"][precision]["shapes"]
        assert [f["shape"] for f in figures] == [s.describe(HEADS[head]) for s in CHECK_SHAPES]
        assert all(f["max_abs_error"] <= limit * max(1.0, f["max_abs_value"]) for f in figures), figures
        assert all(f["max_abs_value"] > 0.05 for f in figures)  # outputs that a wrong graph would move

    # A shape of its own with nothing padded (PyTorch's mask-free path), token types as the tokenizer gives them:
    # none for a single text.
    model = load_torch_head(model_dir, HEADS[head])
    g = torch.Generator().manual_seed(3)
    shape = (2, 3, 13) if head == "multiple-choice" else (4, 13)
    ids = torch.randint(3, config.vocab_size, shape, generator=g)
    onnx_model = load(tmp_path / "onnx")
    with torch.no_grad():
        expected, got = model(ids, torch.ones_like(ids)), onnx_model(ids, torch.ones_like(ids))
    for name in onnx_model.output_names:
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), atol=1e-4, rtol=0)


def test_roberta_positions_are_counted_in_the_graph(tokenizer: Tokenizer, tmp_path: Path) -> None:
    """RoBERTa's positions are pad_token_id + 1, + 2, ... over each row's non-padding ids: the graph computes them
    from the ids for any batch and length, so a padded row (padding on the right or the left) gives its tokens the
    outputs the row alone gives."""
    model_dir = save("roberta", "token-classification", tmp_path / "model", tokenizer, **WIDE)
    export_onnx(model_dir, tmp_path / "onnx")
    model = bertkit.AutoModelForTokenClassification.from_pretrained(model_dir, unpad=False)
    onnx_model = load(tmp_path / "onnx")
    pad = model.config.pad_token_id
    g = torch.Generator().manual_seed(5)
    lengths = [23, 5, 17, 1]
    rows = [torch.randint(3, model.config.vocab_size, (n,), generator=g) for n in lengths]
    alone = [onnx_model(row[None], torch.ones(1, len(row), dtype=torch.long)).logits[0] for row in rows]
    for side in ("right", "left"):
        ids = torch.full((len(rows), max(lengths)), pad)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
        if side == "left":  # rolled so that each row's padding comes first
            ids = torch.stack([r.roll(int((r == pad).sum())) for r in ids])
        mask = ids.ne(pad).long()
        with torch.no_grad():
            expected = model(ids, mask).logits
        got = onnx_model(ids, mask).logits
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
        for i, row in enumerate(alone):
            torch.testing.assert_close(got[i][mask[i].bool()], row, atol=1e-4, rtol=0)


def test_graphs_without_token_types_take_zeros_and_refuse_others(tokenizer: Tokenizer, tmp_path: Path) -> None:
    """A RoBERTa graph takes input_ids and attention_mask; what a BERT-style caller passes (all-zero token types) is
    left out, anything else is an error. An ELECTRA graph fills in zeros when none are given."""
    for family in ("roberta", "electra"):
        save(family, "base", tmp_path / family, tokenizer, **WIDE)
        export_onnx(tmp_path / family, tmp_path / f"{family}-onnx")
    ids = torch.randint(3, tokenizer.vocab_size, (2, 7))
    mask = torch.ones_like(ids)
    roberta = load(tmp_path / "roberta-onnx")
    assert roberta.input_names == ["input_ids", "attention_mask"]
    torch.testing.assert_close(roberta(ids, mask, torch.zeros_like(ids)).last_hidden_state,
                               roberta(ids, mask).last_hidden_state, atol=0, rtol=0)
    with pytest.raises(ValueError, match="takes no token_type_ids \\(RoBERTa has one token type\\)"):
        roberta(ids, mask, torch.ones_like(ids))
    electra = load(tmp_path / "electra-onnx")
    torch.testing.assert_close(electra(ids, mask).last_hidden_state,
                               electra(ids, mask, torch.zeros_like(ids)).last_hidden_state, atol=0, rtol=0)


def test_a_head_the_family_lacks_is_refused(tokenizer: Tokenizer, tmp_path: Path, capsys) -> None:
    distilbert = save("distilbert", "base", tmp_path / "distilbert", tokenizer)
    code, _, err = run(capsys, "export", distilbert, "--output", tmp_path / "out", "--head", "pretraining")
    assert code == 2 and "a DistilBERT model, which has no pretraining head; its heads: base, masked-lm" in err
    bert = save("bert", "base", tmp_path / "bert", tokenizer)
    code, _, err = run(capsys, "export", bert, "--output", tmp_path / "out", "--head", "discriminator")
    assert code == 2 and "a BERT model, which has no discriminator head" in err and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- INT8 groups, every family

QUANTIZABLE_OPS = ("MatMul", "Gemm", "Gather")


def weight_nodes(graph: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The nodes dynamic quantisation rewrites: matrix products and lookups of a stored weight."""
    weights = {i.name for i in graph.graph.initializer}
    return [n for n in graph.graph.node if n.op_type in QUANTIZABLE_OPS and set(n.input) & weights]


def expected_groups(model: torch.nn.Module, head: str) -> set[str]:
    layers = {f"layer.{i}" for i in range(model.config.num_hidden_layers)}
    pooler = {"pooler"} if model.base_model.pooler is not None else set()
    return {"embeddings", *layers, *pooler, *({"classifier"} if head != "base" else set())}


@pytest.mark.parametrize("family,head", family_heads(("bert", *NON_BERT)))
def test_every_weight_belongs_to_a_group(family: str, head: str, tmp_path: Path) -> None:
    """Every quantizable node of the graph and every Linear of the PyTorch model falls in a --keep-fp32 group, by
    the same family-neutral names: a module a family adds (ELECTRA's embeddings_project, pre_classifier,
    discriminator_predictions) cannot slip through unkept."""
    model = build(family, head, num_labels=3, unpad=False)
    trace_to_onnx(model, HEADS[head], tmp_path / "model.onnx", 17)
    nodes = weight_nodes(onnx.load(str(tmp_path / "model.onnx")))
    groups = {n.name: group_of(n.name.removeprefix("/model/").replace("/", ".")) for n in nodes}
    assert None not in groups.values(), [n for n, g in groups.items() if g is None]
    assert set(groups.values()) == expected_groups(model, head)

    linear = {name: group_of(name + ".") for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    linear.pop("cls.predictions.decoder", None)  # read by its weight (tied); stays fp32 in PyTorch
    assert None not in linear.values(), linear
    tables = set() if family == "electra" else {"embeddings"}  # PyTorch quantizes Linear layers only
    assert set(linear.values()) == expected_groups(model, head) - tables


def quantized_nodes(path: Path) -> set[str]:
    """The INT8 products (MatMulInteger) and the dequantisation after each INT8 table lookup (a quantized Gather)."""
    return {n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("MatMulInteger", "DequantizeLinear")}


def test_int8_keep_fp32_groups_in_an_electra_classifier(tokenizer: Tokenizer, tmp_path: Path, capsys) -> None:
    """embeddings (with embeddings_project), the last layer and the classifier (pre_classifier too) stay fp32;
    layer.0 is quantized."""
    model_dir = save("electra", "sequence-classification", tmp_path / "model", tokenizer, **WIDE)
    out = tmp_path / "onnx"
    code, stdout, err = run(capsys, "export", model_dir, "--output", out, "--int8",
                            "--keep-fp32", "embeddings,layer.-1,classifier")
    assert code == 0, err
    int8 = json.loads((out / "export.json").read_text())["int8"]
    assert int8["keep_fp32"] == ["embeddings", "layer.1", "classifier"]
    assert "kept in fp32: embeddings, layer.1, classifier" in stdout
    quantized = quantized_nodes(out / "model_int8.onnx")
    for kept in ("/embeddings/", "/embeddings_project/", "/layer.1/", "/pre_classifier/", "/classifier/"):
        assert not [n for n in quantized if kept in n], kept
    assert [n for n in quantized if "/layer.0/" in n and n.endswith("MatMul_quant")]


@pytest.mark.parametrize("family", NON_BERT)
def test_int8_groups_of_each_family(family: str, tokenizer: Tokenizer, tmp_path: Path) -> None:
    """The groups a family's graph offers, a kept one left unquantized, and a group it lacks refused by name."""
    head = "discriminator" if family == "electra" else "masked-lm" if family == "roberta" else "question-answering"
    model_dir = save(family, head, tmp_path / "model", tokenizer, **WIDE)
    export_onnx(model_dir, tmp_path / "onnx")
    source, target = tmp_path / "onnx" / "model.onnx", tmp_path / "int8.onnx"
    assert quantize_onnx(source, target, Int8Settings(keep_fp32=("classifier", "embeddings")), 2) == \
        ["classifier", "embeddings"]
    head_module = {"electra": "/discriminator_predictions/", "roberta": "/predictions/", "distilbert": "/qa_outputs/"}
    quantized = quantized_nodes(target)
    assert not [n for n in quantized if head_module[family] in n or "/embeddings" in n]
    assert [n for n in quantized if "/layer.1/" in n]
    quantize_onnx(source, target, Int8Settings(), 2)  # nothing kept: the same modules are quantized
    quantized = quantized_nodes(target)
    assert [n for n in quantized if head_module[family] in n] and [n for n in quantized if "/embeddings/" in n]
    with pytest.raises(ExportError, match="has no such quantizable group \\(it has: embeddings, layer.0, layer.1, "
                                          "classifier\\)"):
        quantize_onnx(source, target, Int8Settings(keep_fp32=("pooler",)), 2)


@pytest.mark.parametrize("family,head", [("roberta", "masked-lm"), ("distilbert", "sequence-classification"),
                                         ("electra", "discriminator"), ("electra", "multiple-choice")])
def test_quantize_torch_in_every_family(family: str, head: str) -> None:
    model = build(family, head, **WIDE)
    kept = quantize_torch(model, Int8Settings(keep_fp32=("classifier", "layer.0")))
    head_linear = {"masked-lm": "cls.predictions.transform.dense", "sequence-classification": "pre_classifier",
                   "discriminator": "discriminator_predictions.dense", "multiple-choice": "pre_classifier"}[head]
    assert type(kept.get_submodule(head_linear)) is torch.nn.Linear
    assert type(kept.base_model.encoder.layer[0].intermediate.dense) is torch.nn.Linear
    assert type(kept.base_model.encoder.layer[1].intermediate.dense) is not torch.nn.Linear
    assert type(model.base_model.encoder.layer[1].intermediate.dense) is torch.nn.Linear  # the original is untouched
    if family == "electra":  # its embedding projection is a Linear, so PyTorch has an embeddings group too
        projected = quantize_torch(model, Int8Settings(keep_fp32=("embeddings",)))
        assert type(projected.base_model.embeddings_project) is torch.nn.Linear
        assert type(quantize_torch(model).base_model.embeddings_project) is not torch.nn.Linear
    else:
        with pytest.raises(ExportError, match="--keep-fp32 'embeddings': this model has no such quantizable group"):
            quantize_torch(model, Int8Settings(keep_fp32=("embeddings",)))
    g = torch.Generator().manual_seed(0)
    shape = (2, 3, 9) if head == "multiple-choice" else (4, 9)
    ids = torch.randint(3, model.config.vocab_size, shape, generator=g)
    with torch.no_grad():
        want, got = model(ids).logits, quantize_torch(model)(ids).logits
    assert got.shape == want.shape
    assert float((got - want).norm() / (want - want.mean()).norm()) < 0.2  # INT8 rounds, but stays a model


# --------------------------------------------------------------------------- backends of the commands

def with_task(model_dir: Path, settings: dict) -> Path:
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "bertkit": settings}))
    return model_dir


@pytest.fixture(scope="module")
def bpe_tokenizer(tmp_path_factory) -> Tokenizer:
    """RoBERTa's kind of tokenizer (byte-level BPE, <s> ... </s>, pad id 1, no token types), trained on the
    conftest paragraphs."""
    corpus = tmp_path_factory.mktemp("bpe") / "corpus.txt"
    corpus.write_text(BPE_TEXT * 4, encoding="utf-8")
    return Tokenizer.train([corpus], kind="bpe", vocab_size=300, min_frequency=1, show_progress=False)


def split_classifier(family: str, tokenizer: Tokenizer, directory: Path) -> Path:
    """A random classifier whose bias puts the median of TEXTS on the decision boundary, so that both labels
    occur, saved as `bertkit finetune classify` saves one."""
    model = build(family, "sequence-classification", vocab_size=tokenizer.vocab_size, id2label={0: "neg", 1: "pos"},
                  **WIDE)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(encoded.input_ids, encoded.attention_mask).logits
        model.classifier.bias[1] -= (logits[:, 1] - logits[:, 0]).median() + 1e-3
    model.save_pretrained(directory, tokenizer=tokenizer)
    return with_task(directory, {"task": "classify", "max_length": 32})


@pytest.mark.parametrize("family", ["distilbert", "roberta"])
def test_classifier_predicts_and_evaluates_alike_on_every_backend(family: str, tokenizer: Tokenizer,
                                                                  bpe_tokenizer: Tokenizer, tmp_path: Path,
                                                                  capsys) -> None:
    """A DistilBERT (WordPiece) and a RoBERTa (byte-level BPE) classifier directory, neither of whose tokenizers
    gives token types: `predict` and `evaluate` agree between PyTorch and its export."""
    model_dir = split_classifier(family, bpe_tokenizer if family == "roberta" else tokenizer, tmp_path / "model")
    out = tmp_path / "onnx"
    code, _, err = run(capsys, "export", model_dir, "--output", out, "--int8")
    assert code == 0, err
    assert json.loads((out / "export.json").read_text())["inputs"] == ["input_ids", "attention_mask"]
    results = {}
    for backend, directory in (("torch", model_dir), ("onnx", out), ("onnx-int8", out), ("torch-int8", model_dir)):
        code, stdout, err = run(capsys, "predict", directory, *TEXTS, "--backend", backend)
        assert code == 0, f"{backend}: {err}"
        results[backend] = [json.loads(line) for line in stdout.splitlines()]
    labels = [r["label"] for r in results["torch"]]
    assert set(labels) == {"neg", "pos"}  # both occur: the comparison means something
    assert [r["label"] for r in results["onnx"]] == labels
    np.testing.assert_allclose([r["score"] for r in results["onnx"]], [r["score"] for r in results["torch"]], atol=1e-5)
    for backend in ("onnx-int8", "torch-int8"):  # INT8 near the boundary may flip a label; it must still answer
        assert len(results[backend]) == len(TEXTS) and {r["label"] for r in results[backend]} <= {"neg", "pos"}

    dev = test_classify.write_csv(tmp_path / "dev.csv", test_classify.sentiment_rows(24, 1))
    metrics = {}
    for backend, directory in (("torch", model_dir), ("onnx", out)):
        code, stdout, err = run(capsys, "evaluate", directory, "--data", dev, "--backend", backend)
        assert code == 0, f"{backend}: {err}"
        metrics[backend] = json.loads(stdout)
    assert metrics["onnx"]["accuracy"] == metrics["torch"]["accuracy"]
    assert metrics["onnx"]["loss"] == pytest.approx(metrics["torch"]["loss"], abs=1e-5)


@pytest.mark.parametrize("family", ["distilbert", "electra"])
def test_embed_on_onnx(family: str, tokenizer: Tokenizer, tmp_path: Path, capsys) -> None:
    """`embed --backend onnx` gives PyTorch's embeddings (the bare encoder, no pooler in either family)."""
    model_dir = save(family, "base", tmp_path / "model", tokenizer, **WIDE)
    assert run(capsys, "export", model_dir, "--output", tmp_path / "onnx")[0] == 0
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    code, _, err = run(capsys, "embed", tmp_path / "onnx", "--input", texts, "--output", tmp_path / "onnx.npy",
                       "--backend", "onnx", "--quiet", "--batch-size", "2")
    assert code == 0, err
    expected = embed(bertkit.AutoModel.from_pretrained(model_dir), Tokenizer.from_pretrained(model_dir), TEXTS)
    np.testing.assert_allclose(np.load(tmp_path / "onnx.npy"), expected, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- torch.compile

@pytest.mark.slow
@pytest.mark.parametrize("family", NON_BERT)
def test_compiled_encoder_layers_give_the_same_outputs_in_every_family(family: str) -> None:
    model = build(family, "sequence-classification", **WIDE)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (6, 40), generator=g)
    lengths = torch.tensor([40, 3, 17, 40, 9, 1])
    mask = (torch.arange(40) < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, model.config.pad_token_id)
    batches = [(ids, mask), (ids[:2, :11], torch.ones_like(ids[:2, :11]))]  # unpadded (padding >= 64), mask-free
    with torch.no_grad():
        eager = [model(*batch).logits for batch in batches]
        torch._dynamo.reset()
        assert compile_encoder(model) is model
        compiled = [model(*batch).logits for batch in batches]
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
