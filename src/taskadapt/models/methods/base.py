"""The switches that define a method."""

from __future__ import annotations

from dataclasses import dataclass

from taskadapt.registry import Registry


@dataclass(frozen=True)
class MethodPlan:
    """How a method uses the shared architecture.

    streams: fold T task streams into the batch after the frozen prefix (the adapter methods).
    adapters / taa / tsn / troa: which parts of the adapter layer are on (method.md §3-§6).
    train_backbone: every backbone weight is trained (fine-tuning baselines).
    lora: low-rank updates on the attention's qkv and output projections of a frozen backbone.
    single_task: one independent model per task (the single-task baseline of Delta_m).
    """

    name: str
    summary: str
    streams: bool = False
    adapters: bool = False
    taa: bool = False
    tsn: bool = False
    troa: bool = False
    train_backbone: bool = False
    lora: bool = False
    single_task: bool = False


METHODS: Registry[MethodPlan] = Registry("method")


def register_method(plan: MethodPlan) -> MethodPlan:
    return METHODS.register(plan.name, plan)
