"""Surface-normal angular errors pooled over every valid pixel (docs/metrics-and-datasets.md §4.3).

Both prediction and target are L2-normalised, then the angle is ``2 * atan2(|p - g|, |p + g|)``
(ATRC/InvPT/MTLoRA v2): exact at 0 and 180 degrees where ``acos(p . g)`` loses precision.

Invalid target pixels: any NaN channel (sample convention) or an all-zero vector (raw encodings).

Reported, in degrees: ``mean``, ``median``, ``rmse = sqrt(mean(angle^2))`` -- a real RMSE; the
"rmse" field of the MTL-PyTorch and MTLoRA meters is the mean again, a bug we do not copy -- and
``within_11.25``, ``within_22.5``, ``within_30`` as PERCENT (0-100) of pixels with angle strictly
below the bound (MTL-PyTorch's offline evaluator; LibMTL reports fractions).

The median comes from a fixed-size histogram (``180 * bins_per_degree`` bins, summed across
processes), so it is DDP-exact to within half a bin: each order statistic is replaced by the centre
of its bin (error <= 0.5 / bins_per_degree degrees).
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

_THRESHOLDS = (11.25, 22.5, 30.0)
_EPS = 1e-12


def angular_error_deg(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between vectors along dim -1 (any leading shape), both normalised first."""
    p = preds / preds.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    g = target / target.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return torch.rad2deg(2.0 * torch.atan2((p - g).norm(dim=-1), (p + g).norm(dim=-1)))


class NormalsMetric(Metric):
    """Mean / median / RMSE angular error and % of pixels within 11.25, 22.5 and 30 degrees.

    ``update(preds, target)``: both ``(B, 3, H, W)``; preds need not be unit length.
    ``compute()``: ``{"mean", "median", "rmse", "within_11.25", "within_22.5", "within_30"}``
    (degrees; the ``within_*`` values in percent 0-100), 0-d tensors, NaN when no valid pixel.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    primary: str = "mean"
    #: what a summary table shows for the task, primary first
    shown: tuple[str, ...] = ("mean", "median", "within_11.25")
    directions: dict[str, bool] = {
        "mean": False,
        "median": False,
        "rmse": False,
        "within_11.25": True,
        "within_22.5": True,
        "within_30": True,
    }

    def __init__(self, bins_per_degree: int = 100, **kwargs):
        super().__init__(**kwargs)
        if bins_per_degree < 1:
            raise ValueError(f"bins_per_degree must be >= 1, got {bins_per_degree}")
        self.bins_per_degree = int(bins_per_degree)
        self.num_bins = 180 * self.bins_per_degree
        self.add_state("sum_angle", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_sq_angle", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state(
            "within", default=torch.zeros(len(_THRESHOLDS), dtype=torch.long), dist_reduce_fx="sum"
        )
        self.add_state("hist", default=torch.zeros(self.num_bins, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.ndim != 4 or preds.shape[1] != 3:
            raise ValueError(f"normals preds must be (B, 3, H, W), got shape {tuple(preds.shape)}")
        if preds.shape != target.shape:
            raise ValueError(f"normals preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
        p = preds.movedim(1, -1).double()
        g = target.movedim(1, -1).double()
        valid = ~torch.isnan(g).any(dim=-1) & (g != 0).any(dim=-1)
        p, g = p[valid], g[valid]
        if not torch.isfinite(p).all():
            raise ValueError("normals predictions contain NaN or inf at valid pixels (did training diverge?)")
        angle = angular_error_deg(p, g)
        self.sum_angle += angle.sum()
        self.sum_sq_angle += (angle * angle).sum()
        self.count += angle.numel()
        self.within += torch.stack([(angle < t).sum() for t in _THRESHOLDS])
        bins = (angle * self.bins_per_degree).long().clamp_(0, self.num_bins - 1)
        self.hist += torch.bincount(bins, minlength=self.num_bins)

    def _median(self) -> torch.Tensor:
        n = int(self.count)
        if n == 0:
            return torch.tensor(math.nan, dtype=torch.float64)
        cum = self.hist.cumsum(0)
        # 0-based ranks of the middle order statistic(s), as numpy.median averages for even n
        ranks = torch.tensor([(n - 1) // 2, n // 2], device=cum.device)
        bins = torch.searchsorted(cum, ranks, right=True)
        return ((bins.double() + 0.5) / self.bins_per_degree).mean()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.double()
        pct = 100.0 * self.within.double() / n
        return {
            "mean": (self.sum_angle / n).float(),
            "median": self._median().float().to(n.device),
            "rmse": (self.sum_sq_angle / n).sqrt().float(),
            "within_11.25": pct[0].float(),
            "within_22.5": pct[1].float(),
            "within_30": pct[2].float(),
        }
