"""Extractive QA (`bertkit.tasks.qa`): windows, targets, span post-processing, EM/F1, fine-tuning.

Oracles: transformers' tokenizer for the windows (input ids, token types and offsets), the
target rule of transformers' run_qa example for start/end positions, hand-built logits with
exact expected character spans for post-processing, and `squad_metrics` for EM/F1.

There is no real SQuAD data offline beyond the 5 SQuAD v1.1 questions in
fixtures/data/allennlp_squad.json; fixtures/qa/offsets_v2.json is hand-written (accents, CJK,
runs of spaces, impossible questions) and fixtures/qa/vocab.txt is a 300-token WordPiece
vocabulary trained on the two files' text (many words split, so offsets matter).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bertkit import BertForQuestionAnswering, Tokenizer
from bertkit.batching import collate
from bertkit.metrics import squad_metrics
from bertkit.readers import DataError, QAExample, read_squad
from bertkit.tasks import qa
from bertkit.tasks.qa import QASettings, answer_token_span, encode, postprocess
from bertkit.train import TrainArgs
from conftest import tiny_config

transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent / "fixtures"
VOCAB = FIXTURES / "qa" / "vocab.txt"
OFFSETS_V2 = FIXTURES / "qa" / "offsets_v2.json"
ALLENNLP = FIXTURES / "data" / "allennlp_squad.json"

# (max_length, doc_stride, max_query_length): many windows and cut questions; no overlap; one window each.
WINDOWINGS = [(48, 8, 16), (64, 0, 30), (384, 128, 64)]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_vocab(VOCAB)


@pytest.fixture(scope="module")
def examples() -> list[QAExample]:
    return [*read_squad(ALLENNLP), *read_squad(OFFSETS_V2)]


def windows_of(features: list[dict], example: int) -> list[dict]:
    return [f for f in features if f["example"] == example]


# --------------------------------------------------------------------------- features

def transformers_windows(hf, tokenizer: Tokenizer, example: QAExample, settings: QASettings) -> tuple[dict, bool]:
    """transformers' windows of (question, context), and whether the question was cut. transformers never cuts
    the question, so it gets the question text up to our last kept token."""
    offsets = tokenizer(example.question, return_tensors=None, padding=False, return_offsets=True).offsets[0][1:-1]
    cut = len(offsets) > settings.max_query_length
    question = example.question[:offsets[settings.max_query_length - 1][1]] if cut else example.question
    return hf(question, example.context, truncation="only_second", max_length=settings.max_length,
              stride=settings.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True), cut


@pytest.mark.parametrize("max_length,doc_stride,max_query_length", WINDOWINGS)
def test_windows_match_transformers(tokenizer, examples, max_length, doc_stride, max_query_length) -> None:
    settings = QASettings(max_length, doc_stride, max_query_length)
    features = encode(examples, tokenizer, settings)
    hf = transformers.BertTokenizerFast(vocab=str(VOCAB))
    cut = 0
    for i, example in enumerate(examples):
        theirs, was_cut = transformers_windows(hf, tokenizer, example, settings)
        cut += was_cut
        ours = windows_of(features, i)
        assert [f["input_ids"] for f in ours] == theirs["input_ids"], example.id
        assert [f["token_type_ids"] for f in ours] == theirs["token_type_ids"], example.id
        for feature, offsets, types in zip(ours, theirs["offset_mapping"], theirs["token_type_ids"]):
            context_offsets = [tuple(o) for o, t in zip(offsets, types) if t == 1][:-1]  # without the last [SEP]
            assert feature["offsets"] == context_offsets
            assert types.index(1) == feature["context_start"]
    if max_length == 48:  # the cases this parametrisation exists for did occur
        assert cut == 3 and len(features) > 4 * len(examples)


def run_qa_targets(example: QAExample, encoding) -> list[tuple[int, int]]:
    """Start/end positions by transformers' examples/pytorch/question-answering/run_qa.py
    (prepare_train_features), on its own windows and offsets; [CLS] is index 0."""
    targets = []
    for w, offsets in enumerate(encoding["offset_mapping"]):
        if not example.answers:
            targets.append((0, 0))
            continue
        text, start_char = example.answers[0]
        end_char = start_char + len(text)
        sequence_ids = encoding.sequence_ids(w)
        token_start = 0
        while sequence_ids[token_start] != 1:
            token_start += 1
        token_end = len(encoding["input_ids"][w]) - 1
        while sequence_ids[token_end] != 1:
            token_end -= 1
        if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
            targets.append((0, 0))
            continue
        while token_start < len(offsets) and offsets[token_start][0] <= start_char:
            token_start += 1
        while offsets[token_end][1] >= end_char:
            token_end -= 1
        targets.append((token_start - 1, token_end + 1))
    return targets


@pytest.mark.parametrize("max_length,doc_stride,max_query_length", WINDOWINGS)
def test_targets_match_run_qa(tokenizer, examples, max_length, doc_stride, max_query_length) -> None:
    settings = QASettings(max_length, doc_stride, max_query_length)
    features = encode(examples, tokenizer, settings)
    hf = transformers.BertTokenizerFast(vocab=str(VOCAB))
    answered = set()
    for i, example in enumerate(examples):
        ours = windows_of(features, i)
        targets = [(f["start_positions"], f["end_positions"]) for f in ours]
        assert targets == run_qa_targets(example, transformers_windows(hf, tokenizer, example, settings)[0]), example.id
        for feature, (start, end) in zip(ours, targets):
            if (start, end) == (0, 0):
                continue
            answered.add(i)
            first, (text, char_start) = feature["context_start"], example.answers[0]
            span = (feature["offsets"][start - first][0], feature["offsets"][end - first][1])
            assert span == (char_start, char_start + len(text)), example.id  # fixture answers are whole tokens
    assert len(answered) >= 9  # of 11 answerable: the rest straddle a seam (doc_stride 0) or fit no window


def test_roberta_layout_windows_and_targets_match_transformers(bpe_dir: Path, examples) -> None:
    """<s> question </s></s> window </s>, no token types: the windows and run_qa's targets of transformers'
    RobertaTokenizer on the same directory."""
    ours = Tokenizer.from_pretrained(bpe_dir)
    hf = transformers.AutoTokenizer.from_pretrained(str(bpe_dir))
    settings = QASettings(max_length=160, doc_stride=16, max_query_length=80)
    features = encode(examples, ours, settings)
    windowed = 0
    for i, example in enumerate(examples):
        theirs, was_cut = transformers_windows(hf, ours, example, settings)
        assert not was_cut
        mine = windows_of(features, i)
        windowed += len(mine) > 1
        assert [f["input_ids"] for f in mine] == theirs["input_ids"], example.id
        assert all("token_type_ids" not in f for f in mine) and "token_type_ids" not in theirs
        for w, feature in enumerate(mine):
            sequence_ids = theirs.sequence_ids(w)
            start = feature["context_start"]
            assert feature["input_ids"][0] == ours.cls_token_id and feature["input_ids"][start - 2:start] == [2, 2]
            assert sequence_ids.index(1) == feature["context_start"]
            assert feature["offsets"] == [tuple(o) for o, s in zip(theirs["offset_mapping"][w], sequence_ids) if s == 1]
        targets = [(f["start_positions"], f["end_positions"]) for f in mine]
        for feature, (start, end) in zip(mine, targets):
            if (start, end) != (0, 0):  # the answer's whole characters, even where one is several byte tokens
                assert ours.decode(feature["input_ids"][start:end + 1]).strip() == example.answers[0][0]
        # run_qa's rule takes the last byte token of a CJK first character (and the first of a last one).
        if not example.answers or example.answers[0][0].isascii():
            assert targets == run_qa_targets(example, theirs), example.id
    assert windowed > 3
    assert "token_type_ids" not in collate(features[:4], ours.pad_token_id)


def test_targets_by_hand(tokenizer) -> None:
    context = "The  café in Zürich opened in 1855 ."
    assert tokenizer.tokenize(context) == ["the", "cafe", "in", "zur", "##ich", "o", "##p", "##en", "##ed", "in",
                                           "185", "##5", "."]
    # "where?" is 2 tokens -> windows of 14 - 2 - 3 = 9 context tokens sharing 2: [0, 9) and [7, 13);
    # context token k sits at 4 + k - window start.
    settings = QASettings(max_length=14, doc_stride=2, max_query_length=4)

    def targets(answer: str, char_start: int | None = None) -> list[tuple[int, int]]:
        answers = [] if not answer else [(answer, context.index(answer) if char_start is None else char_start)]
        features = encode([QAExample("x", "where?", context, answers, not answers)], tokenizer, settings)
        assert [f["window"] for f in features] == [(0, 9), (7, 13)]
        return [(f["start_positions"], f["end_positions"]) for f in features]

    assert targets("Zürich") == [(4 + 3, 4 + 4), (0, 0)]  # tokens 3-4: only in the first window
    assert targets("in", 27) == [(0, 0), (4 + 9 - 7, 4 + 9 - 7)]  # the second "in" (token 9)
    assert targets("opened") == [(4 + 5, 4 + 8), (0, 0)]  # tokens 5-8: the second window starts at 7
    assert targets("855") == [(0, 0), (4 + 10 - 7, 4 + 11 - 7)]  # starts inside "185": the whole token is taken
    assert targets("ich") == [(4 + 4, 4 + 4), (0, 0)]  # "##ich"
    assert targets("opened in 1855") == [(0, 0), (0, 0)]  # tokens 5-11: wholly in neither window
    assert targets("") == [(0, 0), (0, 0)]  # impossible


def test_answer_token_span() -> None:
    offsets = [(0, 3), (5, 9), (9, 11), (12, 15)]  # "abc  defghi jkl"
    assert answer_token_span(offsets, 5, 11) == (1, 2)
    assert answer_token_span(offsets, 6, 10) == (1, 2)  # inside tokens: the enclosing ones
    assert answer_token_span(offsets, 3, 9) == (1, 1)  # leading spaces belong to no token
    assert answer_token_span(offsets, 3, 5) is None  # only spaces


# --------------------------------------------------------------------------- post-processing

def logits_for(features: list[dict], fill: float = -10.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Flat start and end logits per window, to be raised where a test wants a span."""
    return tuple([np.full(len(f["input_ids"]), fill) for f in features] for _ in range(2))


def span_of(prediction: dict) -> tuple[str, int | None, int | None]:
    return prediction["answer"], prediction["start"], prediction["end"]


def position(feature: dict, char: int) -> int:
    """Index in the feature's input_ids of the context token that starts at character `char`."""
    starts = [start for start, _ in feature["offsets"]]
    assert char in starts, f"no token starts at character {char} in this window"
    return feature["context_start"] + starts.index(char)


def last_position(feature: dict, char_end: int) -> int:
    ends = [end for _, end in feature["offsets"]]
    assert char_end in ends
    return feature["context_start"] + ends.index(char_end)


ZURICH = "The  Eidgenössische Technische Hochschule   Zürich was founded in 1855 ; its café sells crème brûlée ."
PEKING = "北京大学位于北京,  成立于1898年。 its first president was 孙家鼐 ."


def one_example(tokenizer, context: str, settings: QASettings, question: str = "who?") -> tuple[list, list]:
    examples = [QAExample("x", question, context, [], False)]
    return examples, encode(examples, tokenizer, settings, targets=False)


@pytest.mark.parametrize("context,answer", [
    (ZURICH, "Zürich"),
    (ZURICH, "Technische Hochschule   Zürich"),  # the run of spaces comes back as written
    (ZURICH, "crème brûlée"),
    (PEKING, "孙家鼐"),
    (PEKING, "北京大学位于北京,  成立于1898年"),
])
def test_postprocess_returns_original_characters(tokenizer, context, answer) -> None:
    examples, features = one_example(tokenizer, context, QASettings(max_length=128, doc_stride=16))
    (feature,) = features
    starts, ends = logits_for(features)
    char_start = context.index(answer)
    first, last = position(feature, char_start), last_position(feature, char_start + len(answer))
    starts[0][first] = ends[0][last] = 5.0
    prediction = postprocess(examples, features, starts, ends, max_answer_length=64)["x"]
    assert span_of(prediction) == (answer, char_start, char_start + len(answer))
    assert tokenizer.decode(feature["input_ids"][first:last + 1]) != answer  # decoding loses accents, case or spacing


def test_postprocess_rules(tokenizer) -> None:
    examples, features = one_example(tokenizer, ZURICH, QASettings(max_length=128, doc_stride=16))
    (feature,) = features
    founded = position(feature, ZURICH.index("founded"))  # founded in 185 ##5 ;
    assert tokenizer.convert_ids_to_tokens(feature["input_ids"][founded:founded + 5]) == ["founded", "in", "185", "##5",
                                                                                         ";"]

    def best(starts, ends, **kw):
        return postprocess(examples, features, [starts], [ends], **kw)["x"]["answer"]

    starts, ends = logits_for(features)
    starts[0][founded] = 5.0
    ends[0][founded + 4], ends[0][founded + 2] = 4.0, 3.0
    assert best(starts[0], ends[0], max_answer_length=5) == "founded in 1855 ;"
    assert best(starts[0], ends[0], max_answer_length=4) == "founded in 185"  # 5 tokens are too many
    # an end before the start is no span, whatever its score
    ends[0][founded - 1] = 9.0
    assert best(starts[0], ends[0], max_answer_length=5) == "founded in 1855 ;"
    # question tokens and [CLS] are not answers (v1)
    starts[0][1] = ends[0][1] = 20.0
    starts[0][0] = ends[0][0] = 20.0
    assert best(starts[0], ends[0], max_answer_length=5) == "founded in 1855 ;"
    # only the n_best best starts are tried: with n_best=1 that is [CLS] (first on the tie), so no span is left
    assert postprocess(examples, features, starts, ends, n_best=1)["x"] == {"answer": "", "start": None, "end": None,
                                                                            "score": 0.0}


def test_postprocess_most_central_window(tokenizer) -> None:
    """A start token is read only in the window where it has the most context on its poorer side."""
    settings = QASettings(max_length=24, doc_stride=10, max_query_length=4)
    examples, features = one_example(tokenizer, ZURICH, settings)  # "who?" = 2 tokens: 19 context tokens per window
    assert [f["window"] for f in features] == [(0, 19), (9, 28), (18, 37), (27, 40)]
    # context token 15 is 3 tokens from window 0's end but 6 from window 1's start: window 1 reads it
    first, second = features[0], features[1]
    t0, t1 = first["context_start"] + 15, second["context_start"] + 15 - 9
    assert first["input_ids"][t0] == second["input_ids"][t1]
    starts, ends = logits_for(features, fill=-50.0)
    starts[0][t0] = ends[0][t0 + 1] = 9.0  # the best pair, but window 0 does not own its start
    starts[0][first["context_start"] + 2] = ends[0][first["context_start"] + 2] = 1.0  # a span window 0 owns: 2.0
    starts[1][t1] = ends[1][t1] = 2.0  # token 15 alone, read in window 1: 4.0
    prediction = postprocess(examples, features, starts, ends, max_answer_length=2)["x"]
    char_start, char_end = second["offsets"][15 - 9]
    assert span_of(prediction) == (ZURICH[char_start:char_end], char_start, char_end)
    # the probability is a softmax over the kept spans' scores: 4.0, 2.0 and pairs near -50 that add ~0
    assert prediction["score"] == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-9)


def test_postprocess_answer_in_a_later_window(tokenizer) -> None:
    settings = QASettings(max_length=24, doc_stride=4, max_query_length=4)
    examples, features = one_example(tokenizer, ZURICH, settings)
    answer = "crème brûlée"
    char_start, char_end = ZURICH.index(answer), ZURICH.index(answer) + len(answer)
    starts, ends = logits_for(features)
    holders = [w for w, f in enumerate(features)
               if f["offsets"][0][0] <= char_start and f["offsets"][-1][1] >= char_end]
    assert holders and 0 not in holders
    for w in holders:  # as a trained model would: high wherever the window shows the answer
        starts[w][position(features[w], char_start)] = ends[w][last_position(features[w], char_end)] = 6.0
    prediction = postprocess(examples, features, starts, ends)["x"]
    assert span_of(prediction) == (answer, char_start, char_end)


def test_postprocess_v2_null_threshold(tokenizer) -> None:
    settings = QASettings(max_length=24, doc_stride=10, max_query_length=4)
    examples, features = one_example(tokenizer, ZURICH, settings)
    starts, ends = logits_for(features, fill=-50.0)
    for f, null in enumerate([5.0, 3.0, 4.0, 6.0]):  # [CLS] start + end per window: 10, 6, 8, 12; the null score is 6
        starts[f][0] = ends[f][0] = null
    span = features[0]["context_start"] + 1
    starts[0][span] = ends[0][span] = 4.0  # the best span: 8.0

    def run(threshold: float) -> dict:
        return postprocess(examples, features, starts, ends, version_2=True, null_threshold=threshold)["x"]

    answered = run(0.0)  # 6 - 8 = -2 is not above 0
    char_start, char_end = features[0]["offsets"][1]
    assert span_of(answered) == (ZURICH[char_start:char_end], char_start, char_end)
    assert answered["score"] == pytest.approx(1 / (1 + math.exp(6.0 - 8.0)))  # the null answer is in the softmax
    assert run(-1.9) == answered
    null = run(-2.1)  # -2 is above -2.1
    assert null == {"answer": "", "start": None, "end": None, "score": pytest.approx(1 / (1 + math.exp(8.0 - 6.0)))}
    # without v2 the null score is no answer at all
    assert postprocess(examples, features, starts, ends, null_threshold=-100.0)["x"]["answer"] == answered["answer"]


# --------------------------------------------------------------------------- metrics through the model

@pytest.fixture(scope="module")
def random_model(tokenizer) -> BertForQuestionAnswering:
    torch.manual_seed(0)
    return BertForQuestionAnswering(tiny_config(vocab_size=tokenizer.vocab_size)).eval()


def test_evaluate_file_equals_squad_metrics(random_model, tokenizer) -> None:
    settings = QASettings(max_length=48, doc_stride=8, max_query_length=16, version_2=True)
    metrics = qa.evaluate_file(random_model, tokenizer, OFFSETS_V2, settings=settings, batch_size=3)
    raw = json.loads(OFFSETS_V2.read_text(encoding="utf-8"))
    questions = [(q, p["context"]) for a in raw["data"] for p in a["paragraphs"] for q in p["qas"]]
    predictions = qa.predict(random_model, tokenizer, [q["question"] for q, _ in questions], [c for _, c in questions],
                             settings=settings)
    references = {q["id"]: [a["text"] for a in q["answers"]] for q, _ in questions}
    expected = squad_metrics({q["id"]: p["answer"] for (q, _), p in zip(questions, predictions)}, references)
    assert {k: v for k, v in metrics.items() if k != "loss"} == expected
    assert expected["NoAns_total"] == 2 and expected["HasAns_total"] == 6
    # all-null and never-null predictions give the exact v2 numbers
    always = qa.evaluate_file(random_model, tokenizer, OFFSETS_V2, settings=replace(settings, null_threshold=-1e9))
    never = qa.evaluate_file(random_model, tokenizer, OFFSETS_V2, settings=replace(settings, null_threshold=1e9))
    assert (always["exact_match"], always["f1"], always["NoAns_exact"], always["HasAns_f1"]) == (25.0, 25.0, 100.0, 0.0)
    assert never["NoAns_exact"] == 0.0


def test_eval_loss_is_the_mean_over_windows(random_model, tokenizer) -> None:
    settings = QASettings(max_length=48, doc_stride=8, max_query_length=16)
    features = encode(read_squad(ALLENNLP), tokenizer, settings)
    with torch.no_grad():  # one window at a time: no padding, which the loss would see
        each = [float(random_model(**collate([f], tokenizer.pad_token_id)).loss) for f in features]
    _, _, loss = qa.predict_logits(random_model, features, tokenizer.pad_token_id, batch_size=1)
    assert loss == pytest.approx(sum(each) / len(each), rel=1e-6)


def test_predict_shapes_and_settings(random_model, tokenizer) -> None:
    saved = {"task": "qa", "max_length": 32, "doc_stride": 4, "max_query_length": 16}
    model = BertForQuestionAnswering(random_model.config.replace(extra={"bertkit": saved}))
    settings = QASettings.from_model(model, max_query_length=8, n_best=None)
    assert (settings.max_length, settings.doc_stride, settings.max_query_length, settings.n_best) == (32, 4, 8, 20)
    model.load_state_dict(random_model.state_dict())
    results = qa.predict(model.eval(), tokenizer, ["who?", "北京?"], [ZURICH, PEKING])
    for result, context in zip(results, [ZURICH, PEKING]):
        assert set(result) == {"answer", "start", "end", "score"} and 0 < result["score"] <= 1
        assert context[result["start"]:result["end"]] == result["answer"] != ""
    # the saved settings were used: the same as passing them, not as the defaults
    as_saved = QASettings(max_length=32, doc_stride=4, max_query_length=16)
    assert results == qa.predict(model, tokenizer, ["who?", "北京?"], [ZURICH, PEKING], settings=as_saved)
    assert results != qa.predict(model, tokenizer, ["who?", "北京?"], [ZURICH, PEKING], settings=QASettings(
        max_length=64, doc_stride=4, max_query_length=16))
    with pytest.raises(ValueError, match="2 questions but 1 contexts"):
        qa.predict(model, tokenizer, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="doc_stride"):
        QASettings(max_length=64, doc_stride=30, max_query_length=32)
    with pytest.raises(TypeError, match="stride"):
        QASettings.from_model(model, stride=3)


# --------------------------------------------------------------------------- fine-tuning

FILLER = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "small", "ran", "away", "."]
ANSWERS = ["good", "bad", "great", "awful", "films"]  # "films" is two tokens: film ##s


def synthetic_squad(n: int, seed: int) -> dict:
    """SQuAD 2.0: the answer is the word after "not"; a context without "not" has none."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(6, 34))]
        impossible = rng.random() < 0.25
        answer = rng.choice(ANSWERS)
        if not impossible:
            at = rng.randint(0, len(words))
            words[at:at] = ["not", answer]
        context = " ".join(words)
        answers = [] if impossible else [{"text": answer, "answer_start": context.index("not " + answer) + 4}]
        paragraphs.append({"context": context, "qas": [{"id": f"{seed}-{i}", "question": "what is not",
                                                        "answers": answers, "is_impossible": impossible}]})
    return {"version": "v2.0", "data": [{"title": "synthetic", "paragraphs": paragraphs}]}


def write_json(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def train_args(out: Path, **kw) -> TrainArgs:
    return TrainArgs(output_dir=out, **{"epochs": 3, "batch_size": 16, "lr": 3e-3, "seed": 0, "progress": False, **kw})


WINDOW = dict(max_length=32, doc_stride=8, max_query_length=8)  # the tiny model has 64 positions


def test_finetune_learns_and_transformers_loads_it(tiny_dir: Path, tmp_path: Path) -> None:
    train = write_json(tmp_path / "train.json", synthetic_squad(160, 0))
    dev = write_json(tmp_path / "dev.json", synthetic_squad(40, 1))
    tokenizer = Tokenizer.from_pretrained(tiny_dir)
    dev_features = encode(read_squad(dev), tokenizer, QASettings(**WINDOW))
    assert any(f["window"][0] > 0 and f["start_positions"] for f in dev_features)  # answers in later windows too

    out = tmp_path / "qa"
    result = qa.finetune(tiny_dir, train, dev, train_args(out), **WINDOW)  # version_2 detected
    assert result.best_metrics["f1"] >= 90 and result.best_metrics["NoAns_total"] > 0
    saved = json.loads((out / "config.json").read_text())["bertkit"]
    assert saved == {"task": "qa", **WINDOW, "version_2": True, "max_answer_length": 30, "n_best": 20,
                     "null_threshold": 0.0}

    ours = BertForQuestionAnswering.from_pretrained(out)
    theirs = transformers.BertForQuestionAnswering.from_pretrained(out).eval()
    batch = collate(dev_features[:4], tokenizer.pad_token_id)
    batch = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        mine, ref = ours(**batch), theirs(**batch)
    torch.testing.assert_close(mine.start_logits, ref.start_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine.end_logits, ref.end_logits, atol=1e-5, rtol=1e-5)

    # the saved settings are enough for evaluate and predict
    loaded_tokenizer = Tokenizer.from_pretrained(out)
    metrics = qa.evaluate_file(ours, loaded_tokenizer, dev)
    assert metrics["f1"] == pytest.approx(result.best_metrics["f1"])
    context = "the cat sat on a mat not films the dog ran away . a big dog sat"
    answer, none = qa.predict(ours, loaded_tokenizer, ["what is not", "what is not"], [context, "the cat sat ."])
    assert span_of(answer) == ("films", context.index("films"), context.index("films") + 5)
    assert none["answer"] == "" and none["start"] is None


def test_bad_input_raises_before_the_output_directory_exists(tiny_dir: Path, tmp_path: Path) -> None:
    good = write_json(tmp_path / "good.json", synthetic_squad(8, 0))
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"data": [{"paragraphs": [{"context": "a cat", "qas": [', encoding="utf-8")
    document = synthetic_squad(8, 0)
    qas = document["data"][0]["paragraphs"][2]["qas"][0]
    qas["answers"], qas["is_impossible"] = [{"text": "dog", "answer_start": 999}], False
    misaligned = write_json(tmp_path / "misaligned.json", document)
    out = tmp_path / "never"
    with pytest.raises(DataError, match="malformed.json: line 1: invalid JSON"):
        qa.finetune(tiny_dir, malformed, good, train_args(out), **WINDOW)
    where = r"data\[0\].paragraphs\[2\].qas\[0\].answers\[0\]"
    with pytest.raises(DataError, match=rf"misaligned.json: {where}: answer_start 999"):
        qa.finetune(tiny_dir, good, misaligned, train_args(out), **WINDOW)
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings=64"):
        qa.finetune(tiny_dir, good, None, train_args(out), max_length=128, doc_stride=8)
    with pytest.raises(ValueError, match=r"good.json: data\[0\].paragraphs\[\d+\].qas\[0\]: an impossible"):
        qa.finetune(tiny_dir, good, None, train_args(out), version_2=False, **WINDOW)
    assert not out.exists()
