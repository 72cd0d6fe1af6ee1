"""Learning-rate schedules: linear warm-up, then cosine decay, one-cycle or constant.
:func:`warmup_cosine` is the shape as a function of the fraction of a budget used (MAE pretraining's
step or wall-clock budget, :mod:`taskadapt.pretrain.recipe`); :func:`lr_factor` is the trainer's
per-step multiplier (via :func:`build_scheduler`), whose cosine decay goes through it.
"""

from __future__ import annotations

import math

import torch

#: train.schedule values: what follows the linear warm-up
SCHEDULES = ("constant", "cosine", "onecycle")


def warmup_cosine(progress: float, warmup: float = 0.0, peak: float = 1.0) -> float:
    """Learning rate at ``progress``, the fraction of the budget used (in [0, 1]; past 1 it stays 0):
    linear warm-up from 0 to ``peak`` over the first ``warmup`` fraction, then cosine decay to 0.

    ``peak`` multiplies inside (``peak * progress / warmup``, ``peak * 0.5 * (1 + cos)``) rather than
    outside, so pretraining's learning rates are bit for bit those of its former ``learning_rate``;
    with the default ``peak=1.0`` this is a multiplier of the base rate.
    """
    if progress < warmup:
        return peak * progress / warmup
    t = min(1.0, (progress - warmup) / max(1e-12, 1.0 - warmup))
    return peak * 0.5 * (1.0 + math.cos(math.pi * t))


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total`` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if kind == "cosine":  # the warm-up is over: the cosine of the remaining steps (exactly 0.5 * (1 + cos))
        return warmup_cosine(progress)
    if kind == "onecycle":  # linear ramp down to 0 after the (warm-up) peak, as the second half of one-cycle
        return 1.0 - progress
    raise ValueError(f"unknown schedule {kind!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, total: int, warmup: int, kind: str
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, kind))
