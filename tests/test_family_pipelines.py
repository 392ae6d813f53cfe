"""Every pipeline on every family, from the command line: a random tiny model of each family (saved by
transformers, with the tests' WordPiece vocabulary) is fine-tuned, predicted with, embedded, filled and
pretrained; transformers loads what bertkit wrote as the family's own class, with the same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from bertkit.cli import main
from bertkit.tokenizer import Tokenizer
from conftest import WORDS
from test_classify import finetune_args, sentiment_rows, write_csv

transformers = pytest.importorskip("transformers")

SIZES = dict(vocab_size=5 + len(WORDS), max_position_embeddings=64)
CORPUS = " ".join(WORDS).replace("##", "") + " . the cat sat . not a good film . a great big dog ran away ."
FAMILIES = {
    # vocab_size: the byte-level BPE vocabulary trained below (its 256 bytes, 5 specials and a few merges).
    "roberta": lambda: transformers.RobertaConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2,
                                                  num_attention_heads=4, intermediate_size=37, type_vocab_size=1,
                                                  max_position_embeddings=66, pad_token_id=1),
    "electra": lambda: transformers.ElectraConfig(**SIZES, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                                                  num_attention_heads=4, intermediate_size=37),
    "distilbert": lambda: transformers.DistilBertConfig(**SIZES, dim=32, n_layers=2, n_heads=4, hidden_dim=37),
}
MASKED_LM = {"electra": "ElectraForMaskedLM", "distilbert": "DistilBertForMaskedLM", "roberta": "RobertaForMaskedLM"}
MASK = {"electra": "[MASK]", "distilbert": "[MASK]", "roberta": "<mask>"}
LEARNING_RATE = {"electra": "1e-2", "distilbert": "1e-2", "roberta": "1e-2"}
CLASSIFIER = {"electra": "ElectraForSequenceClassification", "distilbert": "DistilBertForSequenceClassification",
              "roberta": "RobertaForSequenceClassification"}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_dir(request, tmp_path_factory) -> tuple[str, Path]:
    """A random tiny masked LM of the family, saved by transformers with a WordPiece tokenizer (a byte-level BPE
    one trained by bertkit for RoBERTa)."""
    family = request.param
    root = tmp_path_factory.mktemp(family)
    if family == "roberta":
        (root / "corpus.txt").write_text((CORPUS + "\n") * 20)
        tokenizer = Tokenizer.train([root / "corpus.txt"], kind="bpe", vocab_size=300, show_progress=False)
    else:
        vocab = root / "vocab.txt"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
        tokenizer = Tokenizer.from_vocab(vocab)
    config = FAMILIES[family]()
    config.vocab_size = tokenizer.vocab_size
    torch.manual_seed(0)
    getattr(transformers, MASKED_LM[family])(config).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return family, root / "model"


def test_finetune_then_transformers_predicts_the_same(family_dir, tmp_path: Path, capsys) -> None:
    family, model_dir = family_dir
    train = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=1))
    dev = write_csv(tmp_path / "dev.csv", sentiment_rows(32, seed=2))
    out = tmp_path / "clf"
    # These heads (a gelu or ReLU dense on [CLS], no pooler) learn this slower than BERT at 3e-3 (their gradients
    # equal transformers': see
    # test_families.test_training_gradients_equal_transformers).
    assert main(finetune_args(model_dir, train, dev, out, "--lr", LEARNING_RATE[family])) == 0
    assert json.loads(capsys.readouterr().out)["eval_accuracy"] >= 0.75
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == family and config["architectures"] == [CLASSIFIER[family]]

    texts = ["good film", "the awful dog sat on a mat", "not a great film ."]
    assert main(["predict", str(out), *texts]) == 0
    predicted = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        probs = theirs(**tokenizer(texts, return_tensors="pt", padding=True)).logits.softmax(-1)
    for row, p in zip(predicted, probs):
        assert row["label"] == theirs.config.id2label[int(p.argmax())]
        assert row["score"] == pytest.approx(float(p.max()), abs=1e-5)


def test_embed_matches_transformers_mean_pooling(family_dir, tmp_path: Path) -> None:
    _, model_dir = family_dir
    texts = ["the cat sat on the mat", "a big dog ran away", "good"]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    assert main(["embed", str(model_dir), "--input", str(tmp_path / "texts.txt"), "--output",
                 str(tmp_path / "emb.npy"), "--pooling", "mean", "--quiet"]) == 0
    ours = np.load(tmp_path / "emb.npy")
    theirs = transformers.AutoModel.from_pretrained(model_dir).eval()
    batch = transformers.AutoTokenizer.from_pretrained(model_dir)(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = theirs(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    assert_close(torch.from_numpy(ours), (hidden * mask).sum(1) / mask.sum(1), atol=1e-5, rtol=1e-5)


def test_fill_mask_matches_transformers(family_dir, capsys) -> None:
    family, model_dir = family_dir
    text = f"the cat {MASK[family]} on the mat"
    assert main(["fill-mask", str(model_dir), text, "--top-k", "3", "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)["predictions"]
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        logits = theirs(**batch).logits[0, batch["input_ids"][0].tolist().index(tokenizer.mask_token_id)]
    probs = logits.softmax(-1)
    probs[tokenizer.all_special_ids] = -1
    top = probs.topk(3)
    assert [p["token_id"] for p in ours] == top.indices.tolist()
    assert [p["score"] for p in ours] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_pretrain_a_fresh_model_of_the_family(family_dir, tmp_path: Path, capsys) -> None:
    family, model_dir = family_dir
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("the cat sat on the mat . a big dog ran away . good film ." for _ in range(12)))
    out = tmp_path / "pretrained"
    assert main(["pretrain", "--corpus", str(corpus), "--tokenizer", str(model_dir), "--output", str(out),
                 "--family", family, "--preset", "tiny", "--steps", "3", "--batch-size", "4", "--max-length", "16",
                 "--quiet", "--eval-fraction", "0.2"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == family and config["architectures"] == [MASKED_LM[family]]
    theirs, info = getattr(transformers, MASKED_LM[family]).from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_nsp_on_a_family_without_a_pair_head_is_refused(tmp_path: Path, capsys) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one . two .\n\nthree . four .")
    assert main(["pretrain", "--corpus", str(corpus), "--output", str(tmp_path / "out"), "--family", "roberta",
                 "--objective", "nsp", "--steps", "1", "--quiet"]) == 2
    assert "RoBERTa has no sentence-pair head; pretrain it with --objective mlm" in capsys.readouterr().err


TASK_CLASS = {"ner": "ForTokenClassification", "qa": "ForQuestionAnswering", "multiple-choice": "ForMultipleChoice"}
PREFIX = {"roberta": "Roberta", "distilbert": "DistilBert", "electra": "Electra"}


def task_files(task: str, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """(train, dev, extra finetune options) for a task, from the task tests' generators."""
    import test_multiple_choice
    import test_ner
    import test_qa
    import test_similarity

    if task == "ner":
        return test_ner.write_conll(tmp_path / "t.conll", 40, 0), test_ner.write_conll(tmp_path / "d.conll", 10, 1), []
    if task == "qa":
        return (test_qa.write_json(tmp_path / "t.json", test_qa.synthetic_squad(32, 0)),
                test_qa.write_json(tmp_path / "d.json", test_qa.synthetic_squad(8, 1)),
                ["--doc-stride", "8", "--max-query-length", "8"])
    if task == "similarity":
        return (test_similarity.write_jsonl(tmp_path / "t.jsonl", test_similarity.pairs(48, 0, scored=True)),
                test_similarity.write_jsonl(tmp_path / "d.jsonl", test_similarity.pairs(16, 1, scored=True)), [])
    return (test_multiple_choice.write_swag(tmp_path / "t.csv", test_multiple_choice.swag_rows(32, 0)),
            test_multiple_choice.write_swag(tmp_path / "d.csv", test_multiple_choice.swag_rows(8, 1)), [])


@pytest.mark.parametrize("task", ["ner", "qa", "similarity", "multiple-choice"])
def test_every_task_finetunes_and_transformers_loads_it(family_dir, task: str, tmp_path: Path, capsys) -> None:
    family, model_dir = family_dir
    train, dev, extra = task_files(task, tmp_path)
    out = tmp_path / task
    assert main(["finetune", task, "--model", str(model_dir), "--train", str(train), "--eval", str(dev), "--output",
                 str(out), "--max-length", "32", "--epochs", "1", "--batch-size", "16", "--lr", "1e-3", "--seed", "0",
                 "--quiet", *extra]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(out), "--data", str(dev)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    metric = {"ner": "f1", "qa": "f1", "similarity": "spearman", "multiple-choice": "accuracy"}[task]
    assert metrics["task"] == task and metrics[metric] == pytest.approx(summary[f"eval_{metric}"], abs=1e-6)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == family
    if task == "similarity":  # an encoder plus sentence-transformers' files: sentence-transformers reads it
        sentence_transformers = pytest.importorskip("sentence_transformers")
        texts = ["a good cat", "an awful film"]
        (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
        assert main(["embed", str(out), "--input", str(tmp_path / "texts.txt"), "--output", str(tmp_path / "e.npy"),
                     "--quiet"]) == 0
        theirs = sentence_transformers.SentenceTransformer(str(out), device="cpu").encode(texts)
        assert_close(torch.from_numpy(np.load(tmp_path / "e.npy")), torch.from_numpy(theirs), atol=1e-5, rtol=1e-5)
        return
    architecture = PREFIX[family] + TASK_CLASS[task]
    assert config["architectures"] == [architecture]
    _, info = getattr(transformers, architecture).from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info


def test_embed_reads_a_sentence_transformers_directory_of_the_family(family_dir, tmp_path: Path) -> None:
    """What sentence-transformers saves around a family's encoder (CLS pooling, Normalize), bertkit embeds alike."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from sentence_transformers import models

    _, model_dir = family_dir
    encoder = models.Transformer(str(model_dir), max_seq_length=24)
    width = getattr(encoder, "get_embedding_dimension", None) or encoder.get_word_embedding_dimension  # 6.x renamed it
    pooling = models.Pooling(width(), pooling_mode="cls")
    st = sentence_transformers.SentenceTransformer(modules=[encoder, pooling, models.Normalize()], device="cpu")
    st.save(str(tmp_path / "st"))
    texts = ["the cat sat on the mat", "a big dog ran away", "not a good film ."]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    assert main(["embed", str(tmp_path / "st"), "--input", str(tmp_path / "texts.txt"), "--output",
                 str(tmp_path / "e.npy"), "--quiet"]) == 0
    assert_close(torch.from_numpy(np.load(tmp_path / "e.npy")), torch.from_numpy(st.encode(texts)), atol=1e-5, rtol=1e-5)


def test_a_declared_pooling_bertkit_does_not_compute_is_refused_unless_overridden(family_dir, tmp_path: Path,
                                                                                   capsys) -> None:
    _, model_dir = family_dir
    st = tmp_path / "st"
    bertkit_model = __import__("bertkit").AutoModel.from_pretrained(model_dir)
    bertkit_model.save_pretrained(st, tokenizer=Tokenizer.from_pretrained(model_dir))
    (st / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x.Transformer"},
                                                 {"idx": 1, "name": "1", "path": "1_Pooling", "type": "x.Pooling"}]))
    (st / "1_Pooling").mkdir()
    (st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "max"}))
    (tmp_path / "t.txt").write_text("good film\n")
    command = ["embed", str(st), "--input", str(tmp_path / "t.txt"), "--output", str(tmp_path / "e.npy"), "--quiet"]
    assert main(command) == 2
    assert "pooling 'max' is not supported; bertkit pools by mean or cls (choose one with --pooling)" in \
        capsys.readouterr().err
    assert main([*command, "--pooling", "mean"]) == 0


def test_a_fresh_roberta_trains_its_own_bpe_vocabulary(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"{CORPUS} Document {i} ends here." for i in range(12)))
    out = tmp_path / "roberta"
    assert main(["pretrain", "--corpus", str(corpus), "--output", str(out), "--family", "roberta", "--vocab-size",
                 "300", "--preset", "tiny", "--steps", "2", "--batch-size", "4", "--max-length", "32", "--quiet",
                 "--eval-fraction", "0.2"]) == 0
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer.mask_token == "<mask>" and tokenizer.convert_ids_to_tokens(
        tokenizer("the cat")["input_ids"]) == ["<s>", "the", "Ġcat", "</s>"]
    assert "token_type_ids" not in tokenizer("the cat")
    transformers.RobertaForMaskedLM.from_pretrained(out)
