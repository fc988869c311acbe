"""ModernBERT: its class pools (cls or mean, `classifier_pooling`) and then applies `head` (dense ->
activation -> LayerNorm), which comes pretrained with the masked-LM checkpoints and stays frozen unless
--train-pretrained-head; drop -> classifier are new. Both poolings are ordinary checkpoints."""
from __future__ import annotations

import torch
from torch import nn

from . import Family, Reading
from .parts import Part, activation, normal_init, trunc_normal_


class PredictionHead(nn.Module):  # ModernBertPredictionHead
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.act = activation(config.classifier_activation)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(x)))


def _head(config, num_labels: int) -> list[Part]:
    return [("drop", nn.Dropout(config.classifier_dropout)), ("classifier", nn.Linear(config.hidden_size, num_labels))]


def _read(config, pooling: str) -> Reading:
    chosen = config.classifier_pooling if pooling == "native" else pooling
    return Reading(pooling, chosen, True, True, {"classifier_pooling": chosen})


def _init(head: nn.Module, config, generator: torch.Generator) -> None:
    """ModernBertPreTrainedModel._init_weights: the classifier ~ N(0, hidden_size^-0.5) truncated at
    +-cutoff std, bias 0 (other layers as transformers' default)."""
    normal_init(head, config, generator)
    cutoff = getattr(config, "initializer_cutoff_factor", None) or 3.0
    classifier = head.get_submodule("classifier")
    trunc_normal_(classifier.weight, config.hidden_size ** -0.5, cutoff, generator)


def _cut(config, depth: int) -> dict:
    """Its config lists each layer's attention type (sliding or full): the first `depth` of them go too."""
    types = getattr(config, "layer_types", None)
    return {"num_hidden_layers": depth, **({"layer_types": list(types)[:depth]} if types else {})}


FAMILY = Family(
    name="ModernBERT", model_types=("modernbert",), prefix="model", new_head=_head,
    dropout=lambda config: config.classifier_dropout, pretrained=lambda config: [("head", PredictionHead(config))],
    read=_read, init=_init, cut=_cut, closing=lambda base: base.final_norm,
    tokenizer_files=("tokenizer.json",),
    pretrained_name="head",
)
