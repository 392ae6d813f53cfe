"""Named-entity recognition (token classification) on CoNLL-style files: data -> features -> metrics -> entities.

Words are the file's tokens. Each is split into wordpieces and labelled on its first piece; the
other pieces get -100 (ignored by the loss) or, with `label_all_tokens`, the word's tag (B-X
turned into I-X, as transformers' run_ner does). A word is predicted from its first piece.

A sentence with more pieces than the model takes (max_length minus the tokenizer's special tokens,
e.g. [CLS] and [SEP]) is never cut: it is read as overlapping windows (`bertkit.windows`). Training
uses every window; at prediction each piece takes its logits from the window where it is most
central, and the sentence is put back together in its original order.

Entities are decoded from word tags with `metrics.get_entities` (seqeval's rules, BIO or IOBES),
and scored with `metrics.entity_scores` (seqeval's default mode).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import checkpoint
from ..batching import Feature
from ..heads import BertForTokenClassification
from ..infer import forward_batches
from ..metrics import entity_scores, get_entities
from ..readers import DataError, Sentence, read_conll
from ..tokenizer import Layout, Tokenizer
from ..train import TrainArgs, TrainResult, fit, prepare_output_dir, seed_everything, warn_no_eval_data
from ..windows import MAX_WINDOWS, Span, cap_windows, most_central_window, window_spans

logger = logging.getLogger("bertkit")

NO_LABEL = -100  # pieces the loss ignores: special tokens, later pieces of a word, padding
BATCH_SIZE = 64  # windows per forward pass at prediction


@dataclass
class NerSettings:
    """What prediction and evaluation need to read text as training did; saved in config.json["bertkit"]."""

    max_length: int = 128  # pieces per window, special tokens ([CLS], [SEP]) included
    stride: int | None = None  # pieces shared by consecutive windows; None = max_length // 4
    label_all_tokens: bool = False  # train on every piece of a word, not only the first
    token_column: int = 0  # CoNLL column of the token
    tag_column: int = -1  # CoNLL column of the tag

    @property
    def window_stride(self) -> int:
        return self.max_length // 4 if self.stride is None else self.stride

    def to_config(self) -> dict[str, Any]:
        return {"task": "ner", **asdict(self)}

    @classmethod
    def of(cls, model: BertForTokenClassification, max_length: int | None = None) -> NerSettings:
        """The settings saved with `model` (defaults for a model bertkit did not fine-tune), max_length overridden."""
        saved = {k: v for k, v in model.config.task_settings("ner").items() if k in cls.__dataclass_fields__}
        settings = cls(**saved)
        if max_length is not None:
            settings.max_length = max_length
        check_window(settings, model.config.max_position_embeddings)
        return settings


def check_window(settings: NerSettings, max_positions: int) -> None:
    """Reject a max_length/stride the model cannot take, before any work is done."""
    if settings.max_length > max_positions:
        raise ValueError(f"max_length={settings.max_length} exceeds the model's max_position_embeddings={max_positions}")
    window_spans(0, settings.max_length - 2, settings.window_stride)  # raises on a window too small or a bad stride


# --------------------------------------------------------------------------- tags and labels

def build_tags(sentences: Sequence[Sentence]) -> dict[int, str]:
    """id2label: "O" first, then the training file's other tags, sorted."""
    tags = {tag for s in sentences for tag in s.tags}
    return dict(enumerate(sorted(tags, key=lambda tag: (tag != "O", tag))))


def check_tags(sentences: Sequence[Sentence], label2id: dict[str, int], source: str | os.PathLike) -> None:
    """Every tag must be one the model knows; the error names the file and line of the first that is not."""
    for s in sentences:
        for i, tag in enumerate(s.tags):
            if tag not in label2id:
                # read_conll puts a sentence's tokens on consecutive lines, starting at s.line.
                raise DataError(f"tag {tag!r} does not occur in the training data (known: {', '.join(sorted(label2id))})",
                                path=source, line=s.line + i)


def align_labels(word_ids: Sequence[int], tags: Sequence[str], label2id: dict[str, int],
                 label_all_tokens: bool = False) -> list[int]:
    """Per piece: the word's tag id on its first piece; later pieces NO_LABEL, or with `label_all_tokens`
    the word's tag, B-X becoming I-X when I-X is a known tag (transformers' run_ner). A word without
    pieces simply has no entry."""
    labels, previous = [], None
    for word in word_ids:
        tag = tags[word]
        if word != previous:
            labels.append(label2id[tag])
        elif label_all_tokens:
            inside = "I-" + tag[2:] if tag.startswith("B-") else tag
            labels.append(label2id.get(inside, label2id[tag]))
        else:
            labels.append(NO_LABEL)
        previous = word
    return labels


# --------------------------------------------------------------------------- encoding and windows

@dataclass
class Pieces:
    """One sentence as the model reads it, without special tokens."""

    ids: list[int]
    word_ids: list[int]  # the word each piece belongs to
    num_words: int
    offsets: list[tuple[int, int]]  # character span of each piece (in the raw text, or inside its word)
    labels: list[int] | None = None  # per piece, NO_LABEL where the loss ignores it

    @cached_property
    def word_ranges(self) -> list[tuple[int, int] | None]:
        """Per word, the positions of its first and last piece; None for a word without pieces."""
        ranges: list[tuple[int, int] | None] = [None] * self.num_words
        for position, word in enumerate(self.word_ids):
            first = ranges[word][0] if ranges[word] is not None else position
            ranges[word] = (first, position)
        return ranges


@dataclass
class Encoded:
    """Sentences with their windows: `features` (one per window, in sentence order), each sentence's spans,
    and the tokenizer's layout of a window (where its pieces sit between the special tokens)."""

    pieces: list[Pieces]
    spans: list[list[Span]]
    features: list[Feature]
    layout: Layout


def encode_words(words: Sequence[Sequence[str]], tokenizer: Tokenizer, settings: NerSettings,
                 source: str, tags: Sequence[Sequence[str]] | None = None,
                 label2id: dict[str, int] | None = None) -> Encoded:
    """Pre-split sentences -> pieces (labelled when `tags` are given) -> windows."""
    encoded = tokenizer.encode_words(words, add_special_tokens=False)
    pieces = [Pieces(ids, word_ids, len(sentence), offsets) for ids, word_ids, offsets, sentence
              in zip(encoded.input_ids, encoded.word_ids, encoded.offsets, words)]
    if tags is not None:
        for p, sentence_tags in zip(pieces, tags):
            p.labels = align_labels(p.word_ids, sentence_tags, label2id, settings.label_all_tokens)
    return make_windows(pieces, tokenizer, settings, source)


def encode_texts(texts: Sequence[str], tokenizer: Tokenizer, settings: NerSettings) -> Encoded:
    """Raw texts -> pieces, whose words are what the tokenizer's pre-tokenizer splits -> windows."""
    encoded = tokenizer(list(texts), padding=False, truncation=False, return_tensors=None,
                        return_offsets=True, return_word_ids=True, add_special_tokens=False)
    pieces = [Pieces(ids, word_ids, max(word_ids) + 1 if word_ids else 0, offsets)
              for ids, word_ids, offsets in zip(encoded.input_ids, encoded.word_ids, encoded.offsets)]
    return make_windows(pieces, tokenizer, settings, "<input>")


def make_windows(pieces: list[Pieces], tokenizer: Tokenizer, settings: NerSettings, source: str) -> Encoded:
    """Features for every sentence, laid out as the tokenizer lays out one text ([CLS] window [SEP]): one
    when it fits, overlapping windows when not."""
    stride = settings.window_stride
    layout = tokenizer.layout()
    before, after = [NO_LABEL] * len(layout.prefix), [NO_LABEL] * len(layout.suffix)
    spans, features, windowed = [], [], 0
    for p in pieces:
        sentence_spans = window_spans(len(p.ids), settings.max_length - layout.num_special_tokens, stride)
        windowed += len(sentence_spans) > 1
        for start, end in sentence_spans:
            feature: Feature = tokenizer.build_inputs(p.ids[start:end])
            if p.labels is not None:
                feature["labels"] = [*before, *p.labels[start:end], *after]
            features.append(feature)
        spans.append(sentence_spans)
    if windowed:
        logger.warning("%s: %d of %d sentences were longer than %d tokens and were read as %d overlapping windows "
                       "(stride %d); each token is predicted from the window where it is most central",
                       source, windowed, len(pieces), settings.max_length,
                       sum(len(s) for s in spans if len(s) > 1), stride)
    return Encoded(pieces, spans, features, layout)


# --------------------------------------------------------------------------- prediction

@torch.no_grad()
def window_logits(model: BertForTokenClassification, features: Sequence[Feature], pad_token_id: int,
                  layout: Layout) -> list[np.ndarray]:
    """Per feature, the (pieces, labels) logits of its content (no special tokens), batching by length."""
    out: list[np.ndarray] = [np.empty(0)] * len(features)
    for batch, logits in forward_batches(model, features, pad_token_id, BATCH_SIZE):
        for row, i in enumerate(batch):
            out[i] = logits[row, layout.first_start:len(features[i]["input_ids"]) - len(layout.suffix)]
    return out


def reassemble(spans: list[Span], windows: Sequence[np.ndarray]) -> np.ndarray:
    """(pieces, labels) logits of one sentence: each piece's row from the window where it is most central."""
    if len(spans) == 1:
        return windows[0]
    owners = most_central_window(spans, spans[-1][1])
    return np.stack([windows[w][position - spans[w][0]] for position, w in enumerate(owners)])


def sentence_logits(model: BertForTokenClassification, data: Encoded, pad_token_id: int) -> list[np.ndarray]:
    """Per sentence, (pieces, labels) logits, windows put back together."""
    per_window = window_logits(model, data.features, pad_token_id, data.layout)
    result, first = [], 0
    for spans in data.spans:
        result.append(reassemble(spans, per_window[first:first + len(spans)]))
        first += len(spans)
    return result


def word_tags(logits: np.ndarray, pieces: Pieces, id2label: dict[int, str]) -> tuple[list[str], list[float]]:
    """Each word's tag and probability, from its first piece. A word without pieces (only control or
    zero-width characters) was never seen by the model: it is tagged O (probability 1)."""
    probs = torch.from_numpy(logits).softmax(-1).numpy() if len(logits) else logits
    tags, scores = [], []
    for span in pieces.word_ranges:
        if span is None:
            tags.append("O")
            scores.append(1.0)
            continue
        best = int(probs[span[0]].argmax())
        tags.append(id2label[best])
        scores.append(float(probs[span[0], best]))
    return tags, scores


def _decode(model: BertForTokenClassification, data: Encoded, pad_token_id: int
            ) -> tuple[list[np.ndarray], list[tuple[list[str], list[float]]]]:
    logits = sentence_logits(model, data, pad_token_id)
    return logits, [word_tags(lg, p, model.config.id2label) for lg, p in zip(logits, data.pieces)]


def predict_words(model: BertForTokenClassification, tokenizer: Tokenizer, sentences: Sequence[Sequence[str]], *,
                  max_length: int | None = None) -> list[list[str]]:
    """Tags per word for pre-split sentences (max_length: default the saved setting)."""
    if not sentences:
        return []
    data = encode_words(sentences, tokenizer, NerSettings.of(model, max_length), "<input>")
    return [tags for tags, _ in _decode(model, data, tokenizer.pad_token_id)[1]]


def predict(model: BertForTokenClassification, tokenizer: Tokenizer, texts: Sequence[str], *,
            max_length: int | None = None) -> list[dict[str, Any]]:
    """One {"entities": [{"type", "text", "start", "end", "score"}, ...]} per text, offsets into the text.

    An entity runs from its first piece's start to its last piece's end; its score is the mean
    probability of the tags of its words (each read on the word's first piece).
    """
    if not texts:
        return []
    data = encode_texts(texts, tokenizer, NerSettings.of(model, max_length))
    results = []
    for text, p, (tags, scores) in zip(texts, data.pieces, _decode(model, data, tokenizer.pad_token_id)[1]):
        ranges = p.word_ranges
        entities = []
        for type_, first, last in get_entities(tags):  # entity words are never O, so they all have pieces
            start, end = p.offsets[ranges[first][0]][0], p.offsets[ranges[last][1]][1]
            entities.append({"type": type_, "text": text[start:end], "start": start, "end": end,
                             "score": float(np.mean(scores[first:last + 1]))})
        results.append({"entities": entities})
    return results


# --------------------------------------------------------------------------- evaluation

def evaluate(model: BertForTokenClassification, data: Encoded, gold: Sequence[Sequence[str]],
             pad_token_id: int) -> dict[str, float]:
    """Entity precision/recall/F1 (seqeval default mode), word accuracy, mean loss over labelled
    pieces, and per-type F1 as `f1_<type>`."""
    logits, decoded = _decode(model, data, pad_token_id)
    predicted = [tags for tags, _ in decoded]
    scores = entity_scores(gold, predicted)
    words = sum(len(t) for t in gold)
    correct = sum(g == p for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps))
    labels = torch.tensor([label for p in data.pieces for label in p.labels], dtype=torch.long)
    flat = torch.from_numpy(np.concatenate(logits)) if logits else torch.empty(0, model.config.num_labels)
    loss = float(F.cross_entropy(flat, labels, ignore_index=NO_LABEL)) if (labels != NO_LABEL).any() else 0.0
    return {"loss": loss, "precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"],
            "accuracy": correct / words, **{f"f1_{t}": s["f1"] for t, s in scores["per_type"].items()}}


def evaluate_file(model: BertForTokenClassification, tokenizer: Tokenizer, data_file: str | Path, *,
                  max_length: int | None = None) -> dict[str, float]:
    """`evaluate` on a CoNLL file, read with the column layout and settings saved at fine-tuning."""
    settings = NerSettings.of(model, max_length)
    sentences = read_conll(data_file, token_column=settings.token_column, tag_column=settings.tag_column)
    check_tags(sentences, model.config.label2id, data_file)
    gold = [s.tags for s in sentences]
    data = encode_words([s.tokens for s in sentences], tokenizer, settings, str(data_file), gold,
                        model.config.label2id)
    return evaluate(model, data, gold, tokenizer.pad_token_id)


# --------------------------------------------------------------------------- fine-tuning

def finetune(model_dir: str | Path, train_file: str | Path, eval_file: str | Path | None, args: TrainArgs, *,
             max_length: int = 128, stride: int | None = None, label_all_tokens: bool = False,
             token_column: int = 0, tag_column: int = -1, max_windows: int = MAX_WINDOWS) -> TrainResult:
    """Fine-tune a pretrained encoder to tag the words of a CoNLL file; the best model (by entity F1)
    lands in args.output_dir with its settings in config.json["bertkit"]. A sentence longer than a window
    trains on at most `max_windows` of its windows, spread evenly over it (0: all; see `windows.cap_windows`)."""
    # Read and check everything before a model is loaded or a file written.
    settings = NerSettings(max_length, stride, label_all_tokens, token_column, tag_column)
    check_window(settings, checkpoint.load_config(model_dir).max_position_embeddings)
    train = read_conll(train_file, token_column=token_column, tag_column=tag_column)
    dev = read_conll(eval_file, token_column=token_column, tag_column=tag_column) if eval_file else []
    id2label = build_tags(train)
    label2id = {tag: i for i, tag in id2label.items()}
    check_tags(dev, label2id, eval_file)
    tokenizer = checkpoint.model_tokenizer(model_dir)
    train_data = encode_words([s.tokens for s in train], tokenizer, settings, str(train_file),
                              [s.tags for s in train], label2id)
    if dev:
        eval_data = encode_words([s.tokens for s in dev], tokenizer, settings, str(eval_file), [s.tags for s in dev],
                                 label2id)
    else:
        warn_no_eval_data()
        dev, eval_data = train, train_data
    # A window whose pieces are all unlabelled (say, the middle of one very long word) teaches
    # nothing, and a batch of only such windows would make the mean loss 0/0.
    per_sentence, first = [], 0
    for spans in train_data.spans:
        per_sentence.append(train_data.features[first:first + len(spans)])
        first += len(spans)
    if max_windows:
        per_sentence = cap_windows(per_sentence, max_windows, str(train_file), "sentences", [s.line for s in train])
    train_features = [f for windows in per_sentence for f in windows if any(label != NO_LABEL for label in f["labels"])]
    prepare_output_dir(args, inputs={"--model": model_dir, "--train": train_file, "--eval": eval_file},
                       settings={**settings.to_config(), "max_windows": max_windows})

    seed_everything(args.seed)  # the new classifier's initialisation
    model = BertForTokenClassification.from_pretrained(model_dir, id2label=id2label, attn_implementation="sdpa")
    model.config.extra["bertkit"] = settings.to_config()
    args.metric, args.greater_is_better = "f1", True
    logger.info("%s: %d sentences (%d windows), %d tags", train_file, len(train), len(train_features), len(id2label))
    gold = [s.tags for s in dev]
    return fit(model, train_features, args, lambda m: evaluate(m, eval_data, gold, tokenizer.pad_token_id),
               tokenizer.pad_token_id, tokenizer)
