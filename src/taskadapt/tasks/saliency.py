"""Salient-object detection: one logit per pixel, plain BCE on the valid pixels (NaN ignored).

Loss weight 5 follows the PASCAL multitask convention of the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from taskadapt.tasks.base import TaskKind, TaskSpec, check_shapes, masked_mean, register_task
from taskadapt.tasks.label_checks import BinaryStats
from taskadapt.tasks.pictures import edge_to_rgb


@register_task
@dataclass(frozen=True)
class SaliencyTask(TaskSpec):
    """Label (B, 1, H, W) in {0, 1} (NaN ignored); loss = mean BCE-with-logits over valid pixels;
    prediction = sigmoid probability."""

    name: str = "saliency"
    label_key: str = "saliency"
    kind: TaskKind = "binary"
    default_loss_weight: float = 5.0

    metric_class_name: ClassVar[str] = "SaliencyMetric"
    positive_name: ClassVar[str] = "salient"

    def out_channels(self, num_classes: int | None = None) -> int:
        return 1

    def label_stats(self, num_classes: int | None = None) -> BinaryStats:
        """Values 0 or 1 where valid; the share of :attr:`positive_name` pixels."""
        return BinaryStats(self.name, self.positive_name)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``pred`` (B, 1, H, W) logits, ``target`` (B, 1, H, W) in [0, 1] or NaN -> scalar."""
        check_shapes(self.name, pred, target, 1, 1)
        valid = ~torch.isnan(target)
        y = torch.nan_to_num(target.float(), nan=0.0)
        per_pixel = F.binary_cross_entropy_with_logits(pred.float(), y, reduction="none")
        return masked_mean(per_pixel, valid)

    def postprocess(self, pred: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) logits -> (B, 1, H, W) probabilities."""
        return torch.sigmoid(pred)

    def visualize(self, value: torch.Tensor | np.ndarray, num_classes: int | None = None, *,
                  depth_range: tuple[float, float] | None = None) -> np.ndarray:
        """(1, H, W) or (H, W) mask or probability -> white on black."""
        return edge_to_rgb(value)
