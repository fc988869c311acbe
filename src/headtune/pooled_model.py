"""A text classifier that reads a pooled vector of an encoder's last hidden states: headtune's saved
model for a pooling the architecture's own `...ForSequenceClassification` class cannot express
(mean pooling on BERT, say).

headtune copies this file, unchanged, into such a model folder as `modeling_headtune.py`, and
`config.json` names it in `auto_map`, so `AutoModelForSequenceClassification.from_pretrained(folder,
trust_remote_code=True)` and `pipeline(..., trust_remote_code=True)` load the folder. headtune itself
loads such a folder with its own installed copy of this module and runs no code from the folder.
Without `trust_remote_code`, transformers refuses the folder (its `model_type` is not one of
transformers' own), instead of silently loading a model that pools differently.

Self-contained on purpose: it imports only torch and transformers.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.auto.modeling_auto import MODEL_MAPPING

POOLINGS = ("cls", "mean")


class HeadtunePooledConfig(PreTrainedConfig):
    """The encoder's own config (a plain dict, as in its config.json), the pooling and the head's dropout."""

    model_type = "headtune_pooled"

    def __init__(self, encoder: dict | None = None, pooling: str = "mean", classifier_dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(encoder, PreTrainedConfig):
            encoder = encoder.to_dict()
        self.encoder = dict(encoder or {})
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout

    def encoder_config(self) -> PreTrainedConfig:
        settings = dict(self.encoder)
        return AutoConfig.for_model(settings.pop("model_type"), **settings)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """The first token's hidden state ("cls"), or the mean over the tokens the mask keeps ("mean")."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class HeadtunePooledForSequenceClassification(PreTrainedModel):
    config_class = HeadtunePooledConfig
    base_model_prefix = "backbone"

    def __init__(self, config: HeadtunePooledConfig):
        super().__init__(config)
        encoder_config = config.encoder_config()
        backbone_class = MODEL_MAPPING[type(encoder_config)]
        parameters = inspect.signature(backbone_class.__init__).parameters
        # a pooler would be dead weight: the head reads the pooled hidden states instead
        extra = {"add_pooling_layer": False} if "add_pooling_layer" in parameters else {}
        self.backbone = backbone_class(encoder_config, **extra)
        self._takes_token_types = "token_type_ids" in inspect.signature(self.backbone.forward).parameters
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(encoder_config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self):
        return self.backbone.get_input_embeddings()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._takes_token_types:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**inputs).last_hidden_state
        logits = self.classifier(self.dropout(pool(hidden, attention_mask, self.config.pooling)))
        loss = None
        if labels is not None:
            if self.config.problem_type == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
