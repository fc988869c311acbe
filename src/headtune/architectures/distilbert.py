"""DistilBERT: the head reads the first token; pre_classifier -> ReLU -> dropout -> classifier, all new."""
from __future__ import annotations

import torch
from torch import nn

from . import Family
from .parts import Part, attend_first


def _head(config, num_labels: int) -> list[Part]:  # DistilBertForSequenceClassification.forward after the backbone
    return [("pre_classifier", nn.Linear(config.dim, config.dim)), (None, torch.relu),
            ("dropout", nn.Dropout(config.seq_classif_dropout)), ("classifier", nn.Linear(config.dim, num_labels))]


def _layer_first(layer, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TransformerBlock.forward (eval mode) for the first position only."""
    attention = layer.attention
    first = x[:, :1]
    context = attend_first(attention.q_lin(first), attention.k_lin(x), attention.v_lin(x), mask, attention.n_heads)
    h = layer.sa_layer_norm(attention.out_lin(context) + first)
    return layer.output_layer_norm(layer.ffn(h) + h)


FAMILY = Family(
    name="DistilBERT", model_types=("distilbert",), prefix="distilbert", new_head=_head,
    dropout=lambda config: config.seq_classif_dropout,
    layers=lambda base: base.transformer, last_layer_first=_layer_first,
    tokenizer_files=("tokenizer.json", "vocab.txt"),
)
