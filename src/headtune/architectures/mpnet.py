"""MPNet: the head (`classifier`: dense -> tanh -> out_proj, with dropout) reads the first token and is all
new. Positions start after padding_idx (two fewer fit); relative position bias: no last-layer shortcut."""
from __future__ import annotations

import torch

from . import Family
from .parts import DenseHead, Part


def _dropout(config) -> float:
    return config.hidden_dropout_prob


def _head(config, num_labels: int) -> list[Part]:
    return [("classifier", DenseHead(config.hidden_size, num_labels, _dropout(config), torch.tanh))]


FAMILY = Family(
    name="MPNet", model_types=("mpnet",), prefix="mpnet", new_head=_head, dropout=_dropout, position_offset=2,
    tokenizer_files=("tokenizer.json", "vocab.txt"),
)
