"""Pretraining: NSP/SOP/MLM example plans, the dataset and collate, the job (loss falls, resume, DDP), the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from bertkit import BertForPreTraining, Tokenizer
from bertkit.corpus import Corpus, prepare_corpus
from bertkit.masking import IGNORE, Masker, MaskingSettings
from bertkit.pretrain import split_documents
from bertkit.pretraining_data import _fit_pair  # noqa: E402 (private: its closed form is what is tested)
from bertkit.pretraining_data import (A0, A1, A_KEEP, A_SKIP, B0, B1, B_KEEP, B_SKIP, LABEL, ExampleSettings,
                                      PretrainingDataset, plan_examples, pretraining_collate)

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
import pretrain_tiny  # noqa: E402
from conftest import torchrun  # noqa: E402  (tests/ is on sys.path)

HELPER = Path(__file__).parent / "helpers" / "pretrain_tiny.py"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Corpus, Tokenizer]:
    root = tmp_path_factory.mktemp("corpus")
    text = pretrain_tiny.write_corpus(root / "corpus.txt", documents=300)
    tokenizer = Tokenizer.train([text], vocab_size=120, show_progress=False)
    prepare_corpus([text], tokenizer, root / "prepared", progress=False, workers=1)
    return Corpus(root / "prepared"), tokenizer


def _document_of(corpus: Corpus, sentence: int) -> int:
    return int(np.searchsorted(corpus.document_offsets, sentence, side="right") - 1)


def test_nsp_pairs_are_half_real_half_random_and_fit(prepared) -> None:
    corpus, _ = prepared
    settings = ExampleSettings(objective="nsp", max_length=40)
    plan = plan_examples(corpus, np.arange(corpus.num_documents), settings, seed=0)
    assert len(plan) > 1000
    labels = plan[:, LABEL]
    assert abs(labels.mean() - 0.5) < 0.03, labels.mean()
    for row in plan:
        assert 1 <= row[A_KEEP] and 1 <= row[B_KEEP] and row[A_KEEP] + row[B_KEEP] + 3 <= 40
        doc_a, doc_b = _document_of(corpus, row[A0]), _document_of(corpus, row[B0])
        if row[LABEL] == 1:
            assert doc_a != doc_b, "a random B came from A's own document"
        else:  # real continuation: B starts where A's sentences end, or inside A's single sentence
            assert doc_a == doc_b
            assert row[B0] == row[A1] or (row[B0] == row[A0] and row[B_SKIP] == row[A_SKIP] + row[A_KEEP])
    # short_seq_prob sends a share of chunks to a random shorter target (others are short where a document ends).
    def short_share(short_seq_prob: float) -> float:
        plan = plan_examples(corpus, np.arange(corpus.num_documents), ExampleSettings(max_length=40,
                             short_seq_prob=short_seq_prob), seed=0)
        return float((plan[:, A_KEEP] + plan[:, B_KEEP] + 3 < 40).mean())
    assert short_share(0.0) + 0.03 < short_share(0.1) < short_share(0.5) - 0.1


def test_sop_swaps_half_and_mlm_makes_single_segments(prepared) -> None:
    corpus, _ = prepared
    sop = plan_examples(corpus, np.arange(corpus.num_documents), ExampleSettings(objective="sop", max_length=40), seed=1)
    assert abs(sop[:, LABEL].mean() - 0.5) < 0.03
    for row in sop[:200]:
        assert _document_of(corpus, row[A0]) == _document_of(corpus, row[B0])  # SOP never leaves the document
        if row[LABEL] == 1:  # swapped: the segment shown first comes later in the text
            assert row[A0] > row[B0] or row[A_SKIP] > row[B_SKIP]
    mlm = plan_examples(corpus, np.arange(corpus.num_documents), ExampleSettings(objective="mlm", max_length=40), seed=1)
    assert (mlm[:, LABEL] == -1).all() and (mlm[:, B_KEEP] == 0).all() and (mlm[:, A_KEEP] <= 38).all()
    # Every sentence of every document is used once, in order.
    assert (mlm[1:, A0] == mlm[:-1, A1]).all() and mlm[0, A0] == 0 and mlm[-1, A1] == corpus.num_sentences


def test_full_sentences_run_on_into_the_next_document(prepared) -> None:
    """RoBERTa's FULL-SENTENCES: a run that reaches its document's end goes on with the next document's first
    sentences (B), up to the budget; every sentence is still used once, in order, and nothing is longer."""
    corpus, _ = prepared
    settings = ExampleSettings(objective="mlm", max_length=40, short_seq_prob=0.0, cross_documents=True)
    plan = plan_examples(corpus, np.arange(corpus.num_documents), settings, seed=1)
    assert (plan[:, LABEL] == -1).all() and (plan[:, A_KEEP] + plan[:, B_KEEP] + 3 <= 40).all()
    crossing = plan[plan[:, B_KEEP] > 0]
    assert len(crossing) > 100
    for row in crossing:
        assert _document_of(corpus, row[B0]) == _document_of(corpus, row[A1] - 1) + 1  # B: the next document
        assert row[B0] == corpus.document_offsets[_document_of(corpus, row[B0])]  # from its first sentence
    segments = [(r[A0], r[A1]) for r in plan] + [(r[B0], r[B1]) for r in crossing]
    covered = sorted(segments)
    assert covered[0][0] == 0 and covered[-1][1] == corpus.num_sentences
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))  # each sentence once, none skipped
    # Full documents fill their examples: far fewer short ones than DOC-SENTENCES leaves at documents' ends.
    docs = plan_examples(corpus, np.arange(corpus.num_documents), ExampleSettings(objective="mlm", max_length=40,
                         short_seq_prob=0.0), seed=1)
    assert len(plan) < len(docs)
    with pytest.raises(ValueError, match="cross_documents packs runs for mlm only"):
        ExampleSettings(objective="nsp", cross_documents=True)


def test_plans_are_deterministic_and_nsp_needs_two_documents(prepared) -> None:
    corpus, _ = prepared
    settings = ExampleSettings(max_length=40)
    a = plan_examples(corpus, np.arange(50), settings, seed=4)
    assert (a == plan_examples(corpus, np.arange(50), settings, seed=4)).all()
    assert not np.array_equal(a, plan_examples(corpus, np.arange(50), settings, seed=5))
    with pytest.raises(ValueError, match="at least two documents"):
        plan_examples(corpus, np.arange(1), settings, seed=0)


def test_dataset_builds_bert_inputs_and_collates(prepared) -> None:
    corpus, tokenizer = prepared
    plan = plan_examples(corpus, np.arange(corpus.num_documents), ExampleSettings(max_length=40), seed=0)
    masker = Masker.for_tokenizer(MaskingSettings(), tokenizer)
    data = PretrainingDataset(corpus, plan, masker, tokenizer, seed=0)
    ids, types = data.tokens(0)
    row = plan[0]
    a = corpus.tokens(row[A0], row[A1])[row[A_SKIP]:row[A_SKIP] + row[A_KEEP]]
    b = corpus.tokens(row[B0], row[B1])[row[B_SKIP]:row[B_SKIP] + row[B_KEEP]]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert ids.tolist() == [cls, *a.tolist(), sep, *b.tolist(), sep]
    assert types.tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert data.lengths[0] == len(ids)
    first = data[0]
    data.set_epoch(1)
    assert data[0]["labels"] != first["labels"] or data[0]["input_ids"] != first["input_ids"]  # dynamic masking
    static = PretrainingDataset(corpus, plan, masker, tokenizer, seed=0, static=True)
    static.set_epoch(3)
    assert static[0] == first
    batch = pretraining_collate([data[i] for i in range(4)], tokenizer.pad_token_id)
    assert batch["next_sentence_label"].tolist() == plan[:4, LABEL].tolist()
    assert batch["masked_positions_only"] is True and batch["labels"].shape == batch["input_ids"].shape


def test_masked_positions_only_gives_the_same_loss_and_logits() -> None:
    from conftest import tiny_config

    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config()).eval()
    ids = torch.randint(5, 99, (3, 12))
    labels = torch.full_like(ids, IGNORE)
    labels[0, 3], labels[1, 5], labels[2, 0], labels[2, 11] = 7, 8, 9, 10
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    full = model(ids, mask, labels=labels)
    sparse = model(ids, mask, labels=labels, masked_positions_only=True)
    assert sparse.prediction_logits.shape == (4, model.config.vocab_size)
    assert_close(sparse.prediction_logits, full.prediction_logits[labels != IGNORE])
    assert_close(sparse.loss, full.loss)
    with pytest.raises(ValueError, match="needs labels"):
        model(ids, masked_positions_only=True)


def test_pair_truncation_equals_googles_token_by_token_loop() -> None:
    def google(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
        while len_a + len_b > budget:
            if len_a > len_b:
                len_a -= 1
            else:
                len_b -= 1
        return len_a, len_b

    for len_a, len_b, budget in [(a, b, n) for a in range(30) for b in range(30) for n in range(1, 45)]:
        assert _fit_pair(len_a, len_b, budget) == google(len_a, len_b, budget), (len_a, len_b, budget)


def test_split_documents_holds_out_a_seeded_share() -> None:
    train, held = split_documents(100, 0.1, seed=0, min_per_side=2)
    assert len(held) == 10 and len(train) == 90 and not set(train) & set(held)
    assert (held == split_documents(100, 0.1, seed=0, min_per_side=2)[1]).all()
    assert len(split_documents(5, 0.01, seed=0, min_per_side=2)[1]) == 2
    with pytest.raises(ValueError, match="3 document"):
        split_documents(3, 0.1, seed=0, min_per_side=2)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_pretraining_loss_falls_and_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    corpus = pretrain_tiny.write_corpus(tmp_path / "text.txt", documents=120)
    result = pretrain_tiny.run(corpus, tmp_path / "out", batch_size=16, steps=150, eval_every=50)
    records = _metrics(tmp_path / "out")
    assert records[0]["step"] == 0 and "baseline_unigram_accuracy" in records[0]
    evals = [r for r in records if "eval_mlm_accuracy" in r]
    assert [r["step"] for r in evals] == [0, 50, 100, 150]
    assert evals[-1]["eval_mlm_loss"] < evals[0]["eval_mlm_loss"] - 1.5
    # Past the unigram plateau: the model uses context.
    assert evals[-1]["eval_mlm_accuracy"] > records[0]["baseline_unigram_accuracy"] + 0.03
    train_losses = [r["loss"] for r in records if "loss" in r]
    assert train_losses[-1] < train_losses[0]
    assert all(r["tokens_per_s"] > 0 for r in records if "loss" in r)
    assert result.baseline["mlm_accuracy"] == evals[0]["eval_mlm_accuracy"]
    out = tmp_path / "out"
    for name in ("config.json", "model.safetensors", "vocab.txt", "curves.png", "tokenizer", "corpus"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForPreTraining"] and config["bertkit"]["task"] == "pretraining"
    # transformers loads it with the same outputs.
    transformers = pytest.importorskip("transformers")
    ours = BertForPreTraining.from_pretrained(out)
    theirs = transformers.BertForPreTraining.from_pretrained(out).eval()
    ids = torch.tensor([Tokenizer.from_pretrained(out).encode("the sailor sees the sea .", "a whale fears a storm .")])
    with torch.no_grad():
        a, b = ours(ids), theirs(ids)
    assert_close(a.prediction_logits, b.prediction_logits, atol=1e-5, rtol=1e-4)
    assert_close(a.seq_relationship_logits, b.seq_relationship_logits, atol=1e-5, rtol=1e-4)


def test_resume_after_a_kill_continues_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bertkit import pretrain as job

    corpus = pretrain_tiny.write_corpus(tmp_path / "text.txt", documents=60)
    tokenizer = pretrain_tiny.write_tokenizer(corpus, tmp_path / "tokenizer")
    pretrain_tiny.run(corpus, tmp_path / "full", steps=30, tokenizer=tokenizer)
    real, calls = job.mlm_metrics, {"n": 0}

    def killed_at_third_evaluation(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # step 0 baseline, step 10, then the kill at step 20
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "mlm_metrics", killed_at_third_evaluation)
    with pytest.raises(KeyboardInterrupt):
        pretrain_tiny.run(corpus, tmp_path / "killed", steps=30, tokenizer=tokenizer)
    monkeypatch.setattr(job, "mlm_metrics", real)
    pretrain_tiny.run(corpus, tmp_path / "killed", steps=30, resume=True, tokenizer=tokenizer)
    a = BertForPreTraining.from_pretrained(tmp_path / "full" / "checkpoint-last" / "model").state_dict()
    b = BertForPreTraining.from_pretrained(tmp_path / "killed" / "checkpoint-last" / "model").state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    timeless = lambda records: [{k: v for k, v in r.items() if not k.endswith("_per_s")} for r in records]  # noqa: E731
    assert timeless(_metrics(tmp_path / "killed")) == timeless(_metrics(tmp_path / "full"))


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_equal_one_process_with_accumulation(tmp_path: Path, mode: str) -> None:
    # Under FSDP the decoder stays tied to the word embeddings and the saved model is whole.
    corpus = pretrain_tiny.write_corpus(tmp_path / "text.txt", documents=60)
    tokenizer = str(pretrain_tiny.write_tokenizer(corpus, tmp_path / "tokenizer"))
    subprocess.run([sys.executable, str(HELPER), str(corpus), str(tmp_path / "single"), "4", "2", tokenizer],
                   check=True, timeout=300, capture_output=True)
    torchrun(str(HELPER), str(corpus), str(tmp_path / mode), "4", "1", tokenizer, mode)
    a = torch.load(tmp_path / "single" / "final_state.pt", weights_only=True)
    b = torch.load(tmp_path / mode / "final_state.pt", weights_only=True)
    assert a.keys() == b.keys()
    for name in a:
        assert_close(a[name], b[name], atol=2e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_cli_pretrain_from_raw_text_then_fill_mask_and_finetune_load_it(tmp_path: Path) -> None:
    from bertkit import BertForSequenceClassification
    from bertkit.cli import main

    corpus = pretrain_tiny.write_corpus(tmp_path / "text.txt", documents=80)
    out = tmp_path / "bert"
    assert main(["pretrain", "--corpus", str(corpus), "--output", str(out), "--preset", "tiny", "--steps", "12",
                 "--batch-size", "8", "--max-length", "32", "--vocab-size", "150", "--seed", "1", "--quiet",
                 "--eval-fraction", "0.1"]) == 0
    assert (out / "corpus" / "manifest.json").is_file() and Tokenizer.from_pretrained(out).vocab_size <= 150
    assert main(["fill-mask", str(out), "the sailor [MASK] the sea ."]) == 0
    classifier = BertForSequenceClassification.from_pretrained(out, num_labels=2)
    assert "bert.encoder.layer.0.attention.self.query.weight" not in classifier.load_report.missing
    # An existing output directory is refused; --resume without a checkpoint is refused.
    assert main(["pretrain", "--corpus", str(corpus), "--output", str(out), "--steps", "2", "--quiet"]) == 2
    assert main(["pretrain", "--corpus", str(corpus), "--output", str(tmp_path / "new"), "--steps", "2",
                 "--resume", "--quiet"]) == 2
    assert main(["pretrain", "--corpus", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "x"),
                 "--steps", "2"]) == 2
    assert not (tmp_path / "x").exists()


def test_continued_pretraining_starts_from_the_checkpoint(tmp_path: Path) -> None:
    from bertkit.cli import main

    corpus = pretrain_tiny.write_corpus(tmp_path / "text.txt", documents=80)
    first = tmp_path / "first"
    pretrain_tiny.run(corpus, first, steps=20)
    second = tmp_path / "second"
    assert main(["pretrain", "--init-from", str(first), "--corpus", str(corpus), "--output", str(second),
                 "--steps", "2", "--max-length", "48", "--eval-fraction", "0.1", "--quiet", "--seed", "3"]) == 0
    records = _metrics(second)
    trained = [r for r in _metrics(first) if "eval_mlm_loss" in r][-1]["eval_mlm_loss"]
    fresh = [r for r in _metrics(first) if "eval_mlm_loss" in r][0]["eval_mlm_loss"]
    assert abs(records[0]["eval_mlm_loss"] - trained) < abs(records[0]["eval_mlm_loss"] - fresh)
    assert (second / "tokenizer" / "vocab.txt").read_text() == (first / "vocab.txt").read_text()


def test_roberta_layout_examples_without_token_types(bpe_dir: Path, tmp_path: Path) -> None:
    """A byte-level BPE corpus: later sentences keep their space ("ĠThe"), pairs are <s> A </s></s> B </s> in
    max_length with 4 specials, and no token types reach the batch."""
    tokenizer = Tokenizer.from_pretrained(bpe_dir)
    text = pretrain_tiny.write_corpus(tmp_path / "corpus.txt", documents=40)
    prepare_corpus([text], tokenizer, tmp_path / "prepared", progress=False, workers=1)
    corpus = Corpus(tmp_path / "prepared")
    first, second = corpus.document_sentences(0)[:2]
    assert tokenizer.convert_ids_to_tokens(int(corpus.sentence(second)[0])).startswith("Ġ")
    assert not tokenizer.convert_ids_to_tokens(int(corpus.sentence(first)[0])).startswith("Ġ")
    settings = ExampleSettings(objective="sop", max_length=40)
    plan = plan_examples(corpus, np.arange(corpus.num_documents), settings, seed=0,
                         specials=tokenizer.num_special_tokens(pair=True))
    data = PretrainingDataset(corpus, plan, Masker.for_tokenizer(MaskingSettings(), tokenizer), tokenizer, seed=0)
    ids, types = data.tokens(0)
    row = plan[0]
    a = corpus.tokens(row[A0], row[A1])[row[A_SKIP]:row[A_SKIP] + row[A_KEEP]].tolist()
    b = corpus.tokens(row[B0], row[B1])[row[B_SKIP]:row[B_SKIP] + row[B_KEEP]].tolist()
    assert ids.tolist() == [0, *a, 2, 2, *b, 2] and types.tolist() == [0] * len(ids)
    assert max(data.lengths) <= 40 and data.lengths[0] == len(ids)
    assert set(data[0]) == {"input_ids", "labels", "next_sentence_label"}
    batch = pretraining_collate([data[i] for i in range(4)], tokenizer.pad_token_id)
    assert "token_type_ids" not in batch and batch["input_ids"].shape[0] == 4
