"""Frozen backbone: only the shared decoder and the per-task heads are trained."""

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
class FrozenHeads(Method):
    name = "frozen_heads"
    summary = "frozen backbone; decoder and heads only"

    def build(self, backbone: BackboneSource, tasks: Sequence[str], num_classes: Mapping[str, int] | None = None,
              **options: Any) -> MultiTaskModel:
        check_options(options)
        net = make_backbone(backbone).requires_grad_(False)
        return MultiTaskModel(net, tasks, num_classes, **pick(options, DECODER_OPTIONS))
