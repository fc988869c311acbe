"""RoBERTa and its relatives XLM-RoBERTa and CamemBERT: the head (`classifier`: dense -> tanh -> out_proj,
with dropout) reads the first token and is all new. Positions start after padding_idx, so two fewer fit."""
from __future__ import annotations

import torch

from . import Family
from .bert import classifier_dropout
from .parts import DenseHead, Part, bert_layer_first


def _head(config, num_labels: int) -> list[Part]:
    return [("classifier", DenseHead(config.hidden_size, num_labels, classifier_dropout(config), torch.tanh))]


FAMILY = Family(
    name="RoBERTa", model_types=("roberta", "xlm-roberta", "camembert"), prefix="roberta", new_head=_head,
    dropout=classifier_dropout, layers=lambda base: base.encoder, last_layer_first=bert_layer_first,
    position_offset=2,
    tokenizer_files=("tokenizer.json", "vocab.json", "sentencepiece.bpe.model"),
)
