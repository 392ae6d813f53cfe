"""The unpadded encoder: pad/unpad round trips, and unpadded ≡ padded for every head (values, losses, gradients)."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import bertkit
import bertkit.model
from bertkit.attention import _flash_varlen_runs
from bertkit.unpad import pad, unpad, unpad_input
from conftest import HEADS, hf_config, random_batch, tiny_config

MASKS = {
    "mixed_with_length_1": [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]],
    "one_sequence": [[1, 1, 0]],
    "no_padding": [[1, 1], [1, 1]],
    "left_padding": [[0, 0, 1, 1], [1, 1, 1, 1]],
    "holes_and_an_empty_row": [[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]],
}


@pytest.mark.parametrize("name", MASKS)
def test_unpad_input_finds_the_real_tokens(name: str) -> None:
    mask = torch.tensor(MASKS[name])
    u = unpad_input(mask)
    lengths = mask.sum(1)
    assert u.cu_seqlens.dtype == torch.int32  # what flash-attn's varlen kernels take
    assert u.cu_seqlens.tolist() == [0, *lengths.cumsum(0).tolist()]
    assert u.max_seqlen == int(lengths.max()) and (u.batch, u.seqlen) == tuple(mask.shape)
    assert u.indices.tolist() == [i for i, real in enumerate(mask.flatten().tolist()) if real]


@pytest.mark.parametrize("name", MASKS)
def test_pad_and_unpad_round_trip(name: str) -> None:
    mask = torch.tensor(MASKS[name])
    u = unpad_input(mask)
    x = torch.randn(*mask.shape, 3, 2)
    packed = unpad(x, u)  # (N, 3, 2)
    assert torch.equal(packed, x[mask.bool()])
    assert torch.equal(unpad(pad(packed, u), u), packed)
    assert torch.equal(pad(packed, u), x * mask[..., None, None])  # zeros at padding
    assert torch.equal(pad(packed, u, fill=-1.0)[mask == 0], torch.full((int((mask == 0).sum()), 3, 2), -1.0))
    ids = torch.arange(mask.numel()).view(mask.shape)  # integer tensors (token ids) too
    assert torch.equal(pad(unpad(ids, u), u), ids * mask)


def test_pad_and_unpad_are_differentiable() -> None:
    u = unpad_input(torch.tensor(MASKS["mixed_with_length_1"]))
    x = torch.randn(3, 4, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pad(unpad(t, u), u, fill=5.0), (x,))
    packed = torch.randn(u.num_tokens, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: unpad(pad(t, u), u), (packed,))


def _targets(head: str, config: bertkit.BertConfig, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Labels for the head's loss, on real tokens only (-100 at padding, as collators write)."""
    g = torch.Generator().manual_seed(5)
    batch = ids.size(0)
    if head in ("BertForMaskedLM", "BertForPreTraining"):
        picked = (torch.rand(ids.shape, generator=g) < 0.4) & mask.bool()
        labels = torch.where(picked, ids, torch.full_like(ids, -100))
        if head == "BertForPreTraining":
            return {"labels": labels, "next_sentence_label": torch.randint(0, 2, (batch,), generator=g)}
        return {"labels": labels}
    if head == "BertForTokenClassification":
        return {"labels": torch.randint(0, config.num_labels, ids.shape, generator=g).masked_fill(mask == 0, -100)}
    if head == "BertForQuestionAnswering":
        return {"start_positions": torch.randint(0, ids.size(1), (batch,), generator=g),
                "end_positions": torch.randint(0, ids.size(1), (batch,), generator=g)}
    if head in ("BertForSequenceClassification", "BertForMultipleChoice"):
        classes = 3 if head == "BertForMultipleChoice" else config.num_labels  # 3 choices per example
        return {"labels": torch.randint(0, classes, (batch,), generator=g)}
    return {}


def _run(model: torch.nn.Module, unpad_flag: bool, inputs, targets: dict[str, torch.Tensor]):
    """Forward with `config.unpad` set, a scalar to differentiate, and the parameter gradients."""
    model.config.unpad = unpad_flag
    model.zero_grad()
    out = model(*inputs, **targets, output_hidden_states=True)
    if targets:
        scalar = out.loss
    else:  # the bare encoder has no loss: weigh every real output value differently
        w = torch.linspace(-1, 1, out.last_hidden_state.numel()).view_as(out.last_hidden_state) * inputs[1][..., None]
        scalar = (out.last_hidden_state * w).sum() + out.pooler_output.square().sum()
    scalar.backward()
    return out, scalar, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _real(output: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """A per-token output's values at real positions (padding's mean nothing); any other output whole."""
    return output[real] if output.shape[:real.dim()] == real.shape else output


@pytest.fixture
def count_unpadded_calls(monkeypatch) -> list[int]:
    """How many forward passes took the unpadded path (so a test cannot pass by never taking it)."""
    calls: list[int] = []

    def counting(mask: torch.Tensor):
        calls.append(1)
        return unpad_input(mask)

    monkeypatch.setattr(bertkit.model, "unpad_input", counting)
    return calls


@pytest.mark.parametrize("head", HEADS)
def test_unpadded_equals_padded_for_every_head(head: str, count_unpadded_calls: list[int]) -> None:
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)
    torch.manual_seed(0)
    model = getattr(bertkit, head)(config).train()
    inputs = random_batch(config, batch=4, seq=9, choices=3 if head == "BertForMultipleChoice" else None)
    if head == "BertForQuestionAnswering":  # its loss is a softmax over every position, padding included,
        inputs = (inputs[0][:, :5], torch.ones_like(inputs[1][:, :5]), inputs[2][:, :5])  # so compare it unpadded
    targets = _targets(head, config, inputs[0], inputs[1])
    real = inputs[1].bool()
    padded_out, padded_scalar, padded_grads = _run(model, False, inputs, targets)
    assert count_unpadded_calls == []
    unpadded_out, unpadded_scalar, unpadded_grads = _run(model, True, inputs, targets)
    assert count_unpadded_calls == [1]

    assert_close(unpadded_scalar, padded_scalar, atol=1e-5, rtol=1e-5)
    for name, value in vars(padded_out).items():
        if isinstance(value, torch.Tensor):
            assert_close(_real(getattr(unpadded_out, name), real), _real(value, real), atol=1e-5, rtol=1e-5,
                         msg=lambda m: f"{name}: {m}")
    flat_real = real.flatten(0, -2)  # hidden states are per (B·choices, T)
    for a, b in zip(unpadded_out.hidden_states, padded_out.hidden_states, strict=True):
        assert_close(a[flat_real], b[flat_real], atol=1e-5, rtol=1e-5)
    assert unpadded_grads.keys() == padded_grads.keys()
    for name, grad in padded_grads.items():
        assert_close(unpadded_grads[name], grad, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def test_unpadded_padding_positions_hold_zeros() -> None:
    model = bertkit.BertModel(tiny_config(unpad=True)).eval()
    ids, mask, types = random_batch(model.config, batch=4, seq=9)
    with torch.no_grad():
        out = model(ids, mask, types, output_hidden_states=True)
    for states in (out.last_hidden_state, *out.hidden_states):
        assert torch.count_nonzero(states[mask == 0]) == 0 and torch.count_nonzero(states[mask == 1]) > 0


@pytest.mark.parametrize("mask_name", ["left_padding", "holes_and_an_empty_row"])
def test_unusual_masks_give_the_same_outputs(mask_name: str) -> None:
    model = bertkit.BertModel(tiny_config()).eval()
    mask = torch.tensor(MASKS[mask_name])
    ids = torch.randint(1, model.config.vocab_size, mask.shape)
    with torch.no_grad():
        model.config.unpad = False
        a = model(ids, mask)
        model.config.unpad = True
        b = model(ids, mask)
    real = mask.bool()
    assert_close(b.last_hidden_state[real], a.last_hidden_state[real], atol=1e-5, rtol=1e-5)
    cls_is_real = real[:, 0]  # the pooler reads position 0, padding in some of these rows
    assert_close(b.pooler_output[cls_is_real], a.pooler_output[cls_is_real], atol=1e-5, rtol=1e-5)


def test_auto_unpads_only_batches_with_enough_padding(count_unpadded_calls: list[int]) -> None:
    model = bertkit.BertModel(tiny_config()).eval()
    assert model.config.unpad is None
    ids = torch.randint(1, 99, (4, 40))
    mask = (torch.arange(40) < torch.tensor([[40], [30], [10], [5]])).long()  # 75 padding positions
    with torch.no_grad():
        model(ids, mask)
        assert count_unpadded_calls == [1]
        model(ids[:, :10], mask[:, :10])  # 10 padding positions: no gain to be had
        model(ids, torch.ones_like(mask))  # nothing to remove
        model(ids)
        model(ids, mask, output_attentions=True)  # attention maps are (B, nH, T, T): padded
        model.config.unpad = False
        model(ids, mask)
        assert count_unpadded_calls == [1]
        model.config.unpad = True
        model(ids, torch.ones_like(mask))
        assert count_unpadded_calls == [1, 1]


@pytest.mark.parametrize("unpad", [False, True])
def test_inference_in_feed_forward_chunks_equals_the_whole_batch(unpad: bool, monkeypatch) -> None:
    model = bertkit.BertModel(tiny_config(unpad=unpad)).eval()
    ids, mask, types = random_batch(model.config, batch=6, seq=20)
    chunks: list[int] = []
    intermediate = model.encoder.layer[0].intermediate
    intermediate.register_forward_hook(lambda module, args, out: chunks.append(out.shape[0]))
    with torch.no_grad():
        whole = model(ids, mask, types, output_hidden_states=True)
        assert chunks == [int(mask.sum()) if unpad else ids.shape[0]]  # one call: unpadded (N, I), padded (B, T, I)
        chunks.clear()
        token_bytes = model.config.intermediate_size * 4
        monkeypatch.setattr(bertkit.model, "FEED_FORWARD_CHUNK_BYTES", 7 * token_bytes)  # 7 tokens a chunk
        chunked = model(ids, mask, types, output_hidden_states=True)
    tokens = int(mask.sum()) if unpad else ids.numel()
    assert chunks == [7] * (tokens // 7) + ([tokens % 7] if tokens % 7 else [])
    real = mask.bool()
    for a, b in zip(chunked.hidden_states, whole.hidden_states, strict=True):
        assert_close(a[real], b[real], atol=1e-6, rtol=1e-6)
    assert_close(chunked.pooler_output, whole.pooler_output, atol=1e-6, rtol=1e-6)


def test_compiled_encoder_layers_give_the_same_outputs(monkeypatch) -> None:
    from torch._dynamo.utils import counters

    from bertkit.infer import compile_encoder

    model = bertkit.BertForSequenceClassification(tiny_config(num_labels=2)).eval()
    # Batches big enough for eager feed-forward chunks, which a compiled layer must not unroll per batch size.
    monkeypatch.setattr(bertkit.model, "FEED_FORWARD_CHUNK_BYTES", 7 * model.config.intermediate_size * 4)
    batches = [random_batch(model.config, batch=b, seq=s, seed=b) for b, s in ((6, 40), (3, 11), (5, 30))]
    batches.append((batches[1][0], torch.ones_like(batches[1][1]), batches[1][2]))  # nothing padded
    with torch.no_grad():
        eager = [model(*batch).logits for batch in batches]
        torch._dynamo.reset()
        counters.clear()
        assert compile_encoder(model) is model
        compiled = [model(*batch).logits for batch in batches]
    # Unpadded, padded with a mask, padded without: the layers went through the compiler, once per kind at most.
    assert 2 <= counters["stats"]["unique_graphs"] <= 3, dict(counters["stats"])
    for a, b in zip(compiled, eager, strict=True):
        assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_training_keeps_the_feed_forward_whole(monkeypatch) -> None:
    model = bertkit.BertModel(tiny_config()).train()
    monkeypatch.setattr(bertkit.model, "FEED_FORWARD_CHUNK_BYTES", 1)
    shapes: list[torch.Size] = []
    model.encoder.layer[0].intermediate.register_forward_hook(lambda module, args, out: shapes.append(out.shape))
    ids, mask, types = random_batch(model.config, batch=3, seq=9)
    model(ids, mask, types).last_hidden_state.sum().backward()
    assert shapes == [torch.Size([3, 9, model.config.intermediate_size])]


def test_unpad_is_a_run_time_setting() -> None:
    config = tiny_config(unpad=True)
    assert "unpad" not in config.to_dict()
    assert bertkit.BertConfig.from_dict({**config.to_dict(), "unpad": True}).unpad is None
    with pytest.raises(bertkit.ConfigError, match="unpad"):
        tiny_config(unpad="yes")


def test_training_with_dropout_is_finite_and_random() -> None:
    torch.manual_seed(0)
    config = tiny_config(num_labels=3, unpad=True, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.5)
    model = bertkit.BertForTokenClassification(config).train()
    ids, mask, types = random_batch(config, batch=4, seq=9)
    labels = torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)
    losses = [model(ids, mask, types, labels=labels).loss for _ in range(2)]
    assert all(torch.isfinite(loss) for loss in losses) and losses[0] != losses[1]
    losses[0].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_attention_dropout_applies_on_the_unpadded_path() -> None:
    torch.manual_seed(0)
    config = tiny_config(unpad=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.5)
    model = bertkit.BertModel(config).train()
    ids, mask, types = random_batch(config, batch=4, seq=9)
    with torch.no_grad():
        assert not torch.equal(model(ids, mask, types).last_hidden_state, model(ids, mask, types).last_hidden_state)


def test_gradient_checkpointing_on_the_unpadded_path(count_unpadded_calls: list[int]) -> None:
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)
    torch.manual_seed(0)
    model = bertkit.BertForSequenceClassification(config).train()
    inputs, targets = random_batch(config), {"labels": torch.tensor([0, 2, 1])}
    _, _, padded_grads = _run(model, False, inputs, targets)
    model.gradient_checkpointing_enable()
    _, _, recomputed_grads = _run(model, True, inputs, targets)
    assert count_unpadded_calls == [1]
    for name, grad in padded_grads.items():
        assert_close(recomputed_grads[name], grad, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def test_unpadded_bert_model_matches_transformers_on_real_positions(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    config = tiny_config(num_hidden_layers=3)
    torch.manual_seed(0)
    theirs = transformers.BertModel(hf_config(config)).eval()
    theirs.save_pretrained(tmp_path)
    ours = bertkit.BertModel.from_pretrained(tmp_path)
    ours.config.unpad = True
    ids, mask, types = random_batch(config, batch=4, seq=9)
    with torch.no_grad():
        got = ours(ids, mask, types, output_hidden_states=True)
        want = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    real = mask.bool()
    assert_close(got.last_hidden_state[real], want.last_hidden_state[real], atol=1e-5, rtol=1e-5)
    assert_close(got.pooler_output, want.pooler_output, atol=1e-5, rtol=1e-5)
    for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
        assert_close(a[real], b[real], atol=1e-5, rtol=1e-5)


def _half_precision_padded_and_unpadded(device: str, dtype: torch.dtype):
    """A model in `dtype` run padded and unpadded on a batch with much padding; (padded, unpadded, real positions,
    layers)."""
    torch.manual_seed(0)
    config = tiny_config(hidden_size=64, num_attention_heads=4, max_position_embeddings=128)
    model = bertkit.BertModel(config).to(device, dtype).eval()
    ids, mask, types = (t.to(device) for t in random_batch(config, batch=8, seq=100))
    with torch.no_grad():
        model.config.unpad = False
        padded = model(ids, mask, types)
        model.config.unpad = True
        unpadded = model(ids, mask, types)
    return padded, unpadded, mask.bool(), config.num_hidden_layers


def _assert_close_on_real_positions(padded, unpadded, real: torch.Tensor) -> None:
    # Padding positions hold zeros unpadded, meaningless values padded; half precision rounds differently.
    assert_close(unpadded.last_hidden_state[real], padded.last_hidden_state[real], atol=2e-2, rtol=2e-2)
    assert_close(unpadded.pooler_output, padded.pooler_output, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_unpadded_matches_padded_on_cpu(dtype: torch.dtype, count_unpadded_calls: list[int]) -> None:
    padded, unpadded, real, _ = _half_precision_padded_and_unpadded("cpu", dtype)
    assert count_unpadded_calls == [1] and unpadded.last_hidden_state.dtype == dtype
    _assert_close_on_real_positions(padded, unpadded, real)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_flash_varlen_kernel_on_gpu_matches_padded(dtype: torch.dtype, monkeypatch) -> None:
    if not _flash_varlen_runs(torch.empty(1, device="cuda", dtype=dtype), 0.0):
        pytest.skip("FlashAttention varlen does not run on this GPU")
    calls = []
    flash = bertkit.attention.flash_varlen_kernel()
    counted = lambda *a, **k: calls.append(1) or flash(*a, **k)  # noqa: E731
    monkeypatch.setattr(bertkit.attention, "flash_varlen_kernel", lambda: counted)
    padded, unpadded, real, layers = _half_precision_padded_and_unpadded("cuda", dtype)
    assert len(calls) == layers  # the flash kernel ran, not the re-padding fallback
    _assert_close_on_real_positions(padded, unpadded, real)
