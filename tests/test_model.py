"""Properties of the encoder that hold whatever the weights: padding, kernels, determinism, init."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from bertkit import BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, BertModel
from conftest import random_batch, tiny_config


@pytest.fixture
def model() -> BertModel:
    torch.manual_seed(0)
    return BertModel(tiny_config()).eval()


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_sequence_alone_equals_itself_inside_padded_batch(kernel: str) -> None:
    torch.manual_seed(0)
    model = BertModel(tiny_config(attn_implementation=kernel)).eval()
    ids, mask, types = random_batch(model.config, batch=4, seq=9)
    with torch.no_grad():
        batched = model(ids, mask, types)
        for row in range(ids.size(0)):
            n = int(mask[row].sum())
            alone = model(ids[row:row + 1, :n], mask[row:row + 1, :n], types[row:row + 1, :n])
            assert_close(batched.last_hidden_state[row, :n], alone.last_hidden_state[0], atol=1e-5, rtol=1e-5)
            assert_close(batched.pooler_output[row], alone.pooler_output[0], atol=1e-5, rtol=1e-5)


def test_padding_token_values_do_not_matter(model: BertModel) -> None:
    ids, mask, types = random_batch(model.config, batch=4, seq=9)
    garbage = torch.randint(0, model.config.vocab_size, ids.shape)
    other_ids = torch.where(mask.bool(), ids, garbage)
    other_types = torch.where(mask.bool(), types, torch.ones_like(types))
    with torch.no_grad():
        a = model(ids, mask, types).last_hidden_state
        b = model(other_ids, mask, other_types).last_hidden_state
    real = mask.bool()
    assert not torch.equal(ids, other_ids)
    assert_close(a[real], b[real], atol=1e-6, rtol=1e-6)


def test_eager_and_sdpa_agree(model: BertModel) -> None:
    ids, mask, types = random_batch(model.config, batch=4, seq=9)
    with torch.no_grad():
        sdpa = model(ids, mask, types).last_hidden_state
        model.config.attn_implementation = "eager"
        eager = model(ids, mask, types).last_hidden_state
    assert_close(sdpa, eager, atol=1e-6, rtol=1e-5)


def test_eval_is_deterministic_and_train_uses_dropout(model: BertModel) -> None:
    ids, mask, types = random_batch(model.config)
    with torch.no_grad():
        assert torch.equal(model(ids, mask, types).last_hidden_state, model(ids, mask, types).last_hidden_state)
        model.train()
        assert not torch.equal(model(ids, mask, types).last_hidden_state, model(ids, mask, types).last_hidden_state)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)
    torch.manual_seed(0)
    plain = BertForSequenceClassification(config).train()
    recomputed = BertForSequenceClassification(config.replace()).train()
    recomputed.load_state_dict(plain.state_dict())
    recomputed.gradient_checkpointing_enable()
    ids, mask, types = random_batch(config)
    labels = torch.tensor([0, 2, 1])
    for m in (plain, recomputed):
        m(ids, mask, types, labels=labels).loss.backward()
    assert recomputed.config.gradient_checkpointing and not plain.config.gradient_checkpointing
    for (name, a), b in zip(plain.named_parameters(), recomputed.parameters()):
        assert_close(a.grad, b.grad, atol=1e-7, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def test_initialisation_follows_bert() -> None:
    torch.manual_seed(0)
    config = tiny_config(hidden_size=64, vocab_size=500, initializer_range=0.05, pad_token_id=3)
    model = BertForPreTraining(config)
    query = model.bert.encoder.layer[0].attention.self.query
    assert abs(query.weight.std().item() - 0.05) < 0.005
    assert torch.count_nonzero(query.bias) == 0
    words = model.bert.embeddings.word_embeddings.weight
    assert abs(words.std().item() - 0.05) < 0.005
    assert torch.count_nonzero(words[3]) == 0  # the pad row
    norm = model.bert.encoder.layer[1].output.LayerNorm
    assert torch.equal(norm.weight, torch.ones(64)) and torch.equal(norm.bias, torch.zeros(64))
    assert torch.count_nonzero(model.cls.predictions.bias) == 0
    assert model.cls.predictions.decoder.weight is words  # tied


def test_untied_decoder_is_its_own_parameter() -> None:
    model = BertForMaskedLM(tiny_config(tie_word_embeddings=False))
    assert model.cls.predictions.decoder.weight is not model.bert.embeddings.word_embeddings.weight
    tied = BertForMaskedLM(tiny_config())
    # the tied matrix counts once
    assert model.num_parameters() - tied.num_parameters() == 99 * 32


def test_padding_row_gets_no_gradient() -> None:
    model = BertModel(tiny_config(pad_token_id=0)).train()
    ids, mask, types = random_batch(model.config)
    model(ids, mask, types).last_hidden_state.sum().backward()
    grad = model.embeddings.word_embeddings.weight.grad
    assert torch.count_nonzero(grad[0]) == 0 and torch.count_nonzero(grad) > 0


def test_too_long_sequence_is_a_clear_error(model: BertModel) -> None:
    ids = torch.ones(1, 65, dtype=torch.long)
    with pytest.raises(ValueError, match="65 tokens is longer than max_position_embeddings=64"):
        model(ids)
