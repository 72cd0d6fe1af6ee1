"""Salient-object detection: one logit per pixel, plain BCE on the valid pixels (NaN ignored).

Loss weight 5 follows the PASCAL multitask convention of the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from taskadapt.tasks.base import TASKS, TaskKind, TaskSpec, check_shapes, masked_mean


@dataclass(frozen=True)
class SaliencyTask(TaskSpec):
    """Label (B, 1, H, W) in {0, 1} (NaN ignored); loss = mean BCE-with-logits over valid pixels;
    prediction = sigmoid probability."""

    name: str = "saliency"
    label_key: str = "saliency"
    kind: TaskKind = "binary"
    primary_metric: str = "maxF"
    higher_is_better: bool = True
    default_loss_weight: float = 5.0

    def out_channels(self, num_classes: int | None = None) -> int:
        return 1

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

    def make_metric(self, num_classes: int | None = None, **kwargs: Any):
        from taskadapt.metrics import SaliencyMetric

        return SaliencyMetric(**kwargs)


SALIENCY = TASKS.register("saliency", SaliencyTask())
