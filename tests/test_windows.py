"""Sliding windows: coverage, overlap, the most-central rule, and long texts in classification."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from bertkit import BertForSequenceClassification, Tokenizer
from bertkit.readers import Record
from bertkit.tasks.classify import encode, predict, predict_logits
from bertkit.windows import centrality, most_central_window, window_spans


@pytest.mark.parametrize("length", [0, 1, 5, 9, 10, 11, 37, 100])
@pytest.mark.parametrize("size,stride", [(10, 0), (10, 3), (10, 9), (4, 1)])
def test_windows_cover_every_token_with_the_given_overlap(length: int, size: int, stride: int) -> None:
    spans = window_spans(length, size, stride)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(0 < end - start <= size for start, end in spans) or length == 0
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end - start == stride  # consecutive windows share exactly `stride` tokens
    assert len(spans) == 1 or all(end - start == size for start, end in spans[:-1])


def test_most_central_window_equals_brute_force() -> None:
    for length, size, stride in [(37, 10, 3), (100, 16, 8), (12, 5, 2), (5, 5, 2)]:
        spans = window_spans(length, size, stride)
        owners = most_central_window(spans, length)
        for position, owner in enumerate(owners):
            holders = [i for i, (s, e) in enumerate(spans) if s <= position < e]
            best = max(centrality(spans[i], position) for i in holders)
            assert owner == min(i for i in holders if centrality(spans[i], position) == best)
    assert most_central_window(window_spans(12, 5, 2), 12) == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]


def test_bad_window_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="stride 5 must be"):
        window_spans(20, 5, 5)
    with pytest.raises(ValueError, match="no room"):
        window_spans(20, 0, 0)


@pytest.fixture(params=["tiny_dir", "bpe_dir"])  # [CLS] window [SEP] with token types; <s> window </s> without
def classifier(request) -> tuple[BertForSequenceClassification, Tokenizer]:
    model_dir = request.getfixturevalue(request.param)
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(model_dir, id2label={0: "neg", 1: "pos"}).eval()
    return model, Tokenizer.from_pretrained(model_dir)


def test_long_texts_become_windows_whose_logits_are_averaged(classifier, caplog) -> None:
    model, tokenizer = classifier
    long_text = " ".join(["the cat sat on the mat", "a big dog ran away", "good film"] * 6)
    records = [Record("a good film", None, "pos", 1), Record(long_text, None, "neg", 2)]
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        features = encode(records, tokenizer, 16, {"neg": 0, "pos": 1}, "classification", "data.csv", stride=4)
    content = tokenizer.encode(long_text)[1:-1]
    spans = window_spans(len(content), 14, 4)
    assert f"1 of 2 texts were longer than 16 tokens and were read as {len(spans)} overlapping windows" in caplog.text
    windows = [f for f in features if f["example"] == 1]
    assert len(windows) > 2 and all(len(f["input_ids"]) <= 16 and f["labels"] == 0 for f in windows)
    assert [f["input_ids"][1:-1] for f in windows] == [content[s:e] for s, e in spans]
    assert all(f["input_ids"][0] == tokenizer.cls_token_id and f["input_ids"][-1] == tokenizer.sep_token_id
               for f in windows)
    assert all(f.get("token_type_ids") == ([0] * len(f["input_ids"]) if tokenizer.has_token_types else None)
               for f in features)

    logits = predict_logits(model, features, tokenizer.pad_token_id)
    assert logits.shape == (2, 2)
    with torch.no_grad():
        each = [model(torch.tensor([f["input_ids"]])).logits[0].numpy() for f in windows]
        short = model(torch.tensor([features[0]["input_ids"]])).logits[0].numpy()
    np.testing.assert_allclose(logits[1], np.mean(each, axis=0), atol=1e-6)
    np.testing.assert_allclose(logits[0], short, atol=1e-6)


def test_predict_reads_long_texts_whole(classifier) -> None:
    model, tokenizer = classifier
    model.config.extra["bertkit"] = {"task": "classify", "max_length": 16, "stride": 4}
    long_text = "the cat sat on the mat and a big dog ran away " * 20
    assert len(tokenizer.encode(long_text)) > model.config.max_position_embeddings  # no window fits it all
    results = predict(model, tokenizer, [long_text, "good film"])
    # the saved window settings are used: the long text's result is its 16-token windows' mean logits
    records = [Record(long_text, None, None, 1), Record("good film", None, None, 2)]
    logits = torch.from_numpy(predict_logits(model, encode(records, tokenizer, 16, None, "classification", "x", 4), 0))
    probs = logits.softmax(-1)
    assert [r["label"] for r in results] == [model.config.id2label[int(i)] for i in probs.argmax(-1)]
    assert [r["score"] for r in results] == pytest.approx(probs.max(-1).values.tolist(), abs=1e-6)
