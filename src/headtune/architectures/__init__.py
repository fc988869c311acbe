"""One entry per architecture family: everything headtune knows about a family lives in its module.

A `Family` says what its `...ForSequenceClassification` class does after the backbone (which head
parts come pretrained, which are new, how the new ones are initialised), how to read each pooling
(`Reading`), whether its last layer can run for the first token only, its position offset and its
tokenizer files. Nothing outside this package branches on `model_type`: it asks `family_of`.

Adding a family: write a module beside bert.py that defines `FAMILY`, and list it in `_MODULES`.
The registry-parametrised tests then test it (features vs the full model, trainable parameters,
checkpoints that load in `pipeline`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .parts import Chain, Part, linear_head, normal_init, pool

READABLE = ("native", "cls", "mean")  # what --pooling can ask of a family ("auto" is resolved before)


@dataclass(frozen=True)
class Reading:
    """What the head reads, and which head reads it."""

    name: str  # the pooling as asked for: "native", "cls" or "mean" (metrics.json's "pooling")
    pooling: str  # the vector taken from the last hidden states: "cls" (first token) or "mean" (over real tokens)
    through_pretrained: bool  # the family's pretrained head parts (BERT's pooler, ...) apply to that vector
    own_head: bool  # True: the architecture's own head, an ordinary checkpoint; False: headtune's pooled model
    class_config: dict = field(default_factory=dict)  # settings the own class needs (ModernBERT: classifier_pooling)


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.model_type values this entry covers
    prefix: str  # the backbone's attribute in ...ForSequenceClassification (its base_model_prefix)
    new_head: Callable[[Any, int], list[Part]]  # (config, labels) -> the head parts a pretrained checkpoint lacks
    dropout: Callable[[Any], float]  # the head's dropout, also used by headtune's linear head on this family
    pretrained: Callable[[Any], list[Part]] | None = None  # head parts that come pretrained (frozen by default)
    read: Callable[[Any, str], Reading] | None = None  # (config, pooling) -> Reading; default: `first_token_family`
    layers: Callable[[nn.Module], nn.Module] | None = None  # backbone -> the module whose `.layer` holds the layers
    last_layer_first: Callable | None = None  # (last layer, hidden below it, mask) -> first position's output
    init: Callable[[nn.Module, Any, torch.Generator], None] = normal_init  # initialises the new head parts
    cut: Callable[[Any, int], dict] | None = None  # (config, depth) -> the config of its first layers; default: cut_to
    closing: Callable[[nn.Module], nn.Module] | None = None  # backbone -> what it applies after its last layer
    position_offset: int = 0  # positions the tokenizer cannot use (RoBERTa-style: padding_idx + 1)
    tokenizer_files: tuple[str, ...] = ("tokenizer.json",)
    pretrained_name: str = "pretrained head"  # what `headtune models` calls the pretrained head parts

    def reading(self, config, pooling: str) -> Reading:
        return (self.read or first_token_family)(config, pooling)

    def cut_config(self, config, depth: int) -> dict:
        """The config settings that load the model as its first `depth` layers, a model of its own (the weights of
        the layers above are left unloaded). Its last hidden states are the full model's at that depth, through
        whatever the family applies after its last layer (ModernBERT's final norm)."""
        return (self.cut or cut_to)(config, depth)

    @property
    def trimmed(self) -> bool:
        """The cls reading runs the last layer for the first position only (see parts.bert_layer_first)."""
        return self.last_layer_first is not None


def cut_to(config, depth: int) -> dict:
    """The layer count alone (DistilBERT's n_layers too: transformers maps num_hidden_layers to it)."""
    return {"num_hidden_layers": depth}


def first_token_family(config, pooling: str) -> Reading:
    """A class whose head reads the first token's hidden state and has no pretrained parts (DistilBERT,
    RoBERTa, ELECTRA, DeBERTa, MPNet): native and cls are the same reading; mean needs headtune's model."""
    if pooling in ("native", "cls"):
        return Reading(pooling, "cls", False, True)
    return Reading(pooling, pooling, False, False)


def pooler_family(config, pooling: str) -> Reading:
    """A class whose head reads a pretrained pooler on the first token (BERT, ALBERT): native goes through
    the pooler; cls (the raw first token) and mean need headtune's model."""
    if pooling == "native":
        return Reading("native", "cls", True, True)
    return Reading(pooling, pooling, False, False)


_MODULES = ("distilbert", "bert", "roberta", "albert", "electra", "deberta_v2", "mpnet", "modernbert")
FAMILIES: tuple[Family, ...] = tuple(importlib.import_module(f".{m}", __name__).FAMILY for m in _MODULES)
_BY_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}


def family_of(model_type: str) -> Family | None:
    """The registered family of a config's model_type, or None (the model then trains the slow way)."""
    return _BY_TYPE.get(model_type)


def table() -> str:
    """`headtune models`: each family, its model types, the one-pass path, the last-layer shortcut, and what
    each pooling reads and how its checkpoint loads."""
    from transformers import AutoConfig

    def how(family: Family, config, pooling: str) -> str:
        reading = family.reading(config, pooling)
        what = reading.pooling + (f">{family.pretrained_name}" if reading.through_pretrained else "")
        return f"{pooling}={what}" + ("" if reading.own_head else "*")

    rows = [("family", "model types", "one pass", "last-layer shortcut", "poolings (what the head reads)")]
    for family in FAMILIES:
        config = AutoConfig.for_model(family.model_types[0])
        rows.append((family.name, ", ".join(family.model_types), "yes", "yes" if family.trimmed else "no",
                     "  ".join(how(family, config, p) for p in READABLE)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    return "\n".join(lines + [
        "",
        "one pass: features are computed once and cached; the head trains on them (a model type not listed trains",
        "  through its own class, the whole frozen model running every epoch).",
        "*: saved with headtune's modeling file; transformers loads it with trust_remote_code=True.",
        "auto (the default) uses the model's sentence-transformers pooling (mean or cls) when it has one, else native."])


def tokenizer_files() -> tuple[str, ...]:
    """Every file that makes a tokenizer on its own, across the families."""
    return tuple(dict.fromkeys(name for family in FAMILIES for name in family.tokenizer_files))


# --------------------------------------------------------------------------- heads


@dataclass
class HeadPlan:
    """The head a run trains on a family and reading, and the frozen head parts before it."""

    family: Family
    reading: Reading
    train_pretrained: bool  # the pretrained head parts train too (--train-pretrained-head)

    @property
    def frozen_parts(self) -> bool:
        """Pretrained head parts that run inside the backbone pass, frozen."""
        return self.reading.through_pretrained and not self.train_pretrained

    @property
    def point(self) -> str:
        """What the cached features are: part of the feature-cache key."""
        point = self.reading.pooling
        return f"{point}>pretrained-head" if self.frozen_parts else point

    def parts(self, config, num_labels: int) -> tuple[list[Part], list[Part]]:
        """(pretrained parts that train, new parts) of the head."""
        pretrained = self.family.pretrained(config) if self.reading.through_pretrained and self.train_pretrained else []
        if self.reading.own_head:
            return pretrained, self.family.new_head(config, num_labels)
        return pretrained, linear_head(config.hidden_size, num_labels, self.family.dropout(config))

    def new_head(self, config, num_labels: int, seed: int, pretrained_state: dict[str, torch.Tensor] | None = None
                 ) -> Chain:
        """The untrained head: new parts initialised as transformers initialises them, from their own seeded
        generator (the same seed gives the same head whatever else drew from torch's global RNG); pretrained
        parts that train start from their pretrained weights (`pretrained_state`: the model's state dict)."""
        trained_pretrained, new = self.parts(config, num_labels)
        head = Chain(trained_pretrained + new)
        fresh = Chain(new)  # the same module objects: init touches only the new parts
        self.family.init(fresh, config, torch.Generator().manual_seed(seed))
        if trained_pretrained and pretrained_state is not None:
            keys = [k for k in head.state_dict() if k not in fresh.state_dict()]
            head.load_state_dict({k: pretrained_state[k] for k in keys}, strict=False)
        return head

    def head_keys(self, config, num_labels: int) -> set[str]:
        """The checkpoint keys the trained head writes."""
        trained_pretrained, new = self.parts(config, num_labels)
        return set(Chain(trained_pretrained + new).state_dict())

    def pretrained_left_out(self, config) -> int:
        """Parameters of the body that are not frozen weights of the saved model: pretrained head parts that
        train (they count as head), or that headtune's pooled model has no use for (BERT's pooler on mean)."""
        if self.family.pretrained is None:
            return 0
        if self.reading.own_head and not (self.reading.through_pretrained and self.train_pretrained):
            return 0
        with torch.device("meta"):
            return sum(p.numel() for p in Chain(self.family.pretrained(config)).parameters())

    def frozen(self, config, state: dict[str, torch.Tensor]) -> Chain | None:
        """The pretrained head parts that run in the backbone pass, with their weights from `state`."""
        if not self.frozen_parts:
            return None
        chain = Chain(self.family.pretrained(config))
        chain.load_state_dict({k: state[k] for k in chain.state_dict()})
        return chain.eval()


def backbone_features(model: nn.Module, plan: HeadPlan, frozen: Chain | None, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor, trim: bool = True) -> torch.Tensor:
    """The tensor the head reads, from a loaded ...ForSequenceClassification model (eval mode).

    With `trim` and a family that allows it, the cls reading runs the last layer for the first position
    only; `trim=False` is the ordinary full forward (tests compare the two; benchmarks' baselines use it).
    """
    family, base = plan.family, model.base_model
    if plan.reading.pooling == "cls" and trim and family.trimmed:
        from .parts import without_last_layer

        with without_last_layer(family.layers(base)) as last:
            below = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        vector = family.last_layer_first(last, below, attention_mask)[:, 0]
    else:
        hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        vector = pool(hidden, attention_mask, plan.reading.pooling)
    return frozen(vector) if frozen is not None else vector


def layer_features(model: nn.Module, plan: HeadPlan, frozen: Chain | None, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
    """(texts, layers, hidden): for each depth N from 1 to the last, what the head would read from the model cut
    to its first N layers (--depth N), all from one forward of the whole model (--depth auto). Layer N's hidden
    states go through what the backbone applies after its last layer (ModernBERT's final norm), as in the cut
    model, then through the reading; the last depth is the model's own output."""
    family, base = plan.family, model.base_model
    out = base(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    closing = family.closing(base) if family.closing is not None else None
    states = [closing(h) if closing is not None else h for h in out.hidden_states[1:-1]]  # [0]: the embeddings
    vectors = [pool(h, attention_mask, plan.reading.pooling) for h in [*states, out.last_hidden_state]]
    return torch.stack([frozen(v) if frozen is not None else v for v in vectors], dim=1)
