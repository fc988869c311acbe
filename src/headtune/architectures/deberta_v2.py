"""DeBERTa-v2 and v3: the head (ContextPooler: dropout -> dense -> activation on the first token, then
dropout -> classifier) is all new in the pretrained checkpoints. Relative attention: no last-layer shortcut."""
from __future__ import annotations

import torch
from torch import nn

from . import Family
from .parts import Part, activation


def _dropout(config) -> float:
    cls = getattr(config, "cls_dropout", None)
    return config.hidden_dropout_prob if cls is None else cls


class ContextPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.pooler_hidden_size, config.pooler_hidden_size)
        self.dropout = nn.Dropout(config.pooler_dropout)
        self.activation = activation(config.pooler_hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(self.dropout(x)))


def _head(config, num_labels: int) -> list[Part]:
    return [("pooler", ContextPooler(config)), ("dropout", nn.Dropout(_dropout(config))),
            ("classifier", nn.Linear(config.hidden_size, num_labels))]


FAMILY = Family(
    name="DeBERTa-v2/v3", model_types=("deberta-v2",), prefix="deberta", new_head=_head, dropout=_dropout,
    tokenizer_files=("tokenizer.json", "spm.model"),
)
