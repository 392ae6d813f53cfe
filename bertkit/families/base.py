"""What a family is to bertkit: data and translation, no layers.

A family (BERT, RoBERTa, DistilBERT, ELECTRA, ...) runs on the one encoder in `model.py` and the one set of task
models in `heads.py`. What differs is written here as data: the names its `config.json` uses, the names its
weights carry in a transformers file, which structural switches it sets (how positions are counted, whether it has
a pooler or token types), how its task heads read a sentence, and which transformers class each head is saved as.

Weight names are translated at the edge, by prefix rules in both directions: `{p}` stands for the optional
encoder prefix (`distilbert.`; absent in a bare encoder's file) and `{n}` for a layer index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

# Head kinds: what a task model computes. They name the transformers class each family saves (`architectures`),
# and `bertkit export --head`.
HEAD_KINDS = ("base", "masked-lm", "pretraining", "discriminator", "sequence-classification",
              "token-classification", "question-answering", "multiple-choice")
# What `AutoModelForPreTraining` builds: the first of these kinds the family has (BERT's MLM + NSP, ELECTRA's
# discriminator, else the masked LM: transformers maps RoBERTa and DistilBERT pretraining to their masked LMs).
PRETRAINING_KINDS = ("pretraining", "discriminator", "masked-lm")

# The config.json fields of BERT, under bertkit's names (which are BERT's); families add or drop some.
BERT_CONFIG_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
    "initializer_range", "layer_norm_eps", "pad_token_id", "position_embedding_type", "classifier_dropout",
    "tie_word_embeddings", "id2label", "label2id", "problem_type",
)

KeyRule = tuple[str, str]  # (prefix template in transformers' files, prefix template in bertkit's modules)


@dataclass(frozen=True)
class SentenceHead:
    """How a sequence classifier (or multiple-choice scorer) turns the encoder's output into one vector per input.

    "pooler": the encoder's pooler output (tanh(dense(h_0))), then dropout (BERT).
    "first-token": h_0, dropout if `dropout_before`, `pre_classifier` (dense), `activation`, dropout (RoBERTa and
    ELECTRA: tanh / gelu, dropout before; DistilBERT: relu, no dropout before).
    """

    kind: str = "pooler"
    activation: str = "tanh"
    dropout_before: bool = True


@dataclass(frozen=True)
class Family:
    name: str  # as people write it, for messages
    model_types: tuple[str, ...]  # config.json `model_type` values read as this family (XLM-R is RoBERTa-shaped)
    prefix: str  # the encoder's attribute in task models and its key prefix in files (`roberta`)
    architectures: Mapping[str, str]  # head kind -> transformers class name; a kind not listed does not exist
    config_fields: tuple[str, ...] = BERT_CONFIG_FIELDS  # bertkit fields its config.json carries
    config_renames: Mapping[str, str] = field(default_factory=dict)  # config.json name -> bertkit name
    config_defaults: Mapping[str, Any] = field(default_factory=dict)  # transformers' defaults (bertkit names)
    position_offset: bool = False  # positions counted from pad_token_id + 1 over non-padding tokens (RoBERTa)
    sinusoidal_positions_field: bool = False  # has DistilBERT's fixed sinusoidal position table option
    pooler: bool = True  # the bare encoder has a pooler (tanh(dense(h_0)))
    token_types: bool = True  # the model takes token_type_ids
    mlm_activation: str | None = None  # the masked-LM head's activation; None: config.hidden_act
    sequence_head: SentenceHead = SentenceHead()
    choice_head: SentenceHead = SentenceHead()
    key_rules: tuple[KeyRule, ...] = ()  # every head's weights: transformers' names -> bertkit's
    head_key_rules: Mapping[str, tuple[KeyRule, ...]] = field(default_factory=dict)  # one head kind's own
    tokenizer: str = "wordpiece"  # the tokenizer model: wordpiece, bpe or unigram

    @property
    def model_type(self) -> str:
        return self.model_types[0]

    def architecture(self, head: str) -> str:
        """The transformers class `head` is saved as; an error if this family has no such head."""
        try:
            return self.architectures[head]
        except KeyError:
            kinds = ", ".join(k for k in HEAD_KINDS if k in self.architectures)
            raise ValueError(f"{self.name} has no {head} head in transformers; its heads: {kinds}") from None

    # --- config.json ---

    def read_config(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """config.json's fields under bertkit's names, with the family's transformers defaults for absent ones."""
        renamed = {self.config_renames.get(k, k): v for k, v in data.items()}
        return {**self.config_defaults, **renamed}

    def write_config(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """bertkit's fields -> the family's config.json fields (only those it has), under its names."""
        back = {v: k for k, v in self.config_renames.items()}
        return {back.get(k, k): v for k, v in fields.items() if k in self.config_fields}

    # --- weight names ---

    def to_bertkit_keys(self, state: Mapping[str, Any], head: str) -> dict[str, Any]:
        rules = self._rule_table[(head, False)]
        return {_rename(key, rules): value for key, value in state.items()}

    def to_transformers_keys(self, state: Mapping[str, Any], head: str) -> dict[str, Any]:
        rules = self._rule_table[(head, True)]
        return {_rename(key, rules): value for key, value in state.items()}

    @cached_property
    def _rule_table(self) -> dict[tuple[str, bool], list[tuple[re.Pattern[str], str]]]:
        table = {}
        for head in HEAD_KINDS:
            rules = [*self.head_key_rules.get(head, ()), *self.key_rules]
            for reverse in (False, True):
                pairs = [(b, a) if reverse else (a, b) for a, b in rules]
                # Longest source first, so a rule never shadows a more specific one.
                pairs.sort(key=lambda pair: -len(pair[0]))
                table[(head, reverse)] = [(_template_regex(src, self.prefix), dst) for src, dst in pairs]
        return table


def _template_regex(template: str, prefix: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{p\}", f"(?P<p>(?:{re.escape(prefix)}\\.)?)").replace(r"\{n\}", r"(?P<n>\d+)")
    return re.compile(pattern)


def _rename(key: str, rules: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, target in rules:
        match = pattern.match(key)
        if match:
            return target.format(**match.groupdict()) + key[match.end():]
    return key
