"""Task models, written once over the encoder for every family, with transformers' output names.

Each is the family's encoder (under its prefix: `self.bert`, `self.roberta`, ...; `self.base_model` whichever it
is) plus a few layers. Where families shape a head differently (RoBERTa's classifier reads `<s>` through its own
dense + tanh, DistilBERT's through `pre_classifier` + ReLU), the family's data says which (`families/`). Losses
follow transformers exactly (labels of -100 are ignored) and never write to the config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import get_activation
from .config import EncoderConfig
from .model import EncoderModel
from .outputs import EncoderOutput, LogitsOutput, PreTrainingOutput, QuestionAnsweringOutput
from .pretrained import PreTrainedModel


class TaskModel(PreTrainedModel):
    """An encoder under the family's prefix, and whatever head a subclass adds."""

    def __init__(self, config: EncoderConfig, add_pooling_layer: bool) -> None:
        super().__init__(config)
        self.add_module(config.family.prefix, EncoderModel(config, add_pooling_layer=add_pooling_layer))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
               token_type_ids: torch.Tensor | None, position_ids: torch.Tensor | None,
               output_hidden_states: bool, output_attentions: bool) -> EncoderOutput:
        return self.base_model(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                               output_attentions)


class BertPredictionHeadTransform(nn.Module):
    """dense (H -> E) -> activation -> LayerNorm: the masked-LM transform (narrowing to E for ELECTRA)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        width = config.embedding_width
        self.dense = nn.Linear(config.hidden_size, width)
        self.act = get_activation(config.family.mlm_activation or config.hidden_act)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(hidden)))


class BertLMPredictionHead(nn.Module):
    """transform -> scores over the vocabulary; the decoder matrix is the word embeddings when tied."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.embedding_width, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden), self.decoder.weight, self.bias)  # (..., V)


class BertMLMHeads(nn.Module):
    """`cls.predictions` and, for pretraining, `cls.seq_relationship` (next-sentence prediction)."""

    def __init__(self, config: EncoderConfig, with_nsp: bool) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if with_nsp else None


class _MaskedLMBase(TaskModel):
    """Shared by the two heads that predict tokens: weight tying and the MLM loss."""

    cls: BertMLMHeads

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.cls.predictions.decoder.weight = self.base_model.embeddings.word_embeddings.weight

    def tied_parameter_names(self) -> list[str]:
        return ["cls.predictions.decoder.weight"] if self.config.tie_word_embeddings else []

    def _init_module(self, module: nn.Module) -> None:
        super()._init_module(module)
        if isinstance(module, BertLMPredictionHead):
            nn.init.zeros_(module.bias)

    def _mlm_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), ignore_index=-100)

    def _mlm_scores(self, hidden: torch.Tensor, labels: torch.Tensor | None,
                    masked_positions_only: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, loss). With `masked_positions_only` the vocabulary projection, the largest matrix
        product of a small model, runs on the labelled positions alone: logits are then (targets, V)
        in row-major order of the labels, and the loss is the same."""
        if not masked_positions_only:
            logits = self.cls.predictions(hidden)  # (B, T, V)
            return logits, self._mlm_loss(logits, labels) if labels is not None else None
        if labels is None:
            raise ValueError("masked_positions_only=True needs labels (which positions are masked)")
        targets = labels != -100
        logits = self.cls.predictions(hidden[targets])  # (targets, V)
        return logits, self._mlm_loss(logits, labels[targets])


class EncoderForMaskedLM(_MaskedLMBase):
    """Masked-token prediction: BertForMaskedLM, RobertaForMaskedLM, DistilBertForMaskedLM, ELECTRA's generator."""

    head_kind = "masked-lm"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config, add_pooling_layer=False)
        self.cls = BertMLMHeads(config, with_nsp=False)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        masked_positions_only: bool = False,
    ) -> LogitsOutput:
        """labels: (B, T) token ids to predict at masked positions, -100 elsewhere."""
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        logits, loss = self._mlm_scores(out.last_hidden_state, labels, masked_positions_only)
        return LogitsOutput(logits, loss, out.hidden_states, out.attentions)


class EncoderForPreTraining(_MaskedLMBase):
    """Masked LM + next-sentence prediction, as BERT was pretrained."""

    head_kind = "pretraining"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config, add_pooling_layer=True)
        self.cls = BertMLMHeads(config, with_nsp=True)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        masked_positions_only: bool = False,
    ) -> PreTrainingOutput:
        """labels: (B, T) MLM targets (-100 = not masked); next_sentence_label: (B,) 0 = B follows A, 1 = random
        (or, trained for sentence order, 1 = swapped)."""
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        prediction_logits, loss = self._mlm_scores(out.last_hidden_state, labels, masked_positions_only)
        nsp_logits = self.cls.seq_relationship(out.pooler_output)  # (B, 2)
        if next_sentence_label is not None:
            nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label.flatten())
            loss = nsp_loss if loss is None else loss + nsp_loss
        return PreTrainingOutput(prediction_logits, nsp_logits, loss, out.hidden_states, out.attentions)


class DiscriminatorHead(nn.Module):
    """ELECTRA's `discriminator_predictions`: dense -> activation -> one logit per token (replaced or original)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.hidden_act)
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(self.act(self.dense(hidden))).squeeze(-1)  # (B, T)


class EncoderForTokenDiscrimination(TaskModel):
    """Replaced-token detection, ELECTRA's pretraining (transformers' ElectraForPreTraining)."""

    head_kind = "discriminator"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config, add_pooling_layer=False)
        self.discriminator_predictions = DiscriminatorHead(config)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> LogitsOutput:
        """labels: (B, T) 1 where the token was replaced, 0 where it is the original; logits (B, T)."""
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        logits = self.discriminator_predictions(out.last_hidden_state)  # (B, T)
        loss = None
        if labels is not None:
            real = attention_mask.bool() if attention_mask is not None else torch.ones_like(labels, dtype=torch.bool)
            loss = F.binary_cross_entropy_with_logits(logits[real].float(), labels[real].float())
        return LogitsOutput(logits, loss, out.hidden_states, out.attentions)


def _classifier_dropout(config: EncoderConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


class _SentenceScorer(TaskModel):
    """One vector per input (the pooler's, or h_0 through `pre_classifier`, as the family's head reads it),
    dropout, then `classifier`: sequence classification and multiple choice."""

    def __init__(self, config: EncoderConfig, out_features: int, choice: bool) -> None:
        spec = config.family.choice_head if choice else config.family.sequence_head
        super().__init__(config, add_pooling_layer=spec.kind == "pooler")
        self.spec = spec
        self.pre_classifier = nn.Linear(config.hidden_size, config.hidden_size) if spec.kind == "first-token" else None
        self.pre_classifier_act = get_activation(spec.activation)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, out_features)
        self.init_weights()

    def score(self, out: EncoderOutput) -> torch.Tensor:
        """(B, T, H) outputs -> (B, out_features)."""
        if self.pre_classifier is None:
            vector = out.pooler_output  # (B, H)
        else:
            vector = out.last_hidden_state[:, 0]  # (B, H): [CLS] / <s>
            if self.spec.dropout_before:
                vector = self.dropout(vector)
            vector = self.pre_classifier_act(self.pre_classifier(vector))
        return self.classifier(self.dropout(vector))


class EncoderForSequenceClassification(_SentenceScorer):
    """A sentence (or pair) -> labels. Single-label, multi-label (sigmoid per label) or regression (num_labels=1)."""

    head_kind = "sequence-classification"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config, config.num_labels, choice=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> LogitsOutput:
        """labels: (B,) class ids, (B,) or (B, labels) floats for regression, (B, labels) 0/1 for multi-label."""
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        logits = self.score(out)  # (B, labels)
        loss = self.loss(logits, labels) if labels is not None else None
        return LogitsOutput(logits, loss, out.hidden_states, out.attentions)

    def problem_type(self, labels: torch.Tensor) -> str:
        """The config's problem_type, else inferred from the labels as transformers does."""
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.config.num_labels == 1:
            return "regression"
        if labels.dtype in (torch.long, torch.int):
            return "single_label_classification"
        return "multi_label_classification"

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        problem = self.problem_type(labels)
        logits = logits.float()
        if problem == "regression":
            if self.config.num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze().float())
            return F.mse_loss(logits, labels.float())
        if problem == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.float())


class EncoderForTokenClassification(TaskModel):
    """Each token's hidden state -> a tag (NER, POS)."""

    head_kind = "token-classification"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> LogitsOutput:
        """labels: (B, T) tag ids, -100 on tokens that carry no label (specials, later sub-tokens, padding)."""
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), ignore_index=-100)
        return LogitsOutput(logits, loss, out.hidden_states, out.attentions)


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
              end_positions: torch.Tensor) -> torch.Tensor:
    """Extractive QA's loss (as transformers'): the mean of start and end cross-entropy, positions past the sequence
    (an answer cut off by truncation) ignored."""
    ignored = start_logits.size(1)
    losses = [F.cross_entropy(logits.float(), positions.flatten().clamp(0, ignored), ignore_index=ignored)
              for logits, positions in ((start_logits, start_positions), (end_logits, end_positions))]
    return (losses[0] + losses[1]) / 2


class EncoderForQuestionAnswering(TaskModel):
    """Extractive QA: a start and an end score for every token."""

    head_kind = "question-answering"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.qa_dropout)  # DistilBERT's qa_dropout; BERT has none (0)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> QuestionAnsweringOutput:
        """start_positions, end_positions: (B,) token indices of the answer span (0 = [CLS] = no answer)."""
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        start_logits, end_logits = self.qa_outputs(self.dropout(out.last_hidden_state)).unbind(dim=-1)  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringOutput(start_logits.contiguous(), end_logits.contiguous(), loss, out.hidden_states, out.attentions)


class EncoderForMultipleChoice(_SentenceScorer):
    """Each (context, choice) pair's vector -> one score; softmax across the choices."""

    head_kind = "multiple-choice"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config, 1, choice=True)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> LogitsOutput:
        """input_ids, attention_mask, token_type_ids: (B, choices, T); labels: (B,) index of the right choice."""
        num_choices = input_ids.size(1)
        flat = [t.flatten(0, 1) if t is not None else None for t in (input_ids, attention_mask, token_type_ids)]
        out = self.encode(*flat, position_ids, output_hidden_states, output_attentions)  # on (B·choices, T)
        logits = self.score(out).view(-1, num_choices)  # (B, choices)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return LogitsOutput(logits, loss, out.hidden_states, out.attentions)


# The names these had when bertkit was BERT only: the same classes, for every family.
BertForMaskedLM = EncoderForMaskedLM
BertForPreTraining = EncoderForPreTraining
BertForSequenceClassification = EncoderForSequenceClassification
BertForTokenClassification = EncoderForTokenClassification
BertForQuestionAnswering = EncoderForQuestionAnswering
BertForMultipleChoice = EncoderForMultipleChoice
