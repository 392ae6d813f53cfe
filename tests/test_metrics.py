"""bertkit.metrics: hand-computed fixtures (arithmetic in the comments), plus optional oracle checks
against scikit-learn, scipy and seqeval that are skipped when those are not installed."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest

from bertkit.metrics import (
    accuracy,
    classification_metrics,
    entity_scores,
    exact_match,
    f1_score,
    get_entities,
    macro_f1,
    matthews_corrcoef,
    multilabel_metrics,
    normalize_answer,
    pearson,
    regression_metrics,
    spearman,
    squad_metrics,
)

approx = pytest.approx

# --------------------------------------------------------------------------- classification

# Class 2 is never predicted.
#   labels = 0 0 0 1 1 1 2 2
#   preds  = 0 0 1 1 1 0 0 1
# Confusion matrix (rows true, columns predicted):
#            p0 p1 p2 | true count
#   t0     [  2  1  0 ]  3
#   t1     [  1  2  0 ]  3
#   t2     [  1  1  0 ]  2
#   pred     4  4  0     8
LABELS = [0, 0, 0, 1, 1, 1, 2, 2]
PREDS = [0, 0, 1, 1, 1, 0, 0, 1]


def test_accuracy_hand_computed():
    # diagonal 2 + 2 + 0 = 4 of 8
    assert accuracy(PREDS, LABELS) == approx(0.5)
    assert accuracy(["a", "b", "b"], ["a", "b", "c"]) == approx(2 / 3)
    assert accuracy(np.array([1, 2, 3]), np.array([1, 2, 3])) == 1.0


def test_macro_f1_with_a_class_never_predicted():
    # F1_k = 2·tp / (n_true + n_pred):
    #   class 0: 2·2 / (3 + 4) = 4/7;  class 1: 2·2 / (3 + 4) = 4/7;
    #   class 2: tp 0, never predicted -> precision 0 (zero_division=0), F1 0
    # macro = (4/7 + 4/7 + 0) / 3 = 8/21
    assert macro_f1(PREDS, LABELS) == approx(8 / 21)
    # Restricting to classes 0 and 1: (4/7 + 4/7) / 2
    assert macro_f1(PREDS, LABELS, labels_set=[0, 1]) == approx(4 / 7)
    # A class in labels_set that is neither predicted nor true counts as 0:
    # (4/7 + 4/7 + 0 + 0) / 4 = 2/7
    assert macro_f1(PREDS, LABELS, labels_set=[0, 1, 2, 3]) == approx(2 / 7)


def test_macro_f1_class_only_predicted_and_perfect():
    # labels a a b, preds a a c: a: 2·2/(2+2)=1; b: 0 (never predicted); c: 0 (never true)
    # macro = 1/3 over the union {a, b, c}
    assert macro_f1(["a", "a", "c"], ["a", "a", "b"]) == approx(1 / 3)
    assert macro_f1([3, 1, 2], [3, 1, 2]) == 1.0


def test_mcc_multiclass_hand_computed():
    # sklearn's multiclass MCC: with s samples, c correct, t_k / p_k true / predicted counts,
    #   cov(yt, yp) = c·s − Σ t_k·p_k = 4·8 − (3·4 + 3·4 + 2·0) = 32 − 24 = 8
    #   cov(yp, yp) = s² − Σ p_k²     = 64 − (16 + 16 + 0)     = 32
    #   cov(yt, yt) = s² − Σ t_k²     = 64 − (9 + 9 + 4)       = 42
    #   MCC = 8 / sqrt(32·42) = 8 / sqrt(1344) = 8 / (8·sqrt(21)) = 1/sqrt(21) ≈ 0.2182
    assert matthews_corrcoef(PREDS, LABELS) == approx(1 / math.sqrt(21))


def test_mcc_binary_and_undefined():
    # labels 1 1 1 0 0, preds 1 1 0 0 1: TP 2, FN 1, FP 1, TN 1
    #   (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 − 1) / sqrt(3·3·2·2) = 1/6
    assert matthews_corrcoef([1, 1, 0, 0, 1], [1, 1, 1, 0, 0]) == approx(1 / 6)
    assert matthews_corrcoef([1, 0], [0, 1]) == approx(-1.0)
    assert matthews_corrcoef([0, 1, 2], [0, 1, 2]) == approx(1.0)
    # One class predicted everywhere: s² − Σ p_k² = 0 -> undefined -> 0.0
    assert matthews_corrcoef([1, 1, 1], [0, 1, 2]) == 0.0
    assert matthews_corrcoef([0, 1, 2], [1, 1, 1]) == 0.0


def test_classification_metrics_dict():
    out = classification_metrics(np.array(PREDS), np.array(LABELS))
    assert out == {"accuracy": approx(0.5), "macro_f1": approx(8 / 21), "mcc": approx(1 / math.sqrt(21))}


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    out = classification_metrics(torch.tensor(PREDS), torch.tensor(LABELS))
    assert out == {"accuracy": approx(0.5), "macro_f1": approx(8 / 21), "mcc": approx(1 / math.sqrt(21))}
    assert regression_metrics(torch.tensor([2.0, 2.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]))["mse"] == approx(2 / 3)
    assert multilabel_metrics(torch.tensor([[1, 0]]), torch.tensor([[1, 1]]))["micro_f1"] == approx(2 / 3)


@pytest.mark.parametrize("fn", [accuracy, macro_f1, matthews_corrcoef, classification_metrics])
def test_classification_input_errors(fn):
    with pytest.raises(ValueError, match="length"):
        fn([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="1-D"):
        fn([[0.1, 0.9]], [1])  # logits, not class ids


# --------------------------------------------------------------------------- multi-label

# labels            preds
#  1 0 1 0           1 0 0 0
#  0 1 0 0           0 1 0 0
#  1 1 0 0           1 0 1 0
#  0 0 0 0           0 0 0 0
ML_TRUE = [[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
ML_PRED = [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]


def test_multilabel_hand_computed():
    # per column (tp, n_pred, n_true) -> F1 = 2·tp / (n_true + n_pred):
    #   col 0: (2, 2, 2) -> 1;  col 1: (1, 1, 2) -> 2/3;  col 2: (0, 1, 1) -> 0;
    #   col 3: (0, 0, 0) -> 0 (zero_division=0, still in the mean, as sklearn)
    # macro = (1 + 2/3 + 0 + 0) / 4 = 5/12
    # micro: tp 3, n_pred 4, n_true 5 -> 6/9 = 2/3
    # subset accuracy: rows 1 and 3 are exact -> 2/4
    out = multilabel_metrics(np.array(ML_PRED), ML_TRUE)
    assert out == {"micro_f1": approx(2 / 3), "macro_f1": approx(5 / 12), "subset_accuracy": approx(0.5)}
    bools = multilabel_metrics(np.array(ML_PRED, dtype=bool), np.array(ML_TRUE, dtype=bool))
    assert bools == out


def test_multilabel_nothing_positive_and_errors():
    # No positive anywhere: every F1 has a 0 denominator -> 0.0; every row is exact.
    assert multilabel_metrics([[0, 0]], [[0, 0]]) == {"micro_f1": 0.0, "macro_f1": 0.0, "subset_accuracy": 1.0}
    with pytest.raises(ValueError, match="shape"):
        multilabel_metrics([[1, 0]], [[1, 0, 0]])
    with pytest.raises(ValueError, match="0/1"):
        multilabel_metrics([[0.7, 0.2]], [[1, 0]])
    with pytest.raises(ValueError, match="2-D"):
        multilabel_metrics([1, 0], [1, 0])
    with pytest.raises(ValueError, match="empty"):
        multilabel_metrics(np.zeros((0, 3)), np.zeros((0, 3)))


# --------------------------------------------------------------------------- regression


def test_pearson_hand_computed():
    # x = 1 2 3 4 (mean 2.5), y = 2 4 5 9 (mean 5)
    # dx = -1.5 -0.5 0.5 1.5, dy = -3 -1 0 4
    # Σdx·dy = 4.5 + 0.5 + 0 + 6 = 11; Σdx² = 5; Σdy² = 9 + 1 + 0 + 16 = 26
    # r = 11 / sqrt(5·26) = 11 / sqrt(130) ≈ 0.96476
    assert pearson([1, 2, 3, 4], [2, 4, 5, 9]) == approx(11 / math.sqrt(130))
    assert pearson([1, 2, 3], [-2, -4, -6]) == approx(-1.0)


def test_spearman_with_ties():
    # x = 1 2 2 3 -> ranks 1 2.5 2.5 4 (the tied 2s share ranks 2 and 3)
    # y = 1 3 2 4 -> ranks 1 3 2 4; both rank means are 2.5
    # dx = -1.5 0 0 1.5, dy = -1.5 0.5 -0.5 1.5
    # Σdx·dy = 2.25 + 2.25 = 4.5; Σdx² = 4.5; Σdy² = 5
    # rho = 4.5 / sqrt(4.5·5) = sqrt(0.9) ≈ 0.94868
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == approx(math.sqrt(0.9))
    # Ties on both sides:
    # x = 10 20 20 30 30 -> ranks 1 2.5 2.5 4.5 4.5 (mean 3)
    # y = 3 1 1 2 5      -> ranks 4 1.5 1.5 3 5     (mean 3)
    # dx = -2 -0.5 -0.5 1.5 1.5, dy = 1 -1.5 -1.5 0 2
    # Σdx·dy = -2 + 0.75 + 0.75 + 0 + 3 = 2.5; Σdx² = 9; Σdy² = 9.5
    # rho = 2.5 / sqrt(85.5) ≈ 0.27037
    assert spearman([10, 20, 20, 30, 30], [3, 1, 1, 2, 5]) == approx(2.5 / math.sqrt(85.5))


def test_spearman_is_rank_based():
    assert spearman([1, 2, 3, 4], [1, 4, 9, 100]) == approx(1.0)
    assert spearman([1, 2, 3, 4], [100, 9, 4, 1]) == approx(-1.0)
    assert pearson([1, 2, 3, 4], [1, 4, 9, 100]) < 0.9  # not rank-based


def test_constant_input_is_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pearson([1, 1, 1], [1, 2, 3]) == 0.0
        # 0.3 is inexact: ten of them have a mean 0.3 + ε, so centring leaves tiny non-zero values that a
        # plain formula would turn into a "correlation" of about -3e-17 instead of an exact 0.0
        assert pearson(list(range(10)), [0.3] * 10) == 0.0
        assert spearman([5, 5, 5], [3, 1, 2]) == 0.0
        assert pearson([7.0], [3.0]) == 0.0  # one sample: constant
        # preds 2 2 2 vs labels 1 2 3: mse = (1 + 0 + 1) / 3
        assert regression_metrics([2, 2, 2], [1, 2, 3]) == {"pearson": 0.0, "spearman": 0.0, "mse": approx(2 / 3)}


def test_regression_metrics_dict_and_errors():
    # mse: differences 1 2 2 5 -> (1 + 4 + 4 + 25) / 4 = 8.5; ranks of both are 1 2 3 4 -> rho 1
    out = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), [2, 4, 5, 9])
    assert out == {"pearson": approx(11 / math.sqrt(130)), "spearman": approx(1.0), "mse": approx(8.5)}
    with pytest.raises(ValueError, match="length"):
        regression_metrics([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        pearson([], [])
    with pytest.raises(ValueError, match="NaN"):
        spearman([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="1-D"):
        pearson([[1, 2]], [[1, 2]])


# --------------------------------------------------------------------------- NER

ENTITY_TABLE = [
    # I- after O starts a chunk (IOB1 style)
    (["O", "I-PER", "I-PER", "O"], [("PER", 1, 2)]),
    # B- then I- of another type: the type change ends PER and starts LOC
    (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),
    # IOB1: B- only separates two adjacent chunks of one type
    (["I-PER", "I-PER", "B-PER", "I-LOC"], [("PER", 0, 1), ("PER", 2, 2), ("LOC", 3, 3)]),
    # a B- always starts a new chunk, even after B- of the same type
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),
    # IOBES singles: each S- is its own chunk
    (["S-PER", "S-PER", "O", "S-LOC"], [("PER", 0, 0), ("PER", 1, 1), ("LOC", 3, 3)]),
    # E- without B- starts (and ends) a chunk
    (["O", "E-PER", "O"], [("PER", 1, 1)]),
    # I- E- is one chunk; E- after E- starts a new one
    (["I-PER", "E-PER", "E-PER"], [("PER", 0, 1), ("PER", 2, 2)]),
    # I- after E- starts a new chunk; B- before S- ends
    (["B-PER", "E-PER", "I-PER", "B-LOC", "S-LOC"], [("PER", 0, 1), ("PER", 2, 2), ("LOC", 3, 3), ("LOC", 4, 4)]),
    # an entity running to the end of the sentence
    (["O", "B-MISC", "I-MISC"], [("MISC", 1, 2)]),
    (["B-MISC"], [("MISC", 0, 0)]),
    # tags without a type get seqeval's type "_"
    (["B", "I", "O", "I", "B"], [("_", 0, 1), ("_", 3, 3), ("_", 4, 4)]),
    # BILOU: L- ends like E-, U- is a single like S-
    (["B-PER", "L-PER", "U-LOC", "U-LOC"], [("PER", 0, 1), ("LOC", 2, 2), ("LOC", 3, 3)]),
    # a type containing "-" is kept whole
    (["B-ORG-CORP", "I-ORG-CORP"], [("ORG-CORP", 0, 1)]),
    (["O", "O"], []),
    ([], []),
]


@pytest.mark.parametrize("tags, expected", ENTITY_TABLE)
def test_get_entities_table(tags, expected):
    assert get_entities(tags) == expected


@pytest.mark.parametrize("bad", ["PER-B", "X-PER", "b-per", "", "B_PER", None])
def test_get_entities_rejects_unsupported_tags(bad):
    with pytest.raises(ValueError, match="unsupported tag"):
        get_entities(["O", bad])


# true                                         pred
# s0: B-PER I-PER O B-LOC O                    B-PER I-PER O B-ORG O
#     PER(0,1)  LOC(3,3)                       PER(0,1) ok   ORG(3,3) wrong
# s1: B-ORG I-ORG I-ORG O B-PER                B-ORG I-ORG O O B-PER
#     ORG(0,2)  PER(4,4)                       ORG(0,1) wrong (end)  PER(4,4) ok
# s2: O B-LOC I-LOC O                          B-MISC B-LOC I-LOC O
#     LOC(1,2)                                 MISC(0,0) wrong  LOC(1,2) ok
NER_TRUE = [
    ["B-PER", "I-PER", "O", "B-LOC", "O"],
    ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER"],
    ["O", "B-LOC", "I-LOC", "O"],
]
NER_PRED = [
    ["B-PER", "I-PER", "O", "B-ORG", "O"],
    ["B-ORG", "I-ORG", "O", "O", "B-PER"],
    ["B-MISC", "B-LOC", "I-LOC", "O"],
]


def test_entity_scores_hand_computed():
    # true entities 5 (PER 2, LOC 2, ORG 1); predicted 6 (PER 2, ORG 2, LOC 1, MISC 1); correct 3
    # micro: P = 3/6 = 0.5, R = 3/5 = 0.6, F1 = 2·0.5·0.6 / 1.1 = 6/11
    out = entity_scores(NER_TRUE, NER_PRED)
    assert out["precision"] == approx(0.5)
    assert out["recall"] == approx(0.6)
    assert out["f1"] == approx(6 / 11)
    assert out["per_type"] == {
        # LOC: 1 correct of 1 predicted, 2 true -> P 1, R 1/2, F1 2·1·0.5/1.5 = 2/3
        "LOC": {"precision": approx(1.0), "recall": approx(0.5), "f1": approx(2 / 3), "support": 2},
        # MISC: 0 of 1 predicted, none true -> P 0, R 0 (0/0 -> 0), F1 0
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        # ORG: 0 of 2 predicted, 1 true -> all 0
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        # PER: 2 of 2, 2 true -> all 1
        "PER": {"precision": approx(1.0), "recall": approx(1.0), "f1": approx(1.0), "support": 2},
    }
    assert list(out["per_type"]) == ["LOC", "MISC", "ORG", "PER"]


def test_entity_scores_are_per_sentence_and_edge_cases():
    # The same span in a different sentence is not a match.
    out = entity_scores([["B-PER"], ["O"]], [["O"], ["B-PER"]])
    assert (out["precision"], out["recall"], out["f1"]) == (0.0, 0.0, 0.0)
    # No entities at all: every score is 0 (seqeval's zero_division default).
    assert entity_scores([["O", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "per_type": {}}
    # Schemes mix: IOBES truth, IOB1 prediction, same chunks.
    assert entity_scores([["B-X", "E-X", "S-Y"]], [["I-X", "I-X", "B-Y"]])["f1"] == approx(1.0)


def test_entity_scores_errors():
    with pytest.raises(ValueError, match="length"):
        entity_scores([["O"]], [["O", "O"]])
    with pytest.raises(ValueError, match="length"):
        entity_scores([["O"]], [])
    with pytest.raises(ValueError, match="empty"):
        entity_scores([], [])
    with pytest.raises(ValueError, match="lists of tag lists"):
        entity_scores(["B-PER"], ["B-PER"])


# --------------------------------------------------------------------------- SQuAD


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Cat!", "cat"),
        ("an apple", "apple"),
        ("theater", "theater"),  # articles are whole words only
        ("A.B.C.", "abc"),  # punctuation goes first, so no "a" is left to remove
        ("Over  the\tRainbow ", "over rainbow"),
        ("Don't stop", "dont stop"),
        ("«Café»", "«café»"),  # only ASCII punctuation (string.punctuation) is removed
        ("The", ""),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_multiple_ground_truths():
    assert exact_match("the Cat", ["dog", "cat."]) == 1.0
    assert exact_match("cats", ["cat", "a cat"]) == 0.0
    assert exact_match("Denver", "denver!") == 1.0  # a single string is one gold answer


def test_f1_partial_overlap_and_max_over_ground_truths():
    # pred "black cat sat" -> [black, cat, sat]; gold "a black cat on the mat" -> [black, cat, on, mat]
    # common 2: P = 2/3, R = 2/4 -> F1 = 2·(2/3)(1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
    assert f1_score("black cat sat", ["a black cat on the mat"]) == approx(4 / 7)
    # "a dog" -> [dog]: 0;  "cat" -> [cat]: P 1/3, R 1 -> F1 (2/3)/(4/3) = 1/2;  max = 4/7
    assert f1_score("black cat sat", ["a dog", "a black cat on the mat", "cat"]) == approx(4 / 7)
    # tokens count with multiplicity: common(cat cat cat, cat) = 1 -> P 1/3, R 1 -> 1/2
    assert f1_score("cat cat cat", ["cat"]) == approx(0.5)
    assert f1_score("dog", ["cat"]) == 0.0


def test_no_answer_semantics():
    # An empty gold list is a no-answer question: only an empty (normalised) prediction is right.
    assert exact_match("", []) == 1.0 and f1_score("", []) == 1.0
    assert exact_match("The.", []) == 1.0 and f1_score("The.", []) == 1.0  # normalises to ""
    assert exact_match("cat", []) == 0.0 and f1_score("cat", []) == 0.0
    # Empty prediction for an answerable question: v2's compute_f1 gives EM, here 0.
    assert exact_match("", ["cat"]) == 0.0 and f1_score("", ["cat"]) == 0.0
    # Gold answers that normalise to nothing are dropped; none left -> no-answer.
    assert f1_score("", ["the", "  "]) == 1.0
    assert f1_score("", ["the", "cat"]) == 0.0


SQUAD_REFS = {
    "q1": ["Denver Broncos", "The Broncos"],
    "q2": ["black cat on the mat"],
    "q3": [],
    "q4": [],
}
SQUAD_PREDS = {"q1": "broncos", "q2": "black cat sat", "q3": "", "q4": "Denver", "extra": "ignored"}


def test_squad_metrics_with_both_kinds():
    # q1: "broncos" == norm("The Broncos") -> EM 1, F1 1
    # q2: EM 0, F1 4/7 (computed above)
    # q3: no-answer, empty prediction -> EM 1, F1 1
    # q4: no-answer, "Denver" -> EM 0, F1 0
    # all:    EM 100·2/4 = 50;  F1 100·(1 + 4/7 + 1 + 0)/4 = 100·18/28
    # HasAns: EM 100·1/2 = 50;  F1 100·(1 + 4/7)/2 = 100·11/14
    # NoAns:  EM 50;            F1 50
    out = squad_metrics(SQUAD_PREDS, SQUAD_REFS)
    assert out == {
        "exact_match": approx(50.0),
        "f1": approx(100 * 18 / 28),
        "total": 4,
        "HasAns_exact": approx(50.0),
        "HasAns_f1": approx(100 * 11 / 14),
        "HasAns_total": 2,
        "NoAns_exact": approx(50.0),
        "NoAns_f1": approx(50.0),
        "NoAns_total": 2,
    }


def test_squad_metrics_answerable_only_and_errors():
    refs = {"q1": SQUAD_REFS["q1"], "q2": SQUAD_REFS["q2"]}
    # EM 100·1/2, F1 100·(1 + 4/7)/2; no breakdown when only one kind is present
    assert squad_metrics(SQUAD_PREDS, refs) == {"exact_match": approx(50.0), "f1": approx(100 * 11 / 14), "total": 2}
    with pytest.raises(ValueError, match="no prediction"):
        squad_metrics({"q1": "x"}, refs)
    with pytest.raises(ValueError, match="empty"):
        squad_metrics({}, {})


# --------------------------------------------------------------------------- oracles (skipped without them)

N_RANDOM = 200


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: "A single label was found"
def test_oracle_sklearn_classification():
    skm = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    for i in range(N_RANDOM):
        n, k = rng.randint(1, 15), rng.randint(1, 5)
        y = [rng.randrange(k) for _ in range(n)]
        p = [rng.randrange(k) for _ in range(n)]
        assert macro_f1(p, y) == approx(skm.f1_score(y, p, average="macro", zero_division=0), abs=1e-12)
        assert matthews_corrcoef(p, y) == approx(skm.matthews_corrcoef(y, p), abs=1e-12)
        if i % 4 == 0:  # sklearn is slow per call: the explicit class list on a quarter of the cases
            labels = list(range(k + 1))
            assert macro_f1(p, y, labels) == approx(
                skm.f1_score(y, p, average="macro", labels=labels, zero_division=0), abs=1e-12
            )


def test_oracle_sklearn_multilabel():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(N_RANDOM // 2):
        # >= 2 columns: sklearn reads an (n, 1) matrix as a binary column vector, not as multi-label
        shape = (int(rng.integers(1, 8)), int(rng.integers(2, 6)))
        t = rng.integers(0, 2, shape)
        p = rng.integers(0, 2, shape)
        out = multilabel_metrics(p, t)
        assert out["micro_f1"] == approx(skm.f1_score(t, p, average="micro", zero_division=0), abs=1e-12)
        assert out["macro_f1"] == approx(skm.f1_score(t, p, average="macro", zero_division=0), abs=1e-12)
        assert out["subset_accuracy"] == approx(skm.accuracy_score(t, p), abs=1e-12)


def test_oracle_scipy_correlations():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for i in range(N_RANDOM):
        n = rng.randint(3, 12)
        x = [rng.randint(0, 4) for _ in range(n)]  # many ties
        y = [rng.randint(0, 4) + (rng.random() if i % 2 else 0) for _ in range(n)]
        if len(set(x)) == 1 or len(set(y)) == 1:
            continue  # scipy: NaN and a warning; here 0.0 (tested above)
        assert spearman(x, y) == approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert pearson(x, y) == approx(stats.pearsonr(x, y).statistic, abs=1e-12)


SCHEME_TAGS = ["O", "O", "O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC",
               "B", "I", "E", "S"]


def _random_tag_pairs(rng: random.Random) -> tuple[list[list[str]], list[list[str]]]:
    true = [[rng.choice(SCHEME_TAGS) for _ in range(rng.randint(0, 8))] for _ in range(rng.randint(1, 4))]
    pred = [[rng.choice(SCHEME_TAGS) if rng.random() < 0.4 else tag for tag in seq] for seq in true]
    return true, pred


@pytest.mark.filterwarnings("ignore")
def test_oracle_seqeval_default_mode():
    seqeval = pytest.importorskip("seqeval.metrics")
    from seqeval.metrics.sequence_labeling import get_entities as seqeval_get_entities

    rng = random.Random(0)
    for _ in range(N_RANDOM):
        true, pred = _random_tag_pairs(rng)
        for seq in true + pred:
            assert get_entities(seq) == seqeval_get_entities(seq), seq
        out = entity_scores(true, pred)
        assert out["precision"] == approx(seqeval.precision_score(true, pred), abs=1e-12)
        assert out["recall"] == approx(seqeval.recall_score(true, pred), abs=1e-12)
        assert out["f1"] == approx(seqeval.f1_score(true, pred), abs=1e-12)
        if not out["per_type"]:
            continue  # seqeval's report needs at least one entity
        report = seqeval.classification_report(true, pred, output_dict=True)
        for type_, scores in out["per_type"].items():
            ref = report[type_]
            assert (scores["precision"], scores["recall"], scores["f1"], scores["support"]) == approx(
                (ref["precision"], ref["recall"], ref["f1-score"], ref["support"]), abs=1e-12
            )
    for tags, _ in ENTITY_TABLE:
        if not any(tag[:1] in "LU" and tag for tag in tags):  # seqeval does not know BILOU
            assert get_entities(tags) == seqeval_get_entities(tags), tags


def test_oracle_seqeval_bilou_reads_as_iobes():
    pytest.importorskip("seqeval")
    from seqeval.metrics.sequence_labeling import get_entities as seqeval_get_entities

    rng = random.Random(1)
    as_iobes = {"L": "E", "U": "S"}
    for _ in range(N_RANDOM):
        tags = [rng.choice(["O", "B-A", "I-A", "L-A", "U-A", "B-B", "L-B", "U-B", "B", "L", "U"])
                for _ in range(rng.randint(0, 8))]
        converted = [as_iobes.get(tag[0], tag[0]) + tag[1:] for tag in tags]
        assert get_entities(tags) == seqeval_get_entities(converted), tags
