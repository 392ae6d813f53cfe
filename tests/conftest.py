"""Shared test helpers: a tiny config, random padded batches, and HF <-> bertkit model pairs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bertkit import BertConfig

HEADS = (
    "BertModel",
    "BertForMaskedLM",
    "BertForPreTraining",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertForQuestionAnswering",
    "BertForMultipleChoice",
)


def tiny_config(**overrides) -> BertConfig:
    """transformers' BertModelTester sizes: runs in milliseconds."""
    sizes = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=37, max_position_embeddings=64)
    return BertConfig(**{**sizes, **overrides})


def random_batch(config: BertConfig, batch: int = 3, seq: int = 7, seed: int = 0, choices: int | None = None):
    """input_ids, attention_mask, token_type_ids with right padding of different lengths per row."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, seq) if choices is None else (batch, choices, seq)
    input_ids = torch.randint(0, config.vocab_size, shape, generator=g)
    lengths = torch.randint(1, seq + 1, shape[:-1], generator=g)
    lengths.view(-1)[0] = seq  # at least one full row, as in a real batch
    attention_mask = (torch.arange(seq) < lengths.unsqueeze(-1)).long()
    if config.pad_token_id is not None:
        input_ids = input_ids.masked_fill(attention_mask == 0, config.pad_token_id)
    token_type_ids = torch.randint(0, config.type_vocab_size, shape, generator=g) * attention_mask
    return input_ids, attention_mask, token_type_ids


def hf_config(config: BertConfig, **overrides):
    """The same configuration as a transformers.BertConfig (the oracle)."""
    transformers = pytest.importorskip("transformers")
    return transformers.BertConfig(**{**config.to_dict(), **overrides})


def torchrun(*args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 ARGS` (standalone: a free port, so runs never collide);
    with `check`, a failure shows the processes' stderr, which a bare CalledProcessError would hide."""
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args],
                         capture_output=True, text=True, timeout=timeout)
    assert not check or run.returncode == 0, f"torchrun {' '.join(args)} exited {run.returncode}:\n{run.stderr[-4000:]}"
    return run


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy CPU the threads wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet_transformers():
    logging.getLogger("transformers").setLevel(logging.ERROR)
    yield


WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "small", "ran", "away", "##s", ".", "good", "bad",
         "film", "great", "awful", "not"]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A random tiny BertForMaskedLM with a small word vocabulary, saved with its tokenizer."""
    from bertkit import BertForMaskedLM, Tokenizer

    root = tmp_path_factory.mktemp("tiny")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = Tokenizer.from_vocab(vocab)
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config(vocab_size=tokenizer.vocab_size))
    model.save_pretrained(root / "model", tokenizer=tokenizer)
    return root / "model"


BPE_TEXT = """\
The cat sat on the mat. A big dog ran away from the small cat, and the film was not good.
Extraordinarily long words such as antidisestablishmentarianism appear in naïve café reviews.

Tokyo 東京 and Paris are cities; the weather there is fine. Emoji 😀 and numbers 3.14 are text too.
She sells sea-shells by the sea-shore. What's the weather like in New York today?
"""


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory) -> Path:
    """A RoBERTa-style tokenizer (byte-level BPE; <s> A </s></s> B </s>; no token types) trained on a few
    paragraphs, saved with a random tiny BertForMaskedLM over its vocabulary: inputs laid out as RoBERTa's."""
    from bertkit import BertForMaskedLM, Tokenizer

    root = tmp_path_factory.mktemp("bpe")
    (root / "corpus.txt").write_text(BPE_TEXT * 4, encoding="utf-8")
    tokenizer = Tokenizer.train([root / "corpus.txt"], kind="bpe", vocab_size=300, min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(root / "model", tokenizer=tokenizer)
    return root / "model"
