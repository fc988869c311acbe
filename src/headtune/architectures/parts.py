"""Building blocks the family modules share: heads as chains of named parts, their initialisation,
activations, and the last-layer shortcut of BERT-style encoders.

Nothing here knows a family: each family module (bert.py, distilbert.py, ...) composes these.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Sequence, Union

import torch
from torch import nn

# A head part: (its path in the checkpoint, e.g. "classifier" or "bert.pooler", and the module), or
# (None, a stateless function such as torch.tanh).
Part = tuple[Union[str, None], Union[nn.Module, Callable[[torch.Tensor], torch.Tensor]]]


class Chain(nn.Module):
    """Parts applied in order, each registered under its path in the checkpoint, so the chain's state
    dict holds exactly the checkpoint's keys for those parts ("bert.pooler.dense.weight", ...)."""

    def __init__(self, parts: Sequence[Part]):
        super().__init__()
        self.steps: list = []
        for path, step in parts:
            if path is None:
                self.steps.append(step)
                continue
            owner = self
            *outer, last = path.split(".")
            for name in outer:
                if not hasattr(owner, name):
                    owner.add_module(name, nn.Module())
                owner = getattr(owner, name)
            owner.add_module(last, step)
            self.steps.append(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = self.get_submodule(step)(x) if isinstance(step, str) else step(x)
        return x

    @property
    def paths(self) -> list[str]:
        return [step for step in self.steps if isinstance(step, str)]


class DenseHead(nn.Module):
    """dropout -> dense -> activation -> dropout -> out_proj: the classification head of RoBERTa, ELECTRA
    and MPNet (their `...ClassificationHead`), on the first token's hidden state."""

    def __init__(self, hidden: int, num_labels: int, dropout: float, activation: Callable):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden, num_labels)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.activation(self.dense(self.dropout(x))))
        return self.out_proj(x)


def linear_head(hidden: int, num_labels: int, dropout: float) -> list[Part]:
    """dropout -> classifier: the head of headtune's pooled model (pooled_model.py), under its names."""
    return [("dropout", nn.Dropout(dropout)), ("classifier", nn.Linear(hidden, num_labels))]


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.gelu(x, approximate="tanh")


# transformers' activation names (config.hidden_act, pooler_hidden_act, classifier_activation), without
# importing transformers: a run whose features are cached never imports it.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": nn.functional.gelu, "relu": torch.relu, "tanh": torch.tanh, "silu": nn.functional.silu,
    "swish": nn.functional.silu, "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh, "gelu_fast": _gelu_tanh,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not supported for a head (known: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def normal_init(head: nn.Module, config, generator: torch.Generator) -> None:
    """transformers' default init (PreTrainedModel._init_weights): Linear weights ~ N(0, initializer_range),
    biases 0, LayerNorm 1 and 0."""
    std = getattr(config, "initializer_range", None) or 0.02
    with torch.no_grad():
        for module in head.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, std, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()


def trunc_normal_(weight: torch.Tensor, std: float, cutoff: float, generator: torch.Generator) -> None:
    """N(0, std) truncated to +-cutoff*std (ModernBERT's init), drawn from `generator` by rejection."""
    with torch.no_grad():
        out = torch.empty_like(weight)
        todo = torch.ones_like(weight, dtype=torch.bool)
        while todo.any():
            draw = torch.randn(weight.shape, generator=generator) * std
            keep = todo & (draw.abs() <= cutoff * std)
            out[keep] = draw[keep]
            todo &= ~keep
        weight.copy_(out)


# --------------------------------------------------------------------------- the last-layer shortcut
#
# The cls reading needs one position of the last layer. Every layer but the last needs all positions,
# but the last layer's only consumer is the first token: its keys and values still come from every
# token, while its query, attention output and feed-forward block are needed for the first token alone.
# Running the last layer that way skips ~10/12 of its dense work: ~14 % of a 6-layer backbone's FLOPs
# (MiniLM, DistilBERT), ~7 % of a 12-layer one's. Families whose layers can be cut this way say so.


def attend_first(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention of the first token's query (B, 1, H) over all keys/values (B, T, H)."""
    b, _, h = k.shape
    d = h // heads

    def split(x):
        return x.view(b, -1, heads, d).transpose(1, 2)

    keep = mask[:, None, None, :].bool()  # padded keys get no attention, as in the model's own mask
    out = nn.functional.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=keep)
    return out.transpose(1, 2).reshape(b, 1, h)


def bert_layer_first(layer, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BertLayer.forward (and RoBERTa's, ELECTRA's: the same module layout), eval mode, first position only."""
    attention = layer.attention.self
    first = x[:, :1]
    context = attend_first(attention.query(first), attention.key(x), attention.value(x), mask,
                           attention.num_attention_heads)
    h = layer.attention.output(context, first)  # dense + residual + LayerNorm
    return layer.output(layer.intermediate(h), h)  # feed-forward + residual + LayerNorm


@contextmanager
def without_last_layer(layers_owner: nn.Module):
    """Run the encoder without its last layer (restored afterwards, even after an error); yields that layer."""
    layers = layers_owner.layer
    layers_owner.layer = nn.ModuleList(list(layers)[:-1])
    try:
        yield layers[-1]
    finally:
        layers_owner.layer = layers


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """The first token's hidden state ("cls") or the mean over the real tokens ("mean"): as pooled_model.pool."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def first_linear(head: nn.Module) -> nn.Linear | None:
    """The layer that reads the features: the first Linear registered in the head. In every family's head only
    dropout comes before it (tests/test_architectures.py checks that shifting its bias shifts the input), so
    centring.py can fold the features' mean into its bias."""
    return next((m for m in head.modules() if isinstance(m, nn.Linear)), None)


def final_linear(head: nn.Module) -> nn.Linear:
    """The layer that produces the logits: the last Linear registered in the head (folding a temperature
    into it scales the logits)."""
    return [m for m in head.modules() if isinstance(m, nn.Linear)][-1]

