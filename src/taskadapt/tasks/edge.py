"""Boundary detection: one logit per pixel, class-balanced BCE as in the field (pos weight 0.95)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from taskadapt.errors import ConfigError
from taskadapt.tasks.base import TaskKind, TaskSpec, check_shapes, masked_mean, register_task
from taskadapt.tasks.label_checks import BinaryStats
from taskadapt.tasks.pictures import edge_to_rgb

if TYPE_CHECKING:
    from torchmetrics import Metric


@register_task
@dataclass(frozen=True)
class EdgeTask(TaskSpec):
    """Label (B, 1, H, W) in {0, 1} (NaN ignored); prediction = sigmoid probability.

    Loss (the "balanced cross-entropy" of ASTMT/MTL-PyTorch with a fixed weight w = ``pos_weight``),
    with x the logit, y the label and the mean taken over the valid pixels of the batch::

        L = mean( -w * y * log(sigmoid(x)) - (1 - w) * (1 - y) * log(1 - sigmoid(x)) )

    Edges cover a few percent of the pixels, so w = 0.95 keeps the network from predicting
    "no edge" everywhere.
    """

    name: str = "edge"
    label_key: str = "edge"
    kind: TaskKind = "binary"
    default_loss_weight: float = 50.0
    pos_weight: float = 0.95

    metric_class_name: ClassVar[str] = "EdgeMetric"
    positive_name: ClassVar[str] = "edge"
    matches_boundaries: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.pos_weight <= 1.0:
            raise ConfigError(f"task 'edge': pos_weight must be in [0, 1], got {self.pos_weight!r}")

    def out_channels(self, num_classes: int | None = None) -> int:
        return 1

    def label_stats(self, num_classes: int | None = None) -> BinaryStats:
        """Values 0 or 1 where valid; the share of :attr:`positive_name` pixels."""
        return BinaryStats(self.name, self.positive_name)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``pred`` (B, 1, H, W) logits, ``target`` (B, 1, H, W) in [0, 1] or NaN -> scalar."""
        check_shapes(self.name, pred, target, 1, 1)
        valid = ~torch.isnan(target)
        x = pred.float()
        y = torch.nan_to_num(target.float(), nan=0.0)
        w = self.pos_weight
        # logsigmoid(-x) = log(1 - sigmoid(x)), both numerically stable for large |x|
        per_pixel = -w * y * F.logsigmoid(x) - (1.0 - w) * (1.0 - y) * F.logsigmoid(-x)
        return masked_mean(per_pixel, valid)

    def postprocess(self, pred: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) logits -> (B, 1, H, W) probabilities."""
        return torch.sigmoid(pred)

    def make_metric(self, num_classes: int | None = None, *, boundary_tolerance: float | None = None,
                    exact: bool = True, thin_boundary_targets: bool = False) -> Metric:
        """:class:`~taskadapt.metrics.EdgeMetric` with maxDist = ``boundary_tolerance`` x the image
        diagonal (None: the metric's default, 0.011 as NYUD; pass 0.0075 for PASCAL) and the exact
        one-to-one matcher unless ``exact=False``; ``thin_boundary_targets`` thins the true boundaries first.
        ``num_classes`` is ignored."""
        if boundary_tolerance is None:
            return self.metric_class(exact=exact, thin_targets=thin_boundary_targets)
        return self.metric_class(tolerance=boundary_tolerance, exact=exact, thin_targets=thin_boundary_targets)

    def visualize(self, value: torch.Tensor | np.ndarray, num_classes: int | None = None, *,
                  depth_range: tuple[float, float] | None = None) -> np.ndarray:
        """(1, H, W) or (H, W) boundary map or probability -> white edges on black."""
        return edge_to_rgb(value)
