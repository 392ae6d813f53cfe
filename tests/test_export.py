"""`bertkit export`: ONNX Runtime against PyTorch for every head, INT8 size and accuracy, the guard against a
collapsed quantisation, the onnx / torch-int8 backends of predict, evaluate and embed, and bad input."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import bertkit
from bertkit import BertConfig, BertForSequenceClassification, BertModel, Tokenizer
from bertkit.cli import main
from bertkit.tasks.registry import evaluate_metrics
from bertkit.export import CHECK_SHAPES, ExportOptions, export_onnx
from bertkit.onnx_backend import ExportError, load
from bertkit.quantize import Int8Settings, compare_outputs, quantize_onnx, quantize_torch
from bertkit.tasks.similarity import BiEncoder

from conftest import HEADS, WORDS, random_batch, tiny_config  # noqa: E402  (tests/ is on sys.path)
import test_classify  # noqa: E402
import test_multiple_choice  # noqa: E402
import test_ner  # noqa: E402
import test_qa  # noqa: E402
import test_similarity  # noqa: E402

TEXTS = ["the film was great", "a bad , awful film", "the cat sat on the mat", "good", "not a big dog ran away",
         "the small cat sat on a big mat and the dog ran away . not good"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory) -> Tokenizer:
    """The test words plus 1,000 fillers: a vocabulary big enough that the embedding table is a real share
    of the weights, as in BERT."""
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *(f"filler{i}" for i in range(1000))]))
    return Tokenizer.from_vocab(vocab)


def save_random(model_class: type, directory: Path, tokenizer: Tokenizer, **config) -> Path:
    torch.manual_seed(0)
    model_class(tiny_config(vocab_size=tokenizer.vocab_size, **config)).save_pretrained(directory, tokenizer=tokenizer)
    return directory


@pytest.fixture(scope="session")
def classifier(tmp_path_factory, tokenizer: Tokenizer) -> tuple[Path, Path]:
    """A sentiment classifier (hidden 128, 2 layers: weights dominate the file, as in BERT) fine-tuned on
    cue-word data until it is nearly always right, and its labelled dev file."""
    root = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=64)
    BertModel(config).save_pretrained(root / "base", tokenizer=tokenizer)
    train = test_classify.write_csv(root / "train.csv", test_classify.sentiment_rows(160, 0))
    dev = test_classify.write_csv(root / "dev.csv", test_classify.sentiment_rows(200, 1))
    argv = test_classify.finetune_args(root / "base", train, dev, root / "clf")
    argv[argv.index("--epochs") + 1] = "3"
    argv[argv.index("--lr") + 1] = "1e-3"
    assert main(argv) == 0
    return root / "clf", dev


@pytest.fixture(scope="session")
def classifier_export(tmp_path_factory, classifier: tuple[Path, Path]) -> tuple[Path, dict]:
    """The classifier exported with --int8 and --eval-data, and its export.json."""
    model_dir, dev = classifier
    out = tmp_path_factory.mktemp("exports") / "clf-onnx"
    assert main(["export", str(model_dir), "--format", "onnx", "--output", str(out), "--int8", "--eval-data", str(dev)]) == 0
    return out, json.loads((out / "export.json").read_text())


# --------------------------------------------------------------------------- parity, every head

@pytest.mark.parametrize("architecture", HEADS)
def test_every_head_matches_pytorch(architecture: str, tokenizer: Tokenizer, tmp_path: Path) -> None:
    model_dir = save_random(getattr(bertkit, architecture), tmp_path / "model", tokenizer)
    result = export_onnx(model_dir, tmp_path / "onnx", ExportOptions())
    report = result.report
    assert report["architecture"] == architecture and report["opset"] >= 17
    figures = report["parity"]["fp32"]["shapes"]
    assert len({f["shape"] for f in figures}) == 2 and all(f["max_abs_error"] <= 1e-4 for f in figures)

    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    expected_axes = ["batch", "choices", "sequence"] if architecture == "BertForMultipleChoice" else ["batch", "sequence"]
    for graph_input in graph.graph.input:
        assert [d.dim_param for d in graph_input.type.tensor_type.shape.dim] == expected_axes
    assert json.loads((tmp_path / "onnx" / "config.json").read_text())["architectures"] == [architecture]

    # A third shape, checked here rather than by the export: no padding at all, so PyTorch takes its mask-free path.
    model = getattr(bertkit, architecture).from_pretrained(model_dir)
    inputs = random_batch(model.config, batch=4, seq=13, seed=9, choices=3 if "MultipleChoice" in architecture else None)
    inputs = (inputs[0], torch.ones_like(inputs[1]), inputs[2])
    onnx_model = load(tmp_path / "onnx")
    with torch.no_grad():
        expected, got = model(*inputs), onnx_model(*inputs)
    assert onnx_model.output_names == report["outputs"] and report["outputs"]
    for name in onnx_model.output_names:
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), atol=1e-4, rtol=0)


def test_fp16_export(tokenizer: Tokenizer, tmp_path: Path, capsys) -> None:
    model_dir = save_random(BertModel, tmp_path / "model", tokenizer)
    code, out, err = run(capsys, "export", model_dir, "--output", tmp_path / "onnx", "--fp16")
    assert code == 0, err
    report = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert report["bytes"]["fp16"] < report["bytes"]["fp32"]
    for f in report["parity"]["fp16"]["shapes"]:
        assert 0 < f["max_abs_error"] <= 1e-2 * max(1.0, f["max_abs_value"])  # fp16 rounds, but stays close
    assert "fp16: model_fp16.onnx" in out and CHECK_SHAPES[0].describe(load(tmp_path / "onnx").head) in out


# --------------------------------------------------------------------------- INT8

def test_int8_size_and_accuracy(classifier: tuple[Path, Path], classifier_export: tuple[Path, dict], capsys) -> None:
    model_dir, dev = classifier
    out, report = classifier_export
    int8 = report["int8"]
    assert report["bytes"]["int8"] <= 0.30 * report["bytes"]["fp32"]
    assert int8["metric"] == "accuracy" and int8["fp32"] >= 95.0 and int8["drop"] <= 1.0 and int8["per_channel"]
    assert int8["fp32"] - int8["int8"] == pytest.approx(int8["drop"])
    assert int8["outputs"]["logits"]["relative_error"] < 0.1

    # the figures are the ones `evaluate` gives on each backend
    accuracy = {}
    for backend, directory in (("torch", model_dir), ("onnx", out), ("onnx-int8", out), ("torch-int8", model_dir)):
        code, stdout, err = run(capsys, "evaluate", directory, "--data", dev, "--backend", backend)
        assert code == 0, err
        accuracy[backend] = 100 * json.loads(stdout)["accuracy"]
    assert accuracy["onnx"] == pytest.approx(accuracy["torch"]) == pytest.approx(int8["fp32"])
    assert accuracy["onnx-int8"] == pytest.approx(int8["int8"])
    assert accuracy["torch"] - accuracy["torch-int8"] <= 1.0


def broken_copy(model_dir: Path, target: Path) -> Path:
    """The classifier with one outlier in the embedding row of a token the data never uses: fp32 is unaffected,
    but per-tensor INT8 takes its scale from the outlier and rounds every other entry of the table to zero."""
    model = BertForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[-1, 0] = 1e4
    model.save_pretrained(target, tokenizer=Tokenizer.from_pretrained(model_dir))
    return target


def test_collapse_guard_trips_and_names_the_layers_to_keep(classifier: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    model_dir, dev = classifier
    broken = broken_copy(model_dir, tmp_path / "broken")
    out = tmp_path / "onnx"
    code, _, err = run(capsys, "export", broken, "--output", out, "--int8")
    assert code == 2 and "INT8 check failed, nothing was written" in err and "logits" in err
    assert "suggestion (verified" in err and "--keep-fp32 embeddings" in err
    assert not out.exists() and not list(tmp_path.glob(".onnx*"))  # no staging directory left either

    code, _, err = run(capsys, "export", broken, "--output", out, "--int8", "--eval-data", dev)
    assert code == 2 and "accuracy dropped" in err and "--keep-fp32 embeddings" in err and not out.exists()

    code, _, err = run(capsys, "export", broken, "--output", out, "--int8", "--eval-data", dev, "--keep-fp32", "embeddings")
    assert code == 0, err
    int8 = json.loads((out / "export.json").read_text())["int8"]
    assert int8["keep_fp32"] == ["embeddings"] and int8["drop"] <= 1.0


def test_compare_outputs_flags_constant_and_unrelated_outputs() -> None:
    rng = np.random.default_rng(0)
    reference = {"logits": rng.normal(size=(50, 2))}
    good = compare_outputs(reference, {"logits": reference["logits"] + 0.01 * rng.normal(size=(50, 2))})[0]
    assert good.problem is None and good.relative_error < 0.05 and 0.9 < good.spread_ratio < 1.1
    constant = compare_outputs(reference, {"logits": np.tile([[0.3, -0.2]], (50, 1)) + 1e-4 * rng.normal(size=(50, 2))})[0]
    assert "collapsed to near-constant" in constant.problem
    unrelated = compare_outputs(reference, {"logits": rng.normal(size=(50, 2))})[0]
    assert "no closer to fp32's than a constant" in unrelated.problem


def test_keep_fp32_leaves_those_layers_unquantized(classifier: tuple[Path, Path], classifier_export: tuple[Path, dict],
                                                   tmp_path: Path) -> None:
    out, _ = classifier_export
    target = tmp_path / "kept.onnx"
    quantize_onnx(out / "model.onnx", target, Int8Settings(keep_fp32=("pooler", "classifier", "layer.-1")), 2)
    quantized = {n.name for n in onnx.load(str(target)).graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeLinear")}
    for kept in ("/pooler/dense/", "/classifier/", "/layer.1/"):
        assert not [n for n in quantized if kept in n and "QuantizeLinear" not in n], kept
    assert [n for n in quantized if "/layer.0/" in n and n.endswith("MatMul_quant")]
    with pytest.raises(ExportError, match="no such quantizable group"):
        quantize_onnx(out / "model.onnx", target, Int8Settings(keep_fp32=("layer.2",)), 2)

    model = BertForSequenceClassification.from_pretrained(classifier[0])
    q = quantize_torch(model, Int8Settings(keep_fp32=("classifier", "layer.0")))
    assert type(q.classifier) is torch.nn.Linear and type(q.bert.encoder.layer[0].intermediate.dense) is torch.nn.Linear
    assert type(q.bert.encoder.layer[1].intermediate.dense) is not torch.nn.Linear
    assert type(model.bert.encoder.layer[1].intermediate.dense) is torch.nn.Linear  # the original is left alone


# --------------------------------------------------------------------------- backends

def test_predict_backends_agree(classifier: tuple[Path, Path], classifier_export: tuple[Path, dict], capsys) -> None:
    model_dir, _ = classifier
    out, _ = classifier_export
    results = {}
    for backend, directory in (("torch", model_dir), ("onnx", out), ("onnx-int8", out), ("torch-int8", model_dir)):
        code, stdout, err = run(capsys, "predict", directory, *TEXTS, "--backend", backend)
        assert code == 0, err
        results[backend] = [json.loads(line) for line in stdout.splitlines()]
    labels = [r["label"] for r in results["torch"]]
    assert labels[:2] == ["pos", "neg"]
    for backend, rows in results.items():
        assert [r["label"] for r in rows] == labels, backend
    assert max(abs(a["score"] - b["score"]) for a, b in zip(results["torch"], results["onnx"])) <= 1e-4
    code, stdout, err = run(capsys, "predict", model_dir, *TEXTS, "--precision", "bf16")
    assert code == 0, err
    bf16 = [json.loads(line) for line in stdout.splitlines()]
    assert [r["label"] for r in bf16] == labels
    assert max(abs(a["score"] - b["score"]) for a, b in zip(results["torch"], bf16)) <= 2e-2


def test_embed_backends_agree(tokenizer: Tokenizer, tmp_path: Path, capsys) -> None:
    model_dir = save_random(BertModel, tmp_path / "model", tokenizer)
    assert run(capsys, "export", model_dir, "--output", tmp_path / "onnx", "--int8")[0] == 0
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    vectors = {}
    for backend, directory in (("torch", model_dir), ("torch-compile", model_dir), ("onnx", tmp_path / "onnx"),
                               ("onnx-int8", tmp_path / "onnx")):
        target = tmp_path / f"{backend}.npy"
        code, _, err = run(capsys, "embed", directory, "--input", texts, "--output", target, "--backend", backend,
                           "--quiet", "--batch-size", "4")
        assert code == 0, err
        vectors[backend] = np.load(target)
    np.testing.assert_allclose(vectors["torch-compile"], vectors["torch"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(vectors["onnx"], vectors["torch"], atol=1e-4, rtol=0)
    cosine = (vectors["onnx-int8"] * vectors["torch"]).sum(1) / np.linalg.norm(vectors["onnx-int8"], axis=1) \
        / np.linalg.norm(vectors["torch"], axis=1)
    assert cosine.min() > 0.99 and not np.allclose(vectors["onnx-int8"], vectors["torch"], atol=1e-4)


def with_task(model_dir: Path, settings: dict) -> Path:
    """Record the task (and its settings) in config.json, as `bertkit finetune` does."""
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "bertkit": settings}))
    return model_dir


def task_model_and_data(task: str, tokenizer: Tokenizer, root: Path) -> tuple[Path, Path]:
    """A random model for `task` (as if fine-tuned) and a labelled file of the task's format."""
    if task == "ner":
        tags = {0: "O", 1: "B-ANIMAL", 2: "I-ANIMAL", 3: "B-THING", 4: "I-THING"}
        model = save_random(bertkit.BertForTokenClassification, root / "model", tokenizer, id2label=tags)
        return with_task(model, {"task": "ner", "max_length": 32}), test_ner.write_conll(root / "dev.conll", 12, 1)
    if task == "qa":
        model = save_random(bertkit.BertForQuestionAnswering, root / "model", tokenizer)
        settings = {"task": "qa", "max_length": 32, "doc_stride": 8, "max_query_length": 8, "version_2": True}
        return with_task(model, settings), test_qa.write_json(root / "dev.json", test_qa.synthetic_squad(12, 1))
    if task == "multiple-choice":
        model = save_random(bertkit.BertForMultipleChoice, root / "model", tokenizer)
        data = test_multiple_choice.write_swag(root / "dev.csv", test_multiple_choice.swag_rows(8, 1))
        return with_task(model, {"task": "multiple-choice", "max_length": 32}), data
    torch.manual_seed(0)
    BiEncoder(tiny_config(vocab_size=tokenizer.vocab_size)).save_pretrained(root / "model", tokenizer=tokenizer)
    return root / "model", test_similarity.write_jsonl(root / "dev.jsonl", test_similarity.pairs(16, 1, scored=True))


@pytest.mark.parametrize("task", ["ner", "qa", "similarity", "multiple-choice"])
def test_every_task_evaluates_alike_on_onnx(task: str, tokenizer: Tokenizer, tmp_path: Path, capsys) -> None:
    """classify is checked above; each of these reads the model differently (token logits and windows, spans and
    the loss the model computes, pooled embeddings, choices)."""
    model_dir, data = task_model_and_data(task, tokenizer, tmp_path)
    code, _, err = run(capsys, "export", model_dir, "--output", tmp_path / "onnx")
    assert code == 0, err
    metrics = {}
    for backend, directory in (("torch", model_dir), ("onnx", tmp_path / "onnx")):
        code, stdout, err = run(capsys, "evaluate", directory, "--data", data, "--backend", backend)
        assert code == 0, err
        metrics[backend] = json.loads(stdout)
    assert metrics["onnx"]["task"] == task and len(metrics["onnx"]) > 3
    for name, value in metrics["torch"].items():
        if name != "loss" or task != "qa":
            assert metrics["onnx"][name] == (pytest.approx(value, abs=1e-4) if isinstance(value, float) else value), name
    if task == "qa":
        # The loss's softmax runs over padding positions too, whose logits the unpadded encoder leaves at the bias:
        # the graph computes them as the padded encoder does, so its loss is the padded one's.
        padded = bertkit.BertForQuestionAnswering.from_pretrained(model_dir, unpad=False)
        expected = evaluate_metrics("qa", padded, Tokenizer.from_pretrained(model_dir), data)
        assert metrics["onnx"]["loss"] == pytest.approx(expected["loss"], abs=1e-4)


def test_similarity_predict_on_onnx(tokenizer: Tokenizer, tmp_path: Path, capsys) -> None:
    model_dir, _ = task_model_and_data("similarity", tokenizer, tmp_path)
    assert run(capsys, "export", model_dir, "--output", tmp_path / "onnx")[0] == 0
    pairs = ["a good cat", "a great dog", "the film", "an awful film . not good"]
    scores = {}
    for backend, directory in (("torch", model_dir), ("onnx", tmp_path / "onnx")):
        code, stdout, err = run(capsys, "predict", directory, *pairs, "--backend", backend)
        assert code == 0, err
        scores[backend] = [json.loads(line)["score"] for line in stdout.splitlines()]
    assert len(scores["onnx"]) == 2
    np.testing.assert_allclose(scores["onnx"], scores["torch"], atol=1e-4)


# --------------------------------------------------------------------------- bad input

def test_bad_input(tokenizer: Tokenizer, classifier: tuple[Path, Path], classifier_export: tuple[Path, dict],
                   tmp_path: Path, capsys, monkeypatch) -> None:
    model_dir = save_random(BertModel, tmp_path / "model", tokenizer)
    out = tmp_path / "onnx"

    def fails(*argv: str) -> str:
        code, _, err = run(capsys, *argv)
        assert code == 2 and not out.exists(), err
        return err

    assert "--head 'seq2seq' is not supported" in fails("export", model_dir, "--output", out, "--head", "seq2seq")
    foreign = tmp_path / "foreign"
    shutil.copytree(model_dir, foreign)
    config = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**config, "architectures": ["BertLMHeadModel"]}))
    err = fails("export", foreign, "--output", out)
    assert "config.json: architectures 'BertLMHeadModel' cannot be exported" in err and "--head" in err
    assert "is the model directory itself" in fails("export", model_dir, "--output", model_dir, "--overwrite")
    assert (model_dir / "model.safetensors").is_file()
    assert "opset 13 is not supported" in fails("export", model_dir, "--output", out, "--opset", "13")
    assert "opset 99 is not supported" in fails("export", model_dir, "--output", out, "--opset", "99")
    assert "add --int8" in fails("export", model_dir, "--output", out, "--per-channel")
    assert "add --int8" in fails("export", model_dir, "--output", out, "--eval-data", "dev.csv")
    assert "missing.csv: no such evaluation file" in fails("export", model_dir, "--output", out, "--int8", "--eval-data",
                                                            tmp_path / "missing.csv")
    assert "no trained weights for classifier" in fails("export", model_dir, "--output", out, "--head",
                                                        "sequence-classification")

    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code, _, err = run(capsys, "export", model_dir, "--output", out)
    assert code == 2 and "--overwrite" in err and (out / "mine.txt").read_text() == "keep"
    assert run(capsys, "export", model_dir, "--output", out, "--overwrite")[0] == 0
    assert not (out / "mine.txt").exists() and (out / "model.onnx").is_file()
    shutil.rmtree(out)

    assert "no export.json" in fails("predict", classifier[0], "text", "--backend", "onnx")
    clf_export, _ = classifier_export
    (tmp_path / "x.txt").write_text("good film\n")
    assert "--head base" in fails("embed", clf_export, "--input", tmp_path / "x.txt", "--output", tmp_path / "x.npy",
                                  "--backend", "onnx")
    assert "no fp16 model" in fails("predict", clf_export, "good film", "--backend", "onnx-fp16")

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    assert 'pip install "bertkit[onnx]"' in fails("export", model_dir, "--output", out)
    assert 'pip install "bertkit[onnx]"' in fails("predict", clf_export, "good film", "--backend", "onnx")
