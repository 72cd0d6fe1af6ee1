"""Single-task learning: one independent model per task, whole backbone fine-tuned, its own decoder
and head -- the baseline Delta_m is measured against (Vandenhende et al., Eq. 10)."""

from taskadapt.models.methods.base import MethodPlan, register_method

PLAN = register_method(MethodPlan(
    name="stl", summary="one fully fine-tuned model per task (the Delta_m baseline)",
    train_backbone=True, single_task=True,
))
