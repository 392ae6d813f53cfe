"""Parity with transformers (the oracle), both directions, for every head and several configs."""

from __future__ import annotations

import random

import pytest
import torch
from torch.testing import assert_close

import bertkit
from conftest import HEADS, hf_config, random_batch, tiny_config

transformers = pytest.importorskip("transformers")

ACTIVATIONS = ["gelu", "gelu_new", "relu", "gelu_pytorch_tanh", "silu", "gelu_fast", "quick_gelu", "mish"]


def random_configs(n: int = 4) -> list[bertkit.BertConfig]:
    """Vary every size field, the activation, LayerNorm epsilon, segment count and pad id."""
    rng = random.Random(1234)
    configs = []
    for i in range(n):
        heads = rng.choice([1, 2, 4])
        vocab = rng.randint(40, 130)
        configs.append(bertkit.BertConfig(
            vocab_size=vocab,
            hidden_size=heads * rng.choice([4, 8, 12]),
            num_hidden_layers=rng.randint(1, 3),
            num_attention_heads=heads,
            intermediate_size=rng.randint(5, 70),
            hidden_act=ACTIVATIONS[(2 * i + rng.randint(0, 1)) % len(ACTIVATIONS)],
            layer_norm_eps=rng.choice([1e-12, 1e-6, 1e-5]),
            type_vocab_size=rng.randint(1, 4),
            pad_token_id=rng.choice([0, 1, vocab - 1]),
            max_position_embeddings=rng.choice([16, 40]),
            num_labels=rng.randint(2, 5),
        ))
    return configs


CONFIGS = random_configs()


def outputs_of(out) -> dict[str, torch.Tensor]:
    names = ("last_hidden_state", "pooler_output", "logits", "prediction_logits", "seq_relationship_logits",
             "start_logits", "end_logits", "loss")
    return {n: getattr(out, n) for n in names if getattr(out, n, None) is not None}


def inputs_for(head: str, config: bertkit.BertConfig, seed: int = 0):
    choices = 3 if head == "BertForMultipleChoice" else None
    return random_batch(config, batch=4, seq=9, seed=seed, choices=choices)


def assert_same_outputs(ours, theirs, attention_mask: torch.Tensor) -> None:
    got, want = outputs_of(ours), outputs_of(theirs)
    assert set(want) <= set(got) | {"loss"}, (set(want), set(got))
    for name, expected in want.items():
        assert_close(got[name], expected, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("config_index", range(len(CONFIGS)))
@pytest.mark.parametrize("head", HEADS)
def test_loads_what_transformers_saved(head: str, config_index: int, tmp_path) -> None:
    config = CONFIGS[config_index]
    if head == "BertForQuestionAnswering":
        config = config.replace(num_labels=2)  # transformers sizes qa_outputs by num_labels
    torch.manual_seed(config_index)
    theirs = getattr(transformers, head)(hf_config(config)).eval()
    theirs.save_pretrained(tmp_path)
    ours = getattr(bertkit, head).from_pretrained(tmp_path)
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    ids, mask, types = inputs_for(head, config, seed=config_index)
    with torch.no_grad():
        assert_same_outputs(ours(ids, mask, types), theirs(input_ids=ids, attention_mask=mask, token_type_ids=types), mask)


@pytest.mark.parametrize("config_index", range(len(CONFIGS)))
@pytest.mark.parametrize("head", HEADS)
def test_transformers_loads_what_bertkit_saved(head: str, config_index: int, tmp_path) -> None:
    config = CONFIGS[config_index]
    if head == "BertForQuestionAnswering":
        config = config.replace(num_labels=2)
    torch.manual_seed(100 + config_index)
    ours = getattr(bertkit, head)(config).eval()
    ours.save_pretrained(tmp_path / "model")
    theirs, info = getattr(transformers, head).from_pretrained(tmp_path / "model", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids, mask, types = inputs_for(head, config, seed=config_index)
    with torch.no_grad():
        assert_same_outputs(ours(ids, mask, types), theirs.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types), mask)


def _pair(head: str, config: bertkit.BertConfig, tmp_path):
    torch.manual_seed(7)
    theirs = getattr(transformers, head)(hf_config(config)).eval()
    theirs.save_pretrained(tmp_path)
    return getattr(bertkit, head).from_pretrained(tmp_path), theirs


LABELS = {
    "masked_lm": ("BertForMaskedLM", {}),
    "pretraining": ("BertForPreTraining", {}),
    "single_label": ("BertForSequenceClassification", {"num_labels": 3}),
    "multi_label": ("BertForSequenceClassification", {"num_labels": 3}),
    "regression": ("BertForSequenceClassification", {"num_labels": 1}),
    "multi_regression": ("BertForSequenceClassification", {"num_labels": 2, "problem_type": "regression"}),
    "token": ("BertForTokenClassification", {"num_labels": 5}),
    "qa": ("BertForQuestionAnswering", {}),
    "multiple_choice": ("BertForMultipleChoice", {}),
}


def _labels(case: str, config: bertkit.BertConfig, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    batch = ids.size(0)
    if case in ("masked_lm", "pretraining"):
        labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, torch.full_like(ids, -100))
        extra = {"next_sentence_label": torch.randint(0, 2, (batch,), generator=g)} if case == "pretraining" else {}
        return {"labels": labels, **extra}
    if case == "single_label":
        return {"labels": torch.randint(0, 3, (batch,), generator=g)}
    if case == "multi_label":
        return {"labels": torch.randint(0, 2, (batch, 3), generator=g).float()}
    if case == "regression":
        return {"labels": torch.randn(batch, generator=g)}
    if case == "multi_regression":
        return {"labels": torch.randn(batch, 2, generator=g)}
    if case == "token":
        return {"labels": torch.randint(0, 5, ids.shape, generator=g).masked_fill(mask == 0, -100)}
    if case == "qa":  # the last row's answer lies outside the sequence: ignored, as in transformers
        return {"start_positions": torch.tensor([1, 2, 0, 40]), "end_positions": torch.tensor([3, 2, 0, 41])}
    return {"labels": torch.randint(0, 3, (batch,), generator=g)}


@pytest.mark.parametrize("case", LABELS)
def test_losses_and_gradients_match(case: str, tmp_path) -> None:
    head, overrides = LABELS[case]
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides)
    ours, theirs = _pair(head, config, tmp_path)
    ids, mask, types = inputs_for(head, config)
    labels = _labels(case, config, ids, mask)
    ours.train(), theirs.train()
    loss_ours = ours(ids, mask, types, **labels).loss
    loss_theirs = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, **labels).loss
    assert_close(loss_ours, loss_theirs, atol=1e-6, rtol=1e-5)
    loss_ours.backward(), loss_theirs.backward()
    grads_theirs = {n: p.grad for n, p in theirs.named_parameters() if p.grad is not None}
    for name, param in ours.named_parameters():
        assert_close(param.grad, grads_theirs[name], atol=1e-6, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_hidden_states_and_attentions_match(tmp_path) -> None:
    config = tiny_config(num_hidden_layers=3)
    torch.manual_seed(0)
    theirs = transformers.BertModel(hf_config(config, attn_implementation="eager")).eval()
    theirs.save_pretrained(tmp_path)
    ours = bertkit.BertModel.from_pretrained(tmp_path)
    ids, mask, types = random_batch(config)
    with torch.no_grad():
        got = ours(ids, mask, types, output_hidden_states=True, output_attentions=True)
        want = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True,
                      output_attentions=True)
    assert len(got.hidden_states) == 4 and len(got.attentions) == 3
    for a, b in zip(got.hidden_states, want.hidden_states):
        assert_close(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(got.attentions, want.attentions):
        assert_close(a, b, atol=1e-6, rtol=1e-5)
    # Probabilities over real keys sum to one; padded keys get none.
    probs = got.attentions[0]
    assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))
    assert probs.masked_select(mask[:, None, None, :] == 0).abs().max() == 0


def test_default_token_types_and_no_mask_match(tmp_path) -> None:
    config = tiny_config()
    ours, theirs = _pair("BertModel", config, tmp_path)
    ids = random_batch(config)[0]
    with torch.no_grad():
        assert_close(ours(ids).last_hidden_state, theirs(input_ids=ids).last_hidden_state, atol=1e-5, rtol=1e-5)
