"""Loading refuses what does not match, naming the first differences (issue: nothing silent): a config.json
with fewer or more layers than the weights, an encoder part missing or extra, a tokenizer larger than the
model's vocabulary, a malformed id2label. Only a task head may be new or left over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import bertkit
from bertkit.cli import main
from conftest import tiny_config


def saved(tmp_path: Path, **config) -> Path:
    torch.manual_seed(0)
    bertkit.BertForSequenceClassification(tiny_config(num_hidden_layers=4, **config)).save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_fewer_layers_in_config_than_in_the_weights_is_refused(tmp_path: Path) -> None:
    model_dir = saved(tmp_path)
    edit_config(model_dir, num_hidden_layers=3)
    with pytest.raises(bertkit.CheckpointError, match=r"config.json does not match the weights: the weights have 16 "
                       r"encoder tensors the model lacks \(bert.encoder.layer.3.*num_hidden_layers=3, the weights "
                       r"hold 4 layers"):
        bertkit.AutoModelForSequenceClassification.from_pretrained(model_dir)


def test_more_layers_in_config_than_in_the_weights_is_refused(tmp_path: Path) -> None:
    model_dir = saved(tmp_path)
    edit_config(model_dir, num_hidden_layers=6)
    with pytest.raises(bertkit.CheckpointError, match=r"the model has 32 encoder tensors the weights lack "
                       r"\(encoder.layer.4.*num_hidden_layers=6, the weights hold 4 layers"):
        bertkit.BertModel.from_pretrained(model_dir)


def test_an_encoder_part_missing_from_the_weights_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    electra = bertkit.EncoderModel(bertkit.EncoderConfig(model_type="electra", vocab_size=99, hidden_size=32,
                                                         embedding_size=16, num_hidden_layers=1, num_attention_heads=4,
                                                         intermediate_size=37))
    electra.save_pretrained(tmp_path / "e")
    weights = tmp_path / "e" / "model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if "embeddings_project" not in k}, weights)
    with pytest.raises(bertkit.CheckpointError, match=r"the model has 2 encoder tensors the weights lack "
                       r"\(embeddings_project.weight, embeddings_project.bias\)"):
        bertkit.AutoModel.from_pretrained(tmp_path / "e")


def test_a_new_head_and_another_heads_weights_are_fine(tmp_path: Path, caplog) -> None:
    model_dir = saved(tmp_path)
    model = bertkit.BertForQuestionAnswering.from_pretrained(model_dir)  # qa_outputs new, the classifier unused
    assert model.load_report.missing == ["qa_outputs.weight", "qa_outputs.bias"]
    assert {"classifier.weight", "bert.pooler.dense.weight"} <= set(model.load_report.unexpected)


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    edit_dir = tmp_path / "small-vocab"
    tokenizer = bertkit.Tokenizer.from_pretrained(tiny_dir)
    tokens = tokenizer.vocab_size
    bertkit.BertForMaskedLM(tiny_config(vocab_size=tokens - 3)).save_pretrained(edit_dir, tokenizer=tokenizer)
    assert main(["fill-mask", str(edit_dir), "the cat [MASK] on the mat"]) == 2
    err = capsys.readouterr().err
    assert f"the tokenizer has {tokens} tokens but the model's vocab_size is {tokens - 3} (config.json)" in err


def test_a_tokenizer_far_smaller_than_the_vocabulary_is_warned_about(tiny_dir: Path, tmp_path: Path, caplog) -> None:
    bigger = tmp_path / "bigger"
    bertkit.BertForMaskedLM(tiny_config(vocab_size=1000)).save_pretrained(
        bigger, tokenizer=bertkit.Tokenizer.from_pretrained(tiny_dir))
    bertkit.checkpoint.model_tokenizer(bigger)
    assert "is it this model's tokenizer?" in caplog.text


@pytest.mark.parametrize("value", [["neg", "pos"], "neg,pos", 3])
def test_a_malformed_id2label_is_a_message(tmp_path: Path, value, capsys) -> None:
    model_dir = saved(tmp_path)
    edit_config(model_dir, id2label=value)
    assert main(["info", str(model_dir)]) == 2
    assert "config.json: id2label must be an object (id -> label name), got" in capsys.readouterr().err
