"""Surface normals: three channels, unit vectors in the camera frame (x right, y up, z to camera)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from taskadapt.tasks.base import TaskKind, TaskSpec, check_choice, check_shapes, masked_mean, register_task
from taskadapt.tasks.label_checks import UnitVectorStats
from taskadapt.tasks.pictures import normals_to_rgb

#: allowed deviation of a valid normal from unit length
NORMAL_TOL = 1e-2


@register_task
@dataclass(frozen=True)
class NormalsTask(TaskSpec):
    """Label (B, 3, H, W) unit vectors with NaN invalid; the raw prediction is L2-normalised first.

    ``normals_loss="l1"`` (default): mean over valid pixels *and* the 3 channels of
    |n̂ - n| with n̂ = pred / ||pred|| (element mean, as MTL-PyTorch's normals loss divides by the
    number of valid elements). ``normals_loss="cosine"``: mean over valid pixels of 1 - <n̂, n>.
    """

    name: str = "normals"
    label_key: str = "normals"
    kind: TaskKind = "regression"
    default_loss_weight: float = 10.0
    normals_loss: str = "l1"

    metric_class_name: ClassVar[str] = "NormalsMetric"

    def __post_init__(self) -> None:
        check_choice(self.name, "normals_loss", self.normals_loss, ("l1", "cosine"))

    def out_channels(self, num_classes: int | None = None) -> int:
        return 3

    def label_stats(self, num_classes: int | None = None) -> UnitVectorStats:
        """NaN in all three channels or none; unit length within :data:`NORMAL_TOL` where valid."""
        return UnitVectorStats(self.name, tolerance=NORMAL_TOL)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``pred`` (B, 3, H, W) raw, ``target`` (B, 3, H, W) unit or NaN -> scalar."""
        check_shapes(self.name, pred, target, 3, 3)
        valid = self.valid_mask(target)  # (B, H, W): all three channels labelled
        unit = F.normalize(pred.float(), dim=1, eps=1e-12)
        gt = torch.nan_to_num(target.float(), nan=0.0)
        if self.normals_loss == "cosine":
            return masked_mean(1.0 - (unit * gt).sum(dim=1), valid)
        return masked_mean((unit - gt).abs(), valid.unsqueeze(1).expand_as(unit))

    def postprocess(self, pred: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> unit vectors (B, 3, H, W)."""
        return F.normalize(pred, dim=1, eps=1e-12)

    def visualize(self, value: torch.Tensor | np.ndarray, num_classes: int | None = None, *,
                  depth_range: tuple[float, float] | None = None) -> np.ndarray:
        """(3, H, W) unit vectors -> (H, W, 3) as (n + 1) / 2."""
        return normals_to_rgb(value)
