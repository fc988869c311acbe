"""ELECTRA (discriminator): the head (`classifier`: dense -> GELU -> out_proj, with dropout) reads the first
token and is all new; its layers are BERT's."""
from __future__ import annotations

from torch import nn

from . import Family
from .bert import classifier_dropout
from .parts import DenseHead, Part, bert_layer_first


def _head(config, num_labels: int) -> list[Part]:
    return [("classifier", DenseHead(config.hidden_size, num_labels, classifier_dropout(config), nn.functional.gelu))]


FAMILY = Family(
    name="ELECTRA", model_types=("electra",), prefix="electra", new_head=_head, dropout=classifier_dropout,
    layers=lambda base: base.encoder, last_layer_first=bert_layer_first,
    tokenizer_files=("tokenizer.json", "vocab.txt"),
)
