"""Monocular depth: one channel of metres, L1 (or berHu) on valid pixels; NaN = no measurement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from taskadapt.errors import ConfigError
from taskadapt.tasks.base import TaskKind, TaskSpec, check_choice, check_shapes, masked_mean, register_task
from taskadapt.tasks.label_checks import DepthStats
from taskadapt.tasks.pictures import depth_to_rgb


@register_task
@dataclass(frozen=True)
class DepthTask(TaskSpec):
    """Label (B, 1, H, W) metres with NaN invalid; prediction = raw head output in metres.

    ``depth_loss="l1"`` (default): mean |pred - gt| over the valid pixels of the batch.
    ``depth_loss="berhu"`` (reverse Huber, Laina et al. 2016): with d = pred - gt and
    c = ``berhu_c`` * max |d| over the batch's valid pixels (c held constant for the gradient),
    loss = |d| where |d| <= c, else (d² + c²) / (2c); averaged over valid pixels.
    """

    name: str = "depth"
    label_key: str = "depth"
    kind: TaskKind = "regression"
    default_loss_weight: float = 1.0
    depth_loss: str = "l1"
    berhu_c: float = 0.2

    metric_class_name: ClassVar[str] = "DepthMetric"

    def __post_init__(self) -> None:
        check_choice(self.name, "depth_loss", self.depth_loss, ("l1", "berhu"))
        if not 0 < self.berhu_c <= 1:
            raise ConfigError(f"task 'depth': berhu_c must be in (0, 1], got {self.berhu_c!r}")

    def out_channels(self, num_classes: int | None = None) -> int:
        return 1

    def label_stats(self, num_classes: int | None = None) -> DepthStats:
        """Finite and > 0 where valid; the depth range."""
        return DepthStats(self.name)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``pred`` (B, 1, H, W), ``target`` (B, 1, H, W) with NaN invalid -> scalar."""
        check_shapes(self.name, pred, target, 1, 1)
        valid = ~torch.isnan(target)
        # replace NaN before subtracting: where() blocks the value but autograd would still see NaN
        diff = pred.float() - torch.nan_to_num(target.float(), nan=0.0)
        err = diff.abs()
        if self.depth_loss == "berhu":
            zero = torch.zeros((), dtype=err.dtype, device=err.device)
            c = (self.berhu_c * torch.where(valid, err, zero).max()).detach().clamp(min=1e-6)
            err = torch.where(err <= c, err, (diff * diff + c * c) / (2 * c))
        return masked_mean(err, valid)

    def postprocess(self, pred: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, 1, H, W) clamped to >= 0 (depth cannot be negative)."""
        return pred.clamp(min=0.0)

    def visualize(self, value: torch.Tensor | np.ndarray, num_classes: int | None = None, *,
                  depth_range: tuple[float, float] | None = None) -> np.ndarray:
        """(1, H, W) or (H, W) metres -> (H, W, 3) turbo colours on ``depth_range`` (default: percentiles)."""
        return depth_to_rgb(value, *(depth_range or (None, None)))
