"""Frozen backbone: only the shared decoder and the per-task heads are trained."""

from __future__ import annotations

from taskadapt.models.methods.base import SingleStreamMethod, register_method


@register_method
class FrozenHeads(SingleStreamMethod):
    name = "frozen_heads"
    summary = "frozen backbone; decoder and heads only"
