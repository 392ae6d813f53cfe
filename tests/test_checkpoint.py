"""Model directories: safe loading, corrupt files, key translation, sharding, tying, atomic saves, dtypes."""

from __future__ import annotations

import builtins
import json
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

import bertkit
import bertkit.checkpoint
from bertkit import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
    CheckpointError,
    ConfigError,
)

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=64)
HEADS = ("BertModel", "BertForMaskedLM", "BertForPreTraining", "BertForSequenceClassification",
         "BertForTokenClassification", "BertForQuestionAnswering", "BertForMultipleChoice")


def tiny(**overrides) -> BertConfig:
    return BertConfig(**{**TINY, **overrides})


def batch(seed: int = 0, choices: int | None = None):
    """(3, 7) ids with right padding (rows of length 7, 4 and 2), mask and segment ids."""
    g = torch.Generator().manual_seed(seed)
    shape = (3, 7) if choices is None else (3, choices, 7)
    ids = torch.randint(1, 99, shape, generator=g)
    mask = (torch.arange(7) < torch.tensor([7, 4, 2]).view(3, *([1] * (len(shape) - 1)))).long().expand(shape)
    ids = ids.masked_fill(mask == 0, 0)
    types = (torch.arange(7) >= 3).long().expand(shape) * mask
    return ids, mask.contiguous(), types.contiguous()


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its initial value (LayerNorm 1/0, zero biases) so a misrouted tensor shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def bertkit_model(name: str = "BertModel", seed: int = 0, **config_overrides):
    torch.manual_seed(seed)
    return perturb(getattr(bertkit, name)(tiny(**config_overrides)), seed).eval()


def hf_model(name: str = "BertModel", seed: int = 0, **config_overrides):
    torch.manual_seed(seed)
    config = transformers.BertConfig(**{**TINY, **config_overrides})
    return perturb(getattr(transformers, name)(config), seed).eval()


def write_config(directory: Path, config: BertConfig | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text((config or tiny()).to_json_string())
    return directory


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def encoder_state(model) -> dict[str, torch.Tensor]:
    module = model if isinstance(model, BertModel) else model.bert
    return {k: v for k, v in module.state_dict().items() if not k.startswith("pooler.")}


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------- safety


class ExecPayload:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.sentinel!r}, 'w').write('pwned')",))


class SystemPayload:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.sentinel)}",))


@pytest.mark.parametrize("payload, names", [(ExecPayload, "exec"), (SystemPayload, "system")])
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, payload, names, zip_format):
    sentinel = tmp_path / "SENTINEL"
    model_dir = write_config(tmp_path / "model")
    state = dict(BertModel(tiny()).state_dict())
    state["__payload__"] = payload(sentinel)
    torch.save(state, model_dir / "pytorch_model.bin", _use_new_zipfile_serialization=zip_format)
    assert not sentinel.exists()

    with pytest.raises(CheckpointError) as info:
        BertModel.from_pretrained(model_dir)
    message = str(info.value)
    assert str(model_dir / "pytorch_model.bin") in message
    assert "refused to load" in message and "weights_only=True" in message
    assert names in message  # the refused global is named
    assert "\x1b" not in message and "can still be loaded" not in message  # no terminal codes, no advice to bypass
    assert not sentinel.exists()

    # Control: the same file really does carry a live payload when unpickled unsafely.
    torch.load(model_dir / "pytorch_model.bin", weights_only=False)
    assert sentinel.exists()


@pytest.mark.parametrize("what", ["half", "random"])
def test_corrupt_safetensors(tmp_path, what):
    model_dir = tmp_path / "m"
    BertModel(tiny()).save_pretrained(model_dir)
    file = model_dir / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2] if what == "half" else random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        BertModel.from_pretrained(model_dir)
    assert str(file) in str(info.value)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("what", ["half", "random", "empty"])
def test_corrupt_pytorch_bin(tmp_path, zip_format, what):
    model_dir = write_config(tmp_path / "m")
    file = model_dir / "pytorch_model.bin"
    torch.save(BertModel(tiny()).state_dict(), file, _use_new_zipfile_serialization=zip_format)
    data = file.read_bytes()
    file.write_bytes({"half": data[: len(data) // 2], "random": random.Random(1).randbytes(4096), "empty": b""}[what])
    # Random bytes may happen to spell a pickle opcode the weights-only unpickler refuses: either is fine.
    expected = "truncated or corrupt" if what != "random" else "truncated or corrupt|refused to load"
    with pytest.raises(CheckpointError, match=expected) as info:
        BertModel.from_pretrained(model_dir)
    assert str(file) in str(info.value)


def test_bin_that_is_not_a_state_dict(tmp_path):
    model_dir = write_config(tmp_path / "m")
    torch.save([torch.zeros(2)], model_dir / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"expected a dict of tensors \(a state dict\), got list"):
        BertModel.from_pretrained(model_dir)


# ---------------------------------------------------------------- missing things


def test_missing_directory_never_downloads(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads") as info:
        BertModel.from_pretrained(tmp_path / "bert-base-uncased")
    assert str(tmp_path / "bert-base-uncased") in str(info.value)


def test_directory_without_weights(tmp_path):
    model_dir = write_config(tmp_path / "m")
    with pytest.raises(FileNotFoundError) as info:
        BertModel.from_pretrained(model_dir)
    message = str(info.value)
    assert str(model_dir) in message and "no weights found" in message
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        assert name in message


def test_directory_without_config(tmp_path):
    model_dir = tmp_path / "m"
    BertModel(tiny()).save_pretrained(model_dir)
    (model_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no such config file"):
        BertModel.from_pretrained(model_dir)


def test_file_instead_of_directory(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="expected a model directory") as info:
        BertModel.from_pretrained(file)
    assert str(file) in str(info.value)


def test_bad_config_json_in_model_directory(tmp_path):
    model_dir = tmp_path / "m"
    BertModel(tiny()).save_pretrained(model_dir)
    (model_dir / "config.json").write_text('{"hidden_size": 30, "num_attention_heads": 4}')
    with pytest.raises(ConfigError, match=r"config\.json: hidden_size=30 is not divisible"):
        BertModel.from_pretrained(model_dir)


# ---------------------------------------------------------------- shapes and key names


def test_shape_mismatch_names_tensor_and_shapes(tmp_path):
    model_dir = tmp_path / "m"
    BertModel(tiny()).save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["vocab_size"] = 100
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        BertModel.from_pretrained(model_dir)
    message = str(info.value)
    assert "'embeddings.word_embeddings.weight'" in message
    assert "(99, 32)" in message and "(100, 32)" in message
    assert message.index("(99, 32)") < message.index("(100, 32)")  # checkpoint shape first, then the model's


def test_bare_encoder_loads_into_classifier(tmp_path):
    source = bertkit_model("BertModel", seed=1)
    source.save_pretrained(tmp_path / "m")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "m")
    assert_same_tensors(model.bert.state_dict(), source.state_dict())  # pooler included
    assert sorted(model.load_report.missing) == ["classifier.bias", "classifier.weight"]
    assert model.load_report.unexpected == []
    ids, mask, types = batch()
    assert_close(model.bert(ids, mask, types).pooler_output, source(ids, mask, types).pooler_output, rtol=0, atol=0)


def test_pretraining_checkpoint_loads_into_bare_encoder(tmp_path):
    source = bertkit_model("BertForPreTraining", seed=2)
    source.save_pretrained(tmp_path / "m")
    file_keys = set(load_file(tmp_path / "m" / "model.safetensors"))
    model = BertModel.from_pretrained(tmp_path / "m")
    assert_same_tensors(model.state_dict(), source.bert.state_dict())
    assert model.load_report.missing == []
    cls_keys = {k for k in file_keys if k.startswith("cls.")}
    assert cls_keys >= {"cls.predictions.bias", "cls.seq_relationship.weight", "cls.predictions.transform.dense.weight"}
    assert set(model.load_report.unexpected) == cls_keys


def test_transformers_pretraining_checkpoint_loads_into_bare_encoder(tmp_path):
    oracle = hf_model("BertForPreTraining", seed=3)
    oracle.save_pretrained(tmp_path / "m")
    model = BertModel.from_pretrained(tmp_path / "m")
    assert model.load_report.missing == []
    assert model.load_report.unexpected and all(k.startswith("cls.") for k in model.load_report.unexpected)
    ids, mask, types = batch()
    ours, theirs = model(ids, mask, types), oracle.bert(ids, attention_mask=mask, token_type_ids=types)
    assert_close(ours.last_hidden_state, theirs.last_hidden_state, rtol=0, atol=1e-5)
    assert_close(ours.pooler_output, theirs.pooler_output, rtol=0, atol=1e-5)


def test_missing_pooler_is_reported(tmp_path):
    source = bertkit_model("BertForMaskedLM", seed=4)  # its encoder has no pooler
    source.save_pretrained(tmp_path / "m")
    model = BertModel.from_pretrained(tmp_path / "m")
    assert sorted(model.load_report.missing) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert all(k.startswith("cls.") for k in model.load_report.unexpected)
    assert_same_tensors(encoder_state(model), encoder_state(source))
    classifier = BertForSequenceClassification.from_pretrained(tmp_path / "m")
    assert sorted(classifier.load_report.missing) == [
        "bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.bias", "classifier.weight"]


def legacy_state_dict(oracle) -> dict[str, torch.Tensor]:
    """transformers 3.x-style names: LayerNorm gamma/beta, a position_ids buffer, decoder.bias, no predictions.bias."""
    state = {}
    for key, tensor in oracle.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[key] = tensor.clone()
    state["bert.embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
    state["bert.embeddings.token_type_ids"] = torch.zeros(1, 64, dtype=torch.long)
    state["cls.predictions.decoder.bias"] = state.pop("cls.predictions.bias")
    return state


def test_legacy_key_names(tmp_path):
    oracle = hf_model("BertForMaskedLM", seed=5)
    state = legacy_state_dict(oracle)
    assert "bert.embeddings.LayerNorm.gamma" in state and "cls.predictions.bias" not in state
    assert not torch.equal(state["cls.predictions.decoder.bias"], torch.zeros(99))  # a misrouted bias would show
    model_dir = write_config(tmp_path / "m")
    torch.save(state, model_dir / "pytorch_model.bin")
    model = BertForMaskedLM.from_pretrained(model_dir)
    assert model.load_report.missing == []
    assert model.load_report.unexpected == []
    assert torch.equal(model.cls.predictions.bias, oracle.cls.predictions.bias)
    assert torch.equal(model.bert.embeddings.LayerNorm.weight, oracle.bert.embeddings.LayerNorm.weight)
    ids, mask, types = batch()
    assert_close(model(ids, mask, types).logits, oracle(ids, attention_mask=mask, token_type_ids=types).logits,
                 rtol=0, atol=1e-5)


@pytest.mark.parametrize("native", [False, True], ids=["hand-split", "transformers-sharded"])
def test_sharded_safetensors(tmp_path, native):
    oracle = hf_model("BertForMaskedLM", seed=6)
    model_dir = tmp_path / "m"
    if native:
        oracle.save_pretrained(model_dir, max_shard_size="20KB")
    else:
        oracle.save_pretrained(model_dir)
        state = load_file(model_dir / "model.safetensors")
        (model_dir / "model.safetensors").unlink()
        keys = sorted(state)
        shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
                  "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
        for shard, names in shards.items():
            save_file({k: state[k] for k in names}, model_dir / shard, metadata={"format": "pt"})
        index = {"metadata": {}, "weight_map": {k: shard for shard, names in shards.items() for k in names}}
        (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    assert not (model_dir / "model.safetensors").exists()
    assert len(set(index["weight_map"].values())) >= 2

    model = BertForMaskedLM.from_pretrained(model_dir)
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    ids, mask, types = batch()
    assert_close(model(ids, mask, types).logits, oracle(ids, attention_mask=mask, token_type_ids=types).logits,
                 rtol=0, atol=1e-5)


def test_sharded_index_errors(tmp_path):
    model_dir = write_config(tmp_path / "m")
    index = model_dir / "model.safetensors.index.json"
    index.write_text("{}")
    with pytest.raises(CheckpointError, match="not a valid safetensors index") as info:
        BertModel.from_pretrained(model_dir)
    assert str(index) in str(info.value)
    index.write_text(json.dumps({"weight_map": {"embeddings.word_embeddings.weight": "model-00001.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="model-00001.safetensors: weight file is missing"):
        BertModel.from_pretrained(model_dir)


# ---------------------------------------------------------------- tied weights, both directions


@pytest.mark.parametrize("name", ["BertForMaskedLM", "BertForPreTraining"])
def test_tied_decoder_is_one_parameter(tmp_path, name):
    bertkit_model(name, seed=7).save_pretrained(tmp_path / "m")
    keys = set(load_file(tmp_path / "m" / "model.safetensors"))
    assert "cls.predictions.decoder.weight" not in keys
    assert "bert.embeddings.word_embeddings.weight" in keys and "cls.predictions.bias" in keys
    for dtype in (None, torch.float16):
        model = getattr(bertkit, name).from_pretrained(tmp_path / "m", dtype=dtype)
        assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
        assert model.load_report.missing == [] and model.load_report.unexpected == []


@pytest.mark.parametrize("name", HEADS)
def test_transformers_loads_bertkit_save_cleanly(tmp_path, name):
    ours = bertkit_model(name, seed=8)
    ours.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architectures"] == [name] and config["model_type"] == "bert"
    theirs, info = getattr(transformers, name).from_pretrained(tmp_path / "m", output_loading_info=True)
    assert list(info["missing_keys"]) == []
    assert list(info["unexpected_keys"]) == []
    assert list(info.get("mismatched_keys", [])) == []
    theirs.eval()
    ids, mask, types = batch(choices=2 if name == "BertForMultipleChoice" else None)
    a = ours(ids, mask, types)
    b = theirs(ids, attention_mask=mask, token_type_ids=types)
    for field in ("last_hidden_state", "pooler_output", "logits", "prediction_logits", "seq_relationship_logits",
                  "start_logits", "end_logits"):
        if getattr(a, field, None) is not None:
            assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", HEADS)
def test_bertkit_loads_transformers_save_cleanly(tmp_path, name):
    theirs = hf_model(name, seed=9)
    theirs.save_pretrained(tmp_path / "m")
    ours = getattr(bertkit, name).from_pretrained(tmp_path / "m")
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    ids, mask, types = batch(choices=2 if name == "BertForMultipleChoice" else None)
    a = ours(ids, mask, types)
    b = theirs(ids, attention_mask=mask, token_type_ids=types)
    field = {"BertModel": "last_hidden_state", "BertForPreTraining": "prediction_logits",
             "BertForQuestionAnswering": "start_logits"}.get(name, "logits")
    assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- atomic saves


def test_save_keeps_user_files_and_drops_stale_weights(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "notes.txt").write_text("my notes\n")
    (model_dir / "sub").mkdir()
    (model_dir / "sub" / "extra.json").write_text("{}")
    torch.save(bertkit_model(seed=10).state_dict(), model_dir / "pytorch_model.bin")
    (model_dir / "config.json").write_text("{}")

    new = bertkit_model(seed=11)
    new.save_pretrained(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "model.safetensors", "notes.txt", "sub"]
    assert (model_dir / "notes.txt").read_text() == "my notes\n"
    assert (model_dir / "sub" / "extra.json").read_text() == "{}"
    assert json.loads((model_dir / "config.json").read_text())["hidden_size"] == 32
    assert_same_tensors(load_file(model_dir / "model.safetensors"), new.state_dict())
    assert_same_tensors(BertModel.from_pretrained(model_dir).state_dict(), new.state_dict())
    assert leftovers(tmp_path) == []


def test_save_over_a_sharded_checkpoint_drops_the_stale_shards(tmp_path):
    model_dir = tmp_path / "m"
    hf_model("BertModel", seed=21).save_pretrained(model_dir, max_shard_size="20KB")
    shards = sorted(p.name for p in model_dir.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2
    (model_dir / "README.md").write_text("model card")
    new = bertkit_model(seed=22)
    new.save_pretrained(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert_same_tensors(BertModel.from_pretrained(model_dir).state_dict(), new.state_dict())


def test_failed_save_leaves_previous_directory_untouched(tmp_path, monkeypatch):
    model_dir = tmp_path / "m"
    bertkit_model(seed=12).save_pretrained(model_dir)
    (model_dir / "notes.txt").write_text("keep me")
    before = snapshot(model_dir)

    def failing_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial" * 100)
        raise OSError("No space left on device")

    monkeypatch.setattr(bertkit.checkpoint, "save_file", failing_save_file)
    with pytest.raises(OSError, match="No space left"):
        bertkit_model(seed=13).save_pretrained(model_dir)
    assert snapshot(model_dir) == before
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]

    with pytest.raises(OSError, match="No space left"):  # a first save that fails leaves nothing at all
        bertkit_model(seed=13).save_pretrained(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_save_onto_a_regular_file_is_refused(tmp_path):
    file = tmp_path / "model"
    file.write_bytes(b"do not touch")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        bertkit_model().save_pretrained(file)
    assert file.read_bytes() == b"do not touch"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_creates_missing_parents_and_round_trips_exactly(tmp_path):
    model = bertkit_model("BertForSequenceClassification", seed=14, id2label={0: "neg", 1: "neu", 2: "pos"})
    target = tmp_path / "a" / "b" / "model"
    assert model.save_pretrained(target) == target
    again = BertForSequenceClassification.from_pretrained(target)
    assert again.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert_same_tensors(again.state_dict(), model.state_dict())
    ids, mask, types = batch()
    assert torch.equal(again(ids, mask, types).logits, model(ids, mask, types).logits)


# ---------------------------------------------------------------- dtype, device, mode, overrides


def test_from_pretrained_dtype(tmp_path):
    model = bertkit_model("BertForMaskedLM", seed=15)
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "float32"
    half = BertForMaskedLM.from_pretrained(tmp_path / "m", dtype=torch.float16, device="cpu")
    assert {p.dtype for p in half.parameters()} == {torch.float16}
    assert half.device == torch.device("cpu")
    for key, tensor in half.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[key].half()), key


def test_fp16_checkpoint_loads_as_fp32_by_default(tmp_path):
    model = bertkit_model("BertModel", seed=16).half()
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "float16"
    assert {t.dtype for t in load_file(tmp_path / "m" / "model.safetensors").values()} == {torch.float16}
    loaded = BertModel.from_pretrained(tmp_path / "m")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[key].float()), key
    bf16 = BertModel.from_pretrained(tmp_path / "m", dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def test_stale_torch_dtype_is_not_written_back(tmp_path):
    """A transformers 4.x config.json says torch_dtype; after a save in another dtype it must not contradict dtype."""
    model_dir = tmp_path / "m"
    bertkit_model(seed=20).half().save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["torch_dtype"] = config.pop("dtype")
    (model_dir / "config.json").write_text(json.dumps(config))
    BertModel.from_pretrained(model_dir).save_pretrained(tmp_path / "fp32")  # loads as float32
    saved = json.loads((tmp_path / "fp32" / "config.json").read_text())
    assert saved["dtype"] == "float32"
    assert saved.get("torch_dtype", "float32") == "float32"


def test_returned_in_eval_mode(tmp_path):
    model = bertkit_model("BertForSequenceClassification", seed=17, hidden_dropout_prob=0.5,
                          attention_probs_dropout_prob=0.5)
    model.save_pretrained(tmp_path / "m")
    loaded = BertForSequenceClassification.from_pretrained(tmp_path / "m")
    assert not any(m.training for m in loaded.modules())
    ids, mask, types = batch()
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask, types).logits, loaded(ids, mask, types).logits)
        assert torch.equal(loaded(ids, mask, types).logits, model(ids, mask, types).logits)


def test_num_labels_override_on_encoder_checkpoint(tmp_path):
    source = bertkit_model("BertModel", seed=18)
    source.save_pretrained(tmp_path / "m")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "m", num_labels=5)
    assert model.config.num_labels == 5
    assert model.config.id2label == {i: f"LABEL_{i}" for i in range(5)}
    assert tuple(model.classifier.weight.shape) == (5, 32)
    ids, mask, types = batch()
    assert model(ids, mask, types).logits.shape == (3, 5)
    assert_same_tensors(model.bert.state_dict(), source.state_dict())
    model.save_pretrained(tmp_path / "five")
    saved = json.loads((tmp_path / "five" / "config.json").read_text())
    assert len(saved["id2label"]) == 5 and "num_labels" not in saved
    # A checkpoint whose classifier has another size is refused, not silently re-initialised.
    with pytest.raises(CheckpointError, match=r"'classifier.(weight|bias)' has shape \(5,( 32)?\).*\(3,( 32)?\)"):
        BertForSequenceClassification.from_pretrained(tmp_path / "five", num_labels=3)


def test_attn_implementation_override(tmp_path):
    source = bertkit_model("BertModel", seed=19)
    source.save_pretrained(tmp_path / "m")
    eager = BertModel.from_pretrained(tmp_path / "m", attn_implementation="eager")
    sdpa = BertModel.from_pretrained(tmp_path / "m")
    assert (eager.config.attn_implementation, sdpa.config.attn_implementation) == ("eager", "sdpa")
    ids, mask, types = batch()
    assert_close(eager(ids, mask, types).last_hidden_state, sdpa(ids, mask, types).last_hidden_state, rtol=0, atol=1e-5)
    eager.save_pretrained(tmp_path / "eager")
    assert "attn_implementation" not in json.loads((tmp_path / "eager" / "config.json").read_text())
    with pytest.raises(ConfigError, match="attn_implementation='flash'"):
        BertModel.from_pretrained(tmp_path / "m", attn_implementation="flash")


def test_a_complete_checkpoint_loads_without_initialising_and_a_new_head_as_before(tmp_path: Path) -> None:
    torch.manual_seed(0)
    BertForPreTraining(tiny()).save_pretrained(tmp_path / "pre")
    state = torch.get_rng_state()
    model = BertForPreTraining.from_pretrained(tmp_path / "pre", dtype=torch.float64)
    assert torch.equal(torch.get_rng_state(), state)  # every weight came from the file: no random draws
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight  # still tied
    assert not any(t.is_meta for t in model.state_dict().values()) and model.dtype == torch.float64
    assert all(p.requires_grad for p in model.parameters()) and not model.load_report.missing
    for name, tensor in load_file(tmp_path / "pre" / "model.safetensors").items():
        assert torch.equal(model.state_dict()[name], tensor.double()), name
    # A new head is initialised from the same draws as a model built by hand, then loaded.
    torch.manual_seed(5)
    loaded = BertForSequenceClassification.from_pretrained(tmp_path / "pre", num_labels=3)
    torch.manual_seed(5)
    by_hand = BertForSequenceClassification(tiny(num_labels=3))
    assert torch.equal(loaded.classifier.weight, by_hand.classifier.weight)
    assert loaded.load_report.missing == ["classifier.weight", "classifier.bias"]


def test_loading_a_complete_checkpoint_does_not_import_torch_dynamo(tmp_path: Path) -> None:
    # torch's meta-device normal_ imports torch._dynamo (2 s): the meta build must skip it.
    BertModel(tiny()).save_pretrained(tmp_path / "m")
    check = ("import sys; from bertkit import BertModel; BertModel.from_pretrained(sys.argv[1]); "
             "print('torch._dynamo' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", check, str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
