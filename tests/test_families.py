"""The families, head by head, against transformers (the oracle): what transformers saves bertkit loads with the
same outputs, and what bertkit saves transformers loads as the same class, strictly, with the same outputs.
Read as a specification: each case below is a difference that family has from BERT."""

from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

import bertkit
from bertkit.auto import MODEL_FOR_HEAD
from bertkit.config import EncoderConfig
from bertkit.families import family_of

transformers = pytest.importorskip("transformers")

# A wide initialisation, so that every difference (an activation, a dropout placement) moves the outputs well
# past the tolerance (at BERT's 0.02, gelu and gelu_new agree within 1e-5); the models then run in float64, so
# that rounding stays far below it.
SIZES = dict(vocab_size=99, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=40,
             initializer_range=0.5)
# transformers configs (their own field names), one per family variant worth telling apart.
CASES = {
    "roberta": lambda: transformers.RobertaConfig(**SIZES, hidden_size=32, intermediate_size=37, type_vocab_size=1,
                                                  pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5),
    "xlm-roberta": lambda: transformers.XLMRobertaConfig(**SIZES, hidden_size=32, intermediate_size=37,
                                                         type_vocab_size=1, pad_token_id=1, hidden_act="gelu_new"),
    "camembert": lambda: transformers.CamembertConfig(**SIZES, hidden_size=32, intermediate_size=37,
                                                      type_vocab_size=1, pad_token_id=1),
    "distilbert": lambda: transformers.DistilBertConfig(vocab_size=99, n_layers=2, n_heads=4, dim=32, hidden_dim=37,
                                                        max_position_embeddings=40, activation="gelu",
                                                        initializer_range=0.5),
    "distilbert-sinusoidal": lambda: transformers.DistilBertConfig(
        vocab_size=99, n_layers=2, n_heads=4, dim=32, hidden_dim=37, max_position_embeddings=40,
        sinusoidal_pos_embds=True, pad_token_id=3, initializer_range=0.5),
    "electra": lambda: transformers.ElectraConfig(**SIZES, embedding_size=16, hidden_size=32, intermediate_size=37),
    "electra-unprojected": lambda: transformers.ElectraConfig(**SIZES, embedding_size=32, hidden_size=32,
                                                              intermediate_size=37, hidden_act="relu"),
}
HEADS = ("base", "masked-lm", "pretraining", "discriminator", "sequence-classification", "token-classification",
         "question-answering", "multiple-choice")


def cases() -> list[tuple[str, str]]:
    return [(case, head) for case in CASES for head in HEADS
            if head in family_of(CASES[case]().model_type).architectures]


def oracle_class(config, head: str):
    return getattr(transformers, family_of(config.model_type).architecture(head))


def hf_model(case: str, head: str, seed: int = 0):
    config = CASES[case]()
    config.num_labels = 2 if head == "question-answering" else 3
    torch.manual_seed(seed)
    return oracle_class(config, head)(config).eval().double()


def batch(config: EncoderConfig, head: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded rows of different lengths (pad id on padding, as tokenizers write it), token types where the
    family has them; (B, choices, T) for multiple choice."""
    g = torch.Generator().manual_seed(seed)
    shape = (3, 4, 9) if head == "multiple-choice" else (4, 9)
    lengths = torch.randint(2, 10, shape[:-1], generator=g)
    lengths.view(-1)[0] = 9
    mask = (torch.arange(9) < lengths.unsqueeze(-1)).long()
    ids = torch.randint(4, config.vocab_size, shape, generator=g).masked_fill(mask == 0, config.pad_token_id)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if config.type_vocab_size:
        inputs["token_type_ids"] = torch.randint(0, config.type_vocab_size, shape, generator=g) * mask
    return inputs


OUTPUT_NAMES = ("last_hidden_state", "pooler_output", "logits", "prediction_logits", "seq_relationship_logits",
                "start_logits", "end_logits")


def assert_same(ours, theirs, mask: torch.Tensor, head: str) -> None:
    compared = 0
    for name in OUTPUT_NAMES:
        want = getattr(theirs, name, None)
        if want is None:
            continue
        got = getattr(ours, name)
        if want.dim() >= 2 and want.shape[:2] == mask.shape:  # per-token outputs: the real positions only
            got, want = got[mask.bool()], want[mask.bool()]
        assert_close(got, want, atol=1e-5, rtol=1e-5, msg=lambda m: f"{head} {name}: {m}")
        compared += 1
    assert compared, f"no output of {type(theirs).__name__} was compared"


@pytest.mark.parametrize("case,head", cases())
def test_loads_what_transformers_saved(case: str, head: str, tmp_path) -> None:
    theirs = hf_model(case, head)
    theirs.save_pretrained(tmp_path)
    ours = MODEL_FOR_HEAD[head].from_pretrained(tmp_path, dtype=torch.float64)
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    inputs = batch(ours.config, head)
    with torch.no_grad():
        want = theirs(**inputs)
        for unpad in (False, True):  # padded = unpadded on every real position
            ours.config.unpad = unpad
            assert_same(ours(**inputs), want, inputs["attention_mask"], head)


@pytest.mark.parametrize("case,head", cases())
def test_transformers_loads_what_bertkit_saved(case: str, head: str, tmp_path) -> None:
    config = EncoderConfig.from_dict({**CASES[case]().to_dict(), "num_labels": 2 if head == "question-answering" else 3})
    torch.manual_seed(1)
    ours = MODEL_FOR_HEAD[head](config).eval().double()
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [family_of(config.model_type).architecture(head)]
    assert saved["model_type"] == CASES[case]().model_type
    theirs, info = oracle_class(CASES[case](), head).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    inputs = batch(config, head, seed=2)
    with torch.no_grad():
        assert_same(ours(**inputs), theirs.eval().double()(**inputs), inputs["attention_mask"], head)


@pytest.mark.parametrize("head", ["pretraining", "masked-lm", "sequence-classification"])
def test_auto_classes_pick_the_family(head: str, tmp_path) -> None:
    hf_model("electra", "discriminator" if head == "pretraining" else head).save_pretrained(tmp_path)
    auto = {"pretraining": bertkit.AutoModelForPreTraining, "masked-lm": bertkit.AutoModelForMaskedLM,
            "sequence-classification": bertkit.AutoModelForSequenceClassification}[head]
    model = auto.from_pretrained(tmp_path)
    assert model.config.family.name == "ELECTRA" and model.base_model is model.electra
    assert model.head_kind == ("discriminator" if head == "pretraining" else head)


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_gradients_equal_transformers(case: str, tmp_path) -> None:
    """One training step's loss and every parameter's gradient, dropout off: the same as transformers'."""
    config = CASES[case]()
    config.num_labels = 2
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                 "seq_classif_dropout"):
        if hasattr(config, name):
            setattr(config, name, 0.0)
    torch.manual_seed(3)
    theirs = transformers.AutoModelForSequenceClassification.from_config(config).double().train()
    theirs.save_pretrained(tmp_path)
    ours = MODEL_FOR_HEAD["sequence-classification"].from_pretrained(tmp_path, dtype=torch.float64).train()
    inputs = batch(ours.config, "sequence-classification", seed=4)
    labels = torch.tensor([0, 1, 1, 0])
    ours(**inputs, labels=labels).loss.backward()
    theirs(**inputs, labels=labels).loss.backward()
    ours_grads = family_of(config.model_type).to_transformers_keys(
        {n: p.grad for n, p in ours.named_parameters() if p.grad is not None}, "sequence-classification")
    theirs_grads = {n: p.grad for n, p in theirs.named_parameters() if p.grad is not None}
    if config.model_type == "distilbert" and config.sinusoidal_pos_embds:
        # transformers 5 leaves the sinusoidal table trainable (its init sets requires_grad on a copy); bertkit keeps
        # it fixed, as DistilBERT defines it ("position embeddings are not learned").
        del theirs_grads["distilbert.embeddings.position_embeddings.weight"]
    assert set(ours_grads) == set(theirs_grads)
    for name, grad in theirs_grads.items():
        assert_close(ours_grads[name], grad, atol=1e-7, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def test_roberta_positions_start_after_padding_in_every_row() -> None:
    ids = torch.tensor([[0, 5, 6, 2, 1, 1], [1, 1, 0, 7, 2, 1]])  # left and right padding (pad id 1)
    assert bertkit.model.positions_after_padding(ids, pad_token_id=1).tolist() == [[2, 3, 4, 5, 1, 1],
                                                                                    [1, 1, 2, 3, 4, 1]]


def test_roberta_max_length_leaves_room_for_the_offset(tmp_path) -> None:
    config = EncoderConfig.from_dict(CASES["roberta"]().to_dict())
    assert config.max_length == 40 - 2
    model = bertkit.EncoderModel(config).eval()
    with pytest.raises(ValueError, match="39 tokens is longer than max_position_embeddings=40 allows \\(38 tokens\\)"):
        model(torch.full((1, 39), 5))


def test_distilbert_refuses_token_types() -> None:
    model = bertkit.EncoderModel(EncoderConfig.from_dict(CASES["distilbert"]().to_dict()))
    with pytest.raises(ValueError, match="DistilBERT takes no token_type_ids"):
        model(torch.ones(1, 4, dtype=torch.long), token_type_ids=torch.zeros(1, 4, dtype=torch.long))


def test_distilbert_sinusoidal_table_is_transformers_and_frozen() -> None:
    config = CASES["distilbert-sinusoidal"]()
    torch.manual_seed(0)
    theirs = transformers.DistilBertModel(config)
    ours = bertkit.EncoderModel(EncoderConfig.from_dict(config.to_dict()))
    table = ours.embeddings.position_embeddings.weight
    assert_close(table, theirs.embeddings.position_embeddings.weight, atol=1e-6, rtol=0)
    assert not table.requires_grad


def test_unknown_model_type_is_refused_by_name(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mpnet", "hidden_size": 32}))
    with pytest.raises(bertkit.ConfigError, match="model_type 'mpnet' is not supported; bertkit runs bert, roberta"):
        bertkit.AutoModel.from_pretrained(tmp_path)


def test_a_head_the_family_lacks_is_refused() -> None:
    config = EncoderConfig.from_dict(CASES["roberta"]().to_dict())
    with pytest.raises(ValueError, match="RoBERTa has no pretraining head in transformers"):
        bertkit.BertForPreTraining(config)


def test_config_round_trips_in_the_family_names() -> None:
    hf = CASES["distilbert-sinusoidal"]().to_dict()
    written = EncoderConfig.from_dict(hf).to_dict()
    for name in ("dim", "n_layers", "n_heads", "hidden_dim", "activation", "sinusoidal_pos_embds", "seq_classif_dropout",
                 "qa_dropout", "pad_token_id", "max_position_embeddings"):
        assert written[name] == hf[name], name
    assert "hidden_size" not in written and "type_vocab_size" not in written


@pytest.mark.parametrize("case", ["roberta", "distilbert", "electra"])
def test_a_batch_equals_each_input_alone(case: str) -> None:
    """Batch invariance: padding a sequence next to longer ones changes none of its real positions' outputs
    (RoBERTa's positions are counted per row, so they do not move either)."""
    config = EncoderConfig.from_dict(CASES[case]().to_dict())
    torch.manual_seed(5)
    model = MODEL_FOR_HEAD["masked-lm"](config).eval().double()
    inputs = batch(config, "masked-lm", seed=6)
    with torch.no_grad():
        together = model(**inputs).logits
        for row, length in enumerate(inputs["attention_mask"].sum(1).tolist()):
            alone = model(**{k: v[row:row + 1, :length] for k, v in inputs.items()}).logits[0]
            assert_close(together[row, :length], alone, atol=1e-9, rtol=1e-9)
