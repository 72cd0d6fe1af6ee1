"""Depth errors pooled over every valid pixel of the split (docs/metrics-and-datasets.md §4.2).

Valid pixels: finite target > 0 (the sample convention marks invalid depth with NaN; a reader that
left 0 in place is handled too). Predictions are clamped to ``>= min_depth`` (1e-3 m by default)
before any error is computed, so log and ratio errors stay finite; InvPT clamps at 0 and
MTL-PyTorch at 1e-9, which only matters for predictions below 1 mm.

With N the number of valid pixels over the split, d the target and p the clamped prediction:

    rmse     = sqrt(sum (p - d)^2 / N)            pixel-pooled, NOT the mean of per-image RMSEs (ASTMT)
    abs_rel  = sum |p - d| / d / N
    sq_rel   = sum (p - d)^2 / d / N
    log_rmse = sqrt(sum (ln p - ln d)^2 / N)
    delta_k  = fraction of pixels with max(p / d, d / p) < 1.25 ** k,  k = 1, 2, 3   (in [0, 1])
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from taskadapt.metrics.inputs import bhw_pair

_SUMS = ("sq_err", "abs_rel", "sq_rel", "log_sq_err", "delta1", "delta2", "delta3")


class DepthMetric(Metric):
    """RMSE, abs-rel, sq-rel, log-RMSE and delta accuracies, pixel-pooled over the dataset.

    ``update(preds, target)``: both ``(B, 1, H, W)`` or ``(B, H, W)`` in metres; target NaN (or <= 0)
    = invalid. ``compute()``: ``{"rmse", "abs_rel", "sq_rel", "log_rmse", "delta1", "delta2",
    "delta3"}`` as 0-d tensors (NaN when no valid pixel was seen).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    primary: str = "rmse"
    #: what a summary table shows for the task, primary first
    shown: tuple[str, ...] = ("rmse", "abs_rel")
    directions: dict[str, bool] = {
        "rmse": False,
        "abs_rel": False,
        "sq_rel": False,
        "log_rmse": False,
        "delta1": True,
        "delta2": True,
        "delta3": True,
    }

    def __init__(self, min_depth: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        if not min_depth > 0:
            raise ValueError(f"min_depth must be > 0, got {min_depth}")
        self.min_depth = float(min_depth)
        for name in _SUMS:
            # float64 sums: a split has ~1e8 pixels, float32 would lose the low digits
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target = bhw_pair(preds, target, "depth")
        valid = torch.isfinite(target) & (target > 0)
        d = target[valid].double()
        p = preds[valid].double()
        if not torch.isfinite(p).all():
            raise ValueError("depth predictions contain NaN or inf at valid pixels (did training diverge?)")
        p = p.clamp_min(self.min_depth)
        err = p - d
        ratio = torch.maximum(p / d, d / p)
        self.sq_err += (err * err).sum()
        self.abs_rel += (err.abs() / d).sum()
        self.sq_rel += (err * err / d).sum()
        self.log_sq_err += ((p.log() - d.log()) ** 2).sum()
        self.delta1 += (ratio < 1.25).sum()
        self.delta2 += (ratio < 1.25**2).sum()
        self.delta3 += (ratio < 1.25**3).sum()
        self.count += d.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.double()
        # 0/0 gives NaN on purpose: no valid pixel means no score, not a perfect one
        return {
            "rmse": (self.sq_err / n).sqrt().float(),
            "abs_rel": (self.abs_rel / n).float(),
            "sq_rel": (self.sq_rel / n).float(),
            "log_rmse": (self.log_sq_err / n).sqrt().float(),
            "delta1": (self.delta1 / n).float(),
            "delta2": (self.delta2 / n).float(),
            "delta3": (self.delta3 / n).float(),
        }
