"""BERT: the head reads the pretrained pooler (dense + tanh on the first token); dropout -> classifier are new."""
from __future__ import annotations

import torch
from torch import nn

from . import Family, pooler_family
from .parts import Part, bert_layer_first


def classifier_dropout(config) -> float:
    """`classifier_dropout`, else `hidden_dropout_prob`: BERT's, RoBERTa's and ELECTRA's rule."""
    return config.classifier_dropout if getattr(config, "classifier_dropout", None) is not None \
        else config.hidden_dropout_prob


class Pooler(nn.Module):  # BertPooler, on the first token's hidden state
    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x))


def _head(config, num_labels: int) -> list[Part]:
    return [("dropout", nn.Dropout(classifier_dropout(config))), ("classifier", nn.Linear(config.hidden_size, num_labels))]


FAMILY = Family(
    name="BERT", model_types=("bert",), prefix="bert", new_head=_head, dropout=classifier_dropout,
    pretrained=lambda config: [("bert.pooler", Pooler(config.hidden_size))], read=pooler_family,
    layers=lambda base: base.encoder, last_layer_first=bert_layer_first,
    tokenizer_files=("tokenizer.json", "vocab.txt"),
    pretrained_name="pooler",
)
