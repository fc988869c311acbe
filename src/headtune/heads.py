"""Where each architecture's classification head starts, so the backbone can run once.

For a registered architecture, `features` runs the frozen backbone up to the input of
the head, and `head` builds a standalone copy of the model's classification head: the
same layers under the same names, so its state dict holds exactly the checkpoint's head
keys and its logits on the features equal the full model's `forward` (tests check both).
Training a standalone head means a run whose features are cached never needs the model.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class HeadSpec:
    point: str  # what the head reads; part of the feature-cache key
    modules: tuple[str, ...]  # the model's attributes that make up the head (dropout included)
    features: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None
    head: Callable[[object, int], nn.Module] | None  # (model config, number of labels) -> untrained head
    # The same tensor from an ordinary full forward of the backbone: what `features` must equal (tests),
    # and what a user's own encode-once script would run (the benchmarks' baselines).
    reference: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    @property
    def cached(self) -> bool:
        """True when the head can be trained on features from one backbone pass."""
        return self.features is not None


# --------------------------------------------------------------------------- the backbone pass
#
# The head reads one position (the first token) of the last layer. Every layer but the last needs
# all positions, but the last layer's only consumer is that first token: its keys and values still
# come from every token, while its query, attention output and feed-forward block are needed for the
# first token alone. Running the last layer that way skips ~10/12 of its dense work: ~14 % of a
# 6-layer backbone's FLOPs (MiniLM, DistilBERT), ~7 % of a 12-layer one's.


def _attend_first(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention of the first token's query (B, 1, H) over all keys/values (B, T, H)."""
    b, _, h = k.shape
    d = h // heads

    def split(x):
        return x.view(b, -1, heads, d).transpose(1, 2)

    keep = mask[:, None, None, :].bool()  # padded keys get no attention, as in the model's own mask
    out = nn.functional.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=keep)
    return out.transpose(1, 2).reshape(b, 1, h)


def _bert_layer_first(layer, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BertLayer / RobertaLayer.forward (eval mode) for the first position only."""
    attention = layer.attention.self
    first = x[:, :1]
    context = _attend_first(attention.query(first), attention.key(x), attention.value(x), mask,
                            attention.num_attention_heads)
    h = layer.attention.output(context, first)  # dense + residual + LayerNorm
    return layer.output(layer.intermediate(h), h)  # feed-forward + residual + LayerNorm


def _distilbert_layer_first(layer, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DistilBERT's TransformerBlock.forward (eval mode) for the first position only."""
    attention = layer.attention
    first = x[:, :1]
    context = _attend_first(attention.q_lin(first), attention.k_lin(x), attention.v_lin(x), mask, attention.n_heads)
    h = layer.sa_layer_norm(attention.out_lin(context) + first)
    return layer.output_layer_norm(layer.ffn(h) + h)


@contextmanager
def _without_last_layer(layers_owner: nn.Module):
    """Run the encoder without its last layer (restored afterwards); returns that layer."""
    layers = layers_owner.layer
    layers_owner.layer = nn.ModuleList(list(layers)[:-1])
    try:
        yield layers[-1]
    finally:
        layers_owner.layer = layers


def _first_token_fast(layers_of: Callable[[nn.Module], nn.Module], last_layer_first: Callable):
    def features(model, input_ids, attention_mask):
        with _without_last_layer(layers_of(model.base_model)) as last:
            below = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return last_layer_first(last, below, attention_mask)[:, 0]
    return features


_bert_first = _first_token_fast(lambda base: base.encoder, _bert_layer_first)
_distilbert_first = _first_token_fast(lambda base: base.transformer, _distilbert_layer_first)


def _bert_pooled_fast(model, input_ids, attention_mask):
    # BERT's pooler (dense + tanh on [CLS]) is pretrained and stays frozen, so it belongs to the cached pass.
    return model.base_model.pooler(_bert_first(model, input_ids, attention_mask)[:, None])


def _first_token(model, input_ids, attention_mask):
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]


def _pooled(model, input_ids, attention_mask):
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output


# --------------------------------------------------------------------------- the heads


def _dropout(config) -> float:
    return config.classifier_dropout if getattr(config, "classifier_dropout", None) is not None \
        else config.hidden_dropout_prob


class DistilBertHead(nn.Module):  # DistilBertForSequenceClassification.forward after the backbone
    def __init__(self, config, num_labels: int):
        super().__init__()
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.classifier = nn.Linear(config.dim, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.relu(self.pre_classifier(x))))


class BertHead(nn.Module):  # BertForSequenceClassification.forward after the pooler
    def __init__(self, config, num_labels: int):
        super().__init__()
        self.dropout = nn.Dropout(_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(x))


class _RobertaClassifier(nn.Module):  # RobertaClassificationHead, on the first token's features
    def __init__(self, config, num_labels: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(_dropout(config))
        self.out_proj = nn.Linear(config.hidden_size, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.tanh(self.dense(self.dropout(x))))
        return self.out_proj(x)


class RobertaHead(nn.Module):  # RobertaForSequenceClassification: the head is the `classifier` module
    def __init__(self, config, num_labels: int):
        super().__init__()
        self.classifier = _RobertaClassifier(config, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


_ROBERTA = HeadSpec("last_hidden_state[:, 0]", ("classifier",), _bert_first, RobertaHead, _first_token)

HEADS: dict[str, HeadSpec] = {
    "distilbert": HeadSpec("last_hidden_state[:, 0]", ("pre_classifier", "dropout", "classifier"),
                           _distilbert_first, DistilBertHead, _first_token),
    "bert": HeadSpec("pooler_output", ("dropout", "classifier"), _bert_pooled_fast, BertHead, _pooled),
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "camembert": _ROBERTA,
}


def new_head(spec: HeadSpec, config, num_labels: int, seed: int) -> nn.Module:
    """The untrained head, initialised as transformers initialises these layers (weights ~ N(0, initializer_range),
    biases 0), from its own seeded generator: the same seed gives the same head whether or not the model
    was loaded in this run, and whatever else drew from torch's global RNG before."""
    head = spec.head(config, num_labels)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in head.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, config.initializer_range, generator=generator)
                module.bias.zero_()
    return head


def head_spec(model: nn.Module, new_keys: set[str]) -> HeadSpec:
    """The registered spec, or a full-model fallback whose head is the modules that loading left new."""
    spec = HEADS.get(model.config.model_type)
    if spec is not None:
        return spec
    modules = tuple(sorted({key.split(".")[0] for key in new_keys}))
    return HeadSpec("full-model", modules, None, None)


def model_head(model: nn.Module, spec: HeadSpec) -> nn.Module:
    """The fallback's head: the model's own head modules, trained in place. The model stays in eval mode,
    so `train()` on this container switches dropout on in the head only."""
    model.eval()
    return nn.ModuleDict({name: getattr(model, name) for name in spec.modules})


def head_parameters(model: nn.Module, spec: HeadSpec) -> list[nn.Parameter]:
    return [p for name in spec.modules for p in getattr(model, name).parameters()]


def is_head_key(spec: HeadSpec, key: str) -> bool:
    """Whether a state-dict key belongs to one of the head's modules."""
    return key.split(".", 1)[0] in spec.modules


def count_parameters(model: nn.Module, spec: HeadSpec) -> tuple[int, int]:
    """(head, everything else) parameter counts of the model."""
    head = sum(p.numel() for p in head_parameters(model, spec))
    return head, sum(p.numel() for p in model.parameters()) - head
