"""Multitask fine-tuning: the whole backbone trained, shared decoder, per-task heads."""

from __future__ import annotations

from taskadapt.models.methods.base import SingleStreamMethod, register_method


@register_method
class MTLFinetune(SingleStreamMethod):
    name = "mtl_finetune"
    summary = "whole backbone fine-tuned, shared decoder, per-task heads"
    train_backbone = True
