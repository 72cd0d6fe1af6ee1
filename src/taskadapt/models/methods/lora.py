"""LoRA: a frozen backbone with low-rank updates on every block's attention qkv and output projection
(our own implementation, :mod:`taskadapt.models.lora`), shared decoder, per-task heads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskadapt.models.backbones import Backbone
from taskadapt.models.lora import add_lora
from taskadapt.models.methods.base import LORA_OPTIONS, SingleStreamMethod, register_method


@register_method
class LoRA(SingleStreamMethod):
    name = "lora"
    summary = "frozen backbone + LoRA on attention qkv/proj; decoder and heads"
    options = LORA_OPTIONS

    def adapt_backbone(self, backbone: Backbone, options: Mapping[str, Any]) -> None:
        add_lora(backbone, rank=options.get("lora_rank", 4), alpha=options.get("lora_alpha", 8.0))
