"""LoRA: a frozen backbone with low-rank updates on every block's attention qkv and output
projection (our own implementation, taskadapt.models.lora), shared decoder, per-task heads."""

from taskadapt.models.methods.base import MethodPlan, register_method

PLAN = register_method(MethodPlan(
    name="lora", summary="frozen backbone + LoRA on attention qkv/proj; decoder and heads", lora=True,
))
