"""LoRA: a frozen backbone with low-rank updates on every block's attention qkv and output projection
(our own implementation, :mod:`taskadapt.models.lora`), shared decoder, per-task heads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from taskadapt.models.lora import add_lora
from taskadapt.models.methods.base import (
    DECODER_OPTIONS,
    LORA_OPTIONS,
    BackboneSource,
    Method,
    check_options,
    make_backbone,
    pick,
    register_method,
)
from taskadapt.models.multitask import MultiTaskModel


@register_method
class LoRA(Method):
    name = "lora"
    summary = "frozen backbone + LoRA on attention qkv/proj; decoder and heads"
    options = LORA_OPTIONS

    def build(self, backbone: BackboneSource, tasks: Sequence[str], num_classes: Mapping[str, int] | None = None,
              **options: Any) -> MultiTaskModel:
        check_options(options)
        net = make_backbone(backbone).requires_grad_(False)
        # before the decoder is built: the factors are initialised first, as the data flow goes
        add_lora(net, rank=options.get("lora_rank", 4), alpha=options.get("lora_alpha", 8.0))
        return MultiTaskModel(net, tasks, num_classes, **pick(options, DECODER_OPTIONS))
