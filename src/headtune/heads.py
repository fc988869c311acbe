"""Where each architecture's classification head starts, so the backbone can run once.

For a registered architecture, `features` runs the frozen backbone up to the input of
the head, and `logits` runs the model's *own* head modules on those features, exactly
as its `forward` would. Training those modules in place means the saved folder is an
ordinary `AutoModelForSequenceClassification` checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class HeadSpec:
    point: str  # what the head reads; part of the feature-cache key
    modules: tuple[str, ...]  # the model's attributes that make up the head (dropout included)
    features: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None
    logits: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None

    @property
    def cached(self) -> bool:
        """True when the head can be trained on features from one backbone pass."""
        return self.features is not None


def _first_token(model, input_ids, attention_mask):
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]


def _pooled(model, input_ids, attention_mask):
    # BERT's pooler (dense + tanh on [CLS]) is pretrained and stays frozen, so it belongs to the cached pass.
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def _distilbert_head(model, x):  # DistilBertForSequenceClassification.forward after the backbone
    return model.classifier(model.dropout(torch.relu(model.pre_classifier(x))))


def _bert_head(model, x):  # BertForSequenceClassification.forward after the pooler
    return model.classifier(model.dropout(x))


def _roberta_head(model, x):  # RobertaClassificationHead reads [:, 0, :] of the sequence it is given
    return model.classifier(x[:, None, :])


_ROBERTA = HeadSpec("last_hidden_state[:, 0]", ("classifier",), _first_token, _roberta_head)

HEADS: dict[str, HeadSpec] = {
    "distilbert": HeadSpec("last_hidden_state[:, 0]", ("pre_classifier", "dropout", "classifier"),
                           _first_token, _distilbert_head),
    "bert": HeadSpec("pooler_output", ("dropout", "classifier"), _pooled, _bert_head),
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "camembert": _ROBERTA,
}


def head_spec(model: nn.Module, new_keys: set[str]) -> HeadSpec:
    """The registered spec, or a full-model fallback whose head is the modules that loading left new."""
    spec = HEADS.get(model.config.model_type)
    if spec is not None:
        return spec
    modules = tuple(sorted({key.split(".")[0] for key in new_keys}))
    return HeadSpec("full-model", modules, None, None)


def set_head_training(model: nn.Module, spec: HeadSpec, training: bool) -> None:
    """Backbone always in eval mode (no dropout on frozen features); head modules as asked."""
    model.eval()
    for name in spec.modules:
        getattr(model, name).train(training)


def head_parameters(model: nn.Module, spec: HeadSpec) -> list[nn.Parameter]:
    return [p for name in spec.modules for p in getattr(model, name).parameters()]
