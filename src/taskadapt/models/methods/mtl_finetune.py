"""Multitask fine-tuning: the whole backbone trained, shared decoder, per-task heads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from taskadapt.models.methods.base import (
    DECODER_OPTIONS,
    BackboneSource,
    Method,
    check_options,
    make_backbone,
    pick,
    register_method,
)
from taskadapt.models.multitask import MultiTaskModel


@register_method
class MTLFinetune(Method):
    name = "mtl_finetune"
    summary = "whole backbone fine-tuned, shared decoder, per-task heads"

    def build(self, backbone: BackboneSource, tasks: Sequence[str], num_classes: Mapping[str, int] | None = None,
              **options: Any) -> MultiTaskModel:
        check_options(options)
        net = make_backbone(backbone).requires_grad_(True)
        return MultiTaskModel(net, tasks, num_classes, **pick(options, DECODER_OPTIONS))
