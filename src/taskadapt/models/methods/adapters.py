"""Ours: frozen backbone prefix run once, task streams through adapter layers with TAA, TSN and
TROA-conditioned task embeddings, shared decoder, per-task heads (Bhattacharjee et al., ICCV 2023)."""

from taskadapt.models.methods.base import MethodPlan, register_method

PLAN = register_method(MethodPlan(
    name="adapters",
    summary="frozen prefix once; per-task streams through adapter layers (TAA + TSN + bottleneck), TROA",
    streams=True, adapters=True, taa=True, tsn=True, troa=True,
))
