"""ALBERT: the head reads the pretrained pooler (dense + tanh on the first token); dropout -> classifier are
new. Its layers share weights in groups, so the last layer is not run for the first position alone."""
from __future__ import annotations

import torch
from torch import nn

from . import Family, pooler_family
from .parts import Part


def _dropout(config) -> float:
    return config.classifier_dropout_prob


def _head(config, num_labels: int) -> list[Part]:
    return [("dropout", nn.Dropout(_dropout(config))), ("classifier", nn.Linear(config.hidden_size, num_labels))]


FAMILY = Family(
    name="ALBERT", model_types=("albert",), prefix="albert", new_head=_head, dropout=_dropout,
    pretrained=lambda config: [("albert.pooler", nn.Linear(config.hidden_size, config.hidden_size)),
                               (None, torch.tanh)],
    read=pooler_family, tokenizer_files=("tokenizer.json", "spiece.model"),
    pretrained_name="pooler",
)
