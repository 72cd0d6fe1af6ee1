"""Frozen backbone: only the shared decoder and the per-task heads are trained."""

from taskadapt.models.methods.base import MethodPlan, register_method

PLAN = register_method(MethodPlan(
    name="frozen_heads", summary="frozen backbone; decoder and heads only",
))
