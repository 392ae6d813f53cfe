"""bertkit.tasks.ner: label alignment, sliding windows, a tiny end-to-end fine-tune, metrics against seqeval."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bertkit import Tokenizer
from bertkit.heads import BertForTokenClassification
from bertkit.packaged import resolve
from bertkit.readers import DataError, read_conll
from bertkit.tasks import ner
from bertkit.train import TrainArgs, TrainResult
from bertkit.windows import window_spans

transformers = pytest.importorskip("transformers")
seqeval_metrics = pytest.importorskip("seqeval.metrics")

FIXTURES = Path(__file__).parent / "fixtures" / "ner"
ZERO_WIDTH = "\u200b"  # category Cf: the normalizer drops it, so a word made of it has no wordpiece


@pytest.fixture(scope="module")
def tokenizer(tiny_dir: Path) -> Tokenizer:
    return Tokenizer.from_pretrained(tiny_dir)


# --------------------------------------------------------------------------- tokenizer

def test_encode_words_matches_transformers() -> None:
    """Pre-split words: ids, word ids and in-word offsets equal BertTokenizerFast(is_split_into_words=True)."""
    model_dir = resolve("all-minilm-l6-v2").model_dir
    theirs = transformers.BertTokenizerFast.from_pretrained(str(model_dir))
    ours = Tokenizer.from_pretrained(model_dir)
    sentences = [["Hello", "WORLD", "U.S.", "naïve", "café-bar", "@user", "#tag"],
                 [ZERO_WIDTH, "x", "日本語", "emoji😀", "don't", "New York"],
                 ["Supercalifragilisticexpialidocious"], []]
    expected = theirs(sentences, is_split_into_words=True, return_offsets_mapping=True)
    got = ours.encode_words(sentences)
    assert got.input_ids == expected["input_ids"]
    assert got.word_ids == [expected.word_ids(i) for i in range(len(sentences))]
    assert got.offsets == [[tuple(o) for o in row] for row in expected["offset_mapping"]]
    assert got.word_ids[1][:3] == [None, 1, 2]  # the zero-width word has no piece
    with pytest.raises(TypeError):
        ours.encode_words(["not", "split"])


def test_roberta_words_windows_and_labels(bpe_dir: Path) -> None:
    """Byte-level BPE reads every word with its space (transformers' add_prefix_space=True, as run_ner does for
    RoBERTa); features are <s> pieces </s> without token types, labelled on each word's first piece."""
    tokenizer = Tokenizer.from_pretrained(bpe_dir)
    theirs = transformers.AutoTokenizer.from_pretrained(str(bpe_dir), add_prefix_space=True)
    sentences = [["The", "cat", "sat", "on", "naïve", "東京", "."], ["antidisestablishmentarianism", "ran"]]
    tags = [["O", "B-A", "O", "O", "B-B", "I-B", "O"], ["B-A", "O"]]
    label2id = {"O": 0, "B-A": 1, "B-B": 2, "I-B": 3}
    data = ner.encode_words(sentences, tokenizer, ner.NerSettings(max_length=64), "x", tags, label2id)
    for feature, sentence, sentence_tags in zip(data.features, sentences, tags):
        ref = theirs(sentence, is_split_into_words=True)
        assert feature["input_ids"] == ref["input_ids"] and set(feature) == {"input_ids", "labels"}
        word_ids = ref.word_ids()
        firsts = [w is not None and (i == 0 or word_ids[i - 1] != w) for i, w in enumerate(word_ids)]
        assert feature["labels"] == [label2id[sentence_tags[w]] if first else ner.NO_LABEL
                                     for w, first in zip(word_ids, firsts)]
    assert data.layout.prefix == ((tokenizer.cls_token_id, 0),) and data.layout.suffix == ((tokenizer.sep_token_id, 0),)


# --------------------------------------------------------------------------- label alignment

def test_align_labels(tokenizer: Tokenizer) -> None:
    words = ["the", "cats", ZERO_WIDTH, "catsss", "dog"]
    word_ids = tokenizer.encode_words([words]).word_ids[0][1:-1]  # without [CLS] and [SEP]
    assert word_ids == [0, 1, 1, 3, 3, 3, 3, 4]  # the | cat ##s | (nothing) | cat ##s ##s ##s | dog
    bio = ["O", "B-A", "O", "B-A", "I-A"]
    bio_ids = {"O": 0, "B-A": 1, "I-A": 2}
    assert ner.align_labels(word_ids, bio, bio_ids) == [0, 1, -100, 1, -100, -100, -100, 2]
    assert ner.align_labels(word_ids, bio, bio_ids, label_all_tokens=True) == [0, 1, 2, 1, 2, 2, 2, 2]
    # with no I-A among the tags, a B-A word's later pieces keep B-A (transformers' run_ner does the same)
    assert ner.align_labels(word_ids, ["O", "B-A", "O", "B-A", "O"], {"O": 0, "B-A": 1},
                            label_all_tokens=True) == [0, 1, 1, 1, 1, 1, 1, 0]


def test_iobes_file(tokenizer: Tokenizer) -> None:
    sentences = read_conll(FIXTURES / "iobes.conll")
    id2label = ner.build_tags(sentences)
    assert id2label == {0: "O", 1: "B-ANIMAL", 2: "B-THING", 3: "E-ANIMAL", 4: "E-THING", 5: "S-ANIMAL"}
    label2id = {t: i for i, t in id2label.items()}
    settings = ner.NerSettings(max_length=32, label_all_tokens=True)
    data = ner.encode_words([s.tokens for s in sentences], tokenizer, settings, "iobes", [s.tags for s in sentences],
                            label2id)
    # S- and E- words keep their tag on every piece; only B- becomes I- (absent here, so B- stays)
    assert data.pieces[0].labels == [0, 5, 5, 1, 1, 1, 1, 3]
    assert data.features[0]["labels"] == [-100, 0, 5, 5, 1, 1, 1, 1, 3, -100]
    settings.label_all_tokens = False
    data = ner.encode_words([s.tokens for s in sentences], tokenizer, settings, "iobes", [s.tags for s in sentences],
                            label2id)
    assert [p.labels for p in data.pieces] == [[0, 5, -100, 1, -100, -100, -100, 3], [2, 4]]


# --------------------------------------------------------------------------- windows

def test_reassemble_takes_each_token_from_its_most_central_window() -> None:
    spans = [(0, 6), (3, 9), (6, 10)]  # window_spans(10, 6, 3)
    assert spans == window_spans(10, 6, 3)
    # window k says 100·k + position, so the result shows which window each position was read from
    windows = [np.array([[100.0 * k + p] for p in range(start, end)]) for k, (start, end) in enumerate(spans)]
    owners = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]  # by hand: most context on the poorer side, first window on ties
    expected = np.array([[100.0 * k + p] for p, k in enumerate(owners)])
    np.testing.assert_array_equal(ner.reassemble(spans, windows), expected)


def token_local(model: BertForTokenClassification) -> BertForTokenClassification:
    """Make every token's logits depend on its id only: no attention values, no position embeddings."""
    with torch.no_grad():
        model.bert.embeddings.position_embeddings.weight.zero_()
        for layer in model.bert.encoder.layer:
            layer.attention.self.value.weight.zero_()
            layer.attention.self.value.bias.zero_()
    return model


@pytest.mark.parametrize("model_dir", ["tiny_dir", "bpe_dir"])  # [CLS] ... [SEP], and <s> ... </s> without types
def test_windowed_prediction_equals_single_pass(model_dir: str, request, caplog) -> None:
    model_dir = request.getfixturevalue(model_dir)
    tokenizer = Tokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = token_local(BertForTokenClassification.from_pretrained(model_dir, num_labels=5))
    rng = random.Random(0)
    vocab = ["the", "cat", "dog", "sat", "on", "mat", "cats", "film", "zebra"]
    sentences = [[rng.choice(vocab) for _ in range(rng.randint(1, 25))] for _ in range(12)]
    whole = ner.encode_words(sentences, tokenizer, ner.NerSettings(max_length=64), "whole")
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        windowed = ner.encode_words(sentences, tokenizer, ner.NerSettings(max_length=8, stride=2), "windowed")
    long = sum(len(p.ids) > 6 for p in windowed.pieces)
    assert long > 3 and f"windowed: {long} of 12 sentences were longer than 8 tokens" in caplog.text
    assert all(len(spans) == 1 for spans in whole.spans) and len(windowed.features) > len(whole.features)
    single = ner.sentence_logits(model, whole, tokenizer.pad_token_id)
    pieced = ner.sentence_logits(model, windowed, tokenizer.pad_token_id)
    for a, b, p in zip(single, pieced, whole.pieces):
        assert a.shape == b.shape == (len(p.ids), 5)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- end to end

FILLER = ["the", "sat", "on", "a", "ran", "away", "good", "bad", "not", "great"]
# Every word gives its tag away ("cat" and "film" only ever follow "big" and "small"); "dogs" and
# "mats" are two pieces (dog ##s), read from their first piece.
ENTITIES = [("ANIMAL", ["dog"]), ("ANIMAL", ["dogs"]), ("ANIMAL", ["big", "cat"]),
            ("THING", ["mat"]), ("THING", ["mats"]), ("THING", ["small", "film"])]


def write_conll(path: Path, n: int, seed: int) -> Path:
    """Sentences of filler words around one or two entities whose words give their type away."""
    rng = random.Random(seed)
    blocks = []
    for _ in range(n):
        rows = []
        for _ in range(rng.randint(1, 2)):
            rows += [(w, "O") for w in rng.choices(FILLER, k=rng.randint(0, 4))]
            type_, words = rng.choice(ENTITIES)
            rows += [(w, ("B-" if i == 0 else "I-") + type_) for i, w in enumerate(words)]
        rows += [(w, "O") for w in rng.choices(FILLER, k=rng.randint(0, 3))]
        blocks.append("".join(f"{w}\t{t}\n" for w, t in rows))
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tiny_dir: Path, tmp_path_factory) -> tuple[Path, Path, TrainResult]:
    root = tmp_path_factory.mktemp("ner")
    train, dev = write_conll(root / "train.conll", 120, 0), write_conll(root / "dev.conll", 60, 1)
    args = TrainArgs(output_dir=root / "out", epochs=4, batch_size=16, lr=5e-3, seed=0, progress=False)
    result = ner.finetune(tiny_dir, train, dev, args, max_length=12)  # 10 pieces a window: long sentences are windowed
    return root / "out", dev, result


def test_finetune_learns_and_transformers_loads_it(trained) -> None:
    out, _, result = trained
    assert result.best_metrics["f1"] >= 0.9
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert config["id2label"] == {"0": "O", "1": "B-ANIMAL", "2": "B-THING", "3": "I-ANIMAL", "4": "I-THING"}
    assert config["bertkit"] == {"task": "ner", "max_length": 12, "stride": None, "label_all_tokens": False,
                                 "token_column": 0, "tag_column": -1}
    theirs = transformers.BertForTokenClassification.from_pretrained(out).eval()
    ours = BertForTokenClassification.from_pretrained(out)
    ids = torch.tensor([[2, 5, 7, 6, 3], [2, 12, 10, 3, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask).logits, theirs(input_ids=ids, attention_mask=mask).logits,
                                   atol=1e-5, rtol=1e-5)


def test_evaluate_file_equals_seqeval(trained) -> None:
    out, dev, result = trained
    model, tokenizer = BertForTokenClassification.from_pretrained(out), Tokenizer.from_pretrained(out)
    metrics = ner.evaluate_file(model, tokenizer, dev)
    assert metrics == pytest.approx(result.best_metrics, abs=1e-6)  # the saved model is the best one
    # A perturbed head makes mistakes of every kind, so the comparison below means something.
    with torch.no_grad():
        model.classifier.weight.add_(torch.randn(model.classifier.weight.shape, generator=torch.Generator().manual_seed(1)))
    metrics = ner.evaluate_file(model, tokenizer, dev)
    gold = [s.tags for s in read_conll(dev)]
    predicted = ner.predict_words(model, tokenizer, [s.tokens for s in read_conll(dev)])
    assert 0.1 < metrics["f1"] < 0.9
    assert metrics["f1"] == pytest.approx(seqeval_metrics.f1_score(gold, predicted), abs=1e-12)
    assert metrics["precision"] == pytest.approx(seqeval_metrics.precision_score(gold, predicted), abs=1e-12)
    assert metrics["recall"] == pytest.approx(seqeval_metrics.recall_score(gold, predicted), abs=1e-12)
    assert metrics["accuracy"] == pytest.approx(seqeval_metrics.accuracy_score(gold, predicted), abs=1e-12)
    report = seqeval_metrics.classification_report(gold, predicted, output_dict=True, zero_division=0)
    per_type = {k: v for k, v in metrics.items() if k.startswith("f1_")}
    assert per_type == pytest.approx({f"f1_{t}": report[t]["f1-score"] for t in ("ANIMAL", "THING")}, abs=1e-12)
    assert metrics["loss"] > result.best_metrics["loss"] > 0


def test_predict_offsets_slice_the_text(trained) -> None:
    out, _, _ = trained
    model, tokenizer = BertForTokenClassification.from_pretrained(out), Tokenizer.from_pretrained(out)
    long = "the dog sat on a mat . " * 3  # 21 pieces: three windows of 10
    texts = ["The  big CAT sat on the mat.", "a Dög ran away", "good bad not", "", long]
    results = ner.predict(model, tokenizer, texts)
    found = [[(e["type"], e["text"]) for e in r["entities"]] for r in results]
    assert found == [[("ANIMAL", "big CAT"), ("THING", "mat")], [("ANIMAL", "Dög")], [], [],
                     [("ANIMAL", "dog"), ("THING", "mat")] * 3]
    for text, r in zip(texts, results):
        for e in r["entities"]:
            assert text[e["start"]:e["end"]] == e["text"] and 0 < e["score"] <= 1
    # score: the mean over the entity's words of the top tag probability on each word's first piece
    with torch.no_grad():  # [CLS] the big cat sat on the mat . [SEP]
        top = model(**tokenizer(texts[0], return_tensors="pt")).logits[0].softmax(-1).max(-1).values
    assert [e["score"] for e in results[0]["entities"]] == pytest.approx([float(top[2:4].mean()), float(top[7])],
                                                                         abs=1e-6)
    assert [e["start"] for e in results[4]["entities"]] == [4, 17, 27, 40, 50, 63]
    json.dumps(results)  # plain JSON values
    # a word without pieces is tagged O and keeps its place
    assert ner.predict_words(model, tokenizer, [["the", ZERO_WIDTH, "dog"], []]) == [["O", "O", "B-ANIMAL"], []]


def test_bad_input_raises_before_anything_is_written(tiny_dir: Path, tmp_path: Path) -> None:
    train = write_conll(tmp_path / "train.conll", 10, 0)
    out = tmp_path / "never"
    args = TrainArgs(output_dir=out, epochs=1, progress=False)
    with pytest.raises(DataError, match=r"malformed\.conll: line 6: too many columns"):
        ner.finetune(tiny_dir, FIXTURES / "malformed.conll", None, args, max_length=12)
    with pytest.raises(DataError, match=r"unknown_tag\.conll: line 6: tag 'B-FOOD' does not occur in the training"):
        ner.finetune(tiny_dir, train, FIXTURES / "unknown_tag.conll", args, max_length=12)
    with pytest.raises(ValueError, match="max_length=128 exceeds the model's max_position_embeddings=64"):
        ner.finetune(tiny_dir, train, None, args, max_length=128)
    with pytest.raises(ValueError, match="stride 10 must be"):
        ner.finetune(tiny_dir, train, None, args, max_length=12, stride=10)
    assert not out.exists()


def test_one_very_long_sentence_cannot_dominate_training(tiny_dir: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    train = write_conll(tmp_path / "train.conll", 20, 0)
    blocks = train.read_text(encoding="utf-8").split("\n\n")
    line = sum(block.count("\n") + 2 for block in blocks[:3]) + 1  # the 4th sentence starts here (after 3 blank lines)
    blocks.insert(3, "".join(f"{w}\t{'B-PER' if i % 50 == 0 else 'O'}\n" for i, w in enumerate(["the"] * 1000)).rstrip())
    train.write_text("\n\n".join(blocks), encoding="utf-8")
    seen: dict[str, list] = {}

    def fit(model, features, args, *rest, **kwargs):  # what training would be given
        seen["features"] = features
        return TrainResult({}, 0, 0.0, False)

    monkeypatch.setattr(ner, "fit", fit)
    args = lambda out: TrainArgs(output_dir=out, progress=False)  # noqa: E731
    the = Tokenizer.from_pretrained(tiny_dir).convert_tokens_to_ids("the")
    for cap, windows in ((16, 16), (0, 72)):  # 1,000 pieces in windows of 14 sharing none: 72 windows
        ner.finetune(tiny_dir, train, None, args(tmp_path / str(cap)), max_length=16, stride=0, max_windows=cap)
        long = [f for f in seen["features"] if set(f["input_ids"][1:-1]) == {the}]
        assert len(long) == windows
        assert sum(len(f["input_ids"]) - 2 for f in long) == (1000 if not cap else 15 * 14 + 1000 % 14)  # + the last
    assert (f"{train}: 1 sentence made more than 16 windows (the longest, on line {line}, made 72): training reads 16 "
            "windows spread evenly over each (--max-windows; 0 keeps every window)") in caplog.text
