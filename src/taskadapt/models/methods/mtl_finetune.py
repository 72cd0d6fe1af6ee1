"""Multitask fine-tuning: the whole backbone trained, shared decoder, per-task heads."""

from taskadapt.models.methods.base import MethodPlan, register_method

PLAN = register_method(MethodPlan(
    name="mtl_finetune", summary="whole backbone fine-tuned, shared decoder, per-task heads", train_backbone=True,
))
