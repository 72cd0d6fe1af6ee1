"""Depth errors after a per-image scale alignment, for models applied to scenes they were not trained on.

A model trained on other scenes (another camera, other sizes of things) gets the depth of a real photo
right only up to an unknown scale, so every image's prediction ``p`` is first scaled to its ground
truth ``d`` over the valid pixels V (finite ``d > 0``):

* ``alignment="lsq"``: the least-squares scale ``s = argmin_s sum_V (s p - d)^2 = sum_V p d / sum_V p^2``;
* ``alignment="median"``: median scaling ``s = median_V(d) / median_V(p)`` (the monocular-depth
  convention of Zhou et al. 2017 and its successors).

(When ``p`` is zero on every valid pixel no scale exists; ``s = 1`` is used and the image scores badly.)
The aligned prediction ``q = max(s p, min_depth)`` (``min_depth`` = 1e-3 in the target's unit keeps
the logarithms finite) is then scored on V, per image:

    silog    = sqrt(mean g^2 - (mean g)^2),  g = ln q - ln d     scale-invariant log RMSE (Eigen et al.
               2014, "Depth map prediction from a single image...", Eq. 4 with lambda = 1), in natural-log
               units: NOT multiplied by 100 (KITTI's tables show 100 x this value). Invariant to s, so
               the same under both alignments (up to the ``min_depth`` clamp).
    abs_rel  = mean |q - d| / d
    rmse     = sqrt(mean (q - d)^2)                                 in the target's unit (metres here)
    delta_k  = fraction of V with max(q / d, d / q) < 1.25 ** k,  k = 1, 2, 3   (in [0, 1])

and the split's score is the MEAN OVER IMAGES (each image weighs the same, whatever its number of
valid pixels): the scale is fitted per image, so the errors are per-image quantities. This differs
from :class:`~taskadapt.metrics.depth.DepthMetric`, which pools pixels over the split with no alignment.
Images without a valid pixel are skipped (not counted).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics import Metric

from taskadapt.metrics.inputs import bhw_pair

ALIGNMENTS = ("lsq", "median")
_NAMES = ("silog", "abs_rel", "rmse", "delta1", "delta2", "delta3")


def fit_scale(pred: np.ndarray, target: np.ndarray, alignment: str = "lsq") -> float:
    """The scale ``s`` bringing ``pred`` to ``target`` (1-D arrays of the valid pixels); 1 when none exists."""
    p = np.asarray(pred, dtype=np.float64)
    d = np.asarray(target, dtype=np.float64)
    if alignment == "lsq":
        den = float(np.dot(p, p))
        return float(np.dot(p, d)) / den if den > 0 else 1.0
    if alignment == "median":
        mp = float(np.median(p)) if p.size else 0.0
        return float(np.median(d)) / mp if mp > 0 else 1.0
    raise ValueError(f"unknown depth alignment {alignment!r}; use one of {ALIGNMENTS}")


def aligned_depth_errors(pred: np.ndarray, target: np.ndarray, alignment: str = "lsq",
                         min_depth: float = 1e-3) -> dict[str, float] | None:
    """Errors of one image after scale alignment (module docstring), or None without a valid pixel.

    pred, target: (H, W) arrays of the same shape; target NaN or <= 0 = invalid. Returns
    ``{"silog", "abs_rel", "rmse", "delta1", "delta2", "delta3", "scale", "valid_pixels"}``.
    """
    p = np.asarray(pred, dtype=np.float64)
    d = np.asarray(target, dtype=np.float64)
    if p.shape != d.shape:
        raise ValueError(f"depth preds {p.shape} and target {d.shape} differ")
    valid = np.isfinite(d) & (d > 0)
    if not valid.any():
        return None
    d = d[valid]
    p = p[valid]
    if not np.isfinite(p).all():
        raise ValueError("depth predictions contain NaN or inf at valid pixels")
    s = fit_scale(p, d, alignment)
    q = np.maximum(s * p, min_depth)
    g = np.log(q) - np.log(d)
    ratio = np.maximum(q / d, d / q)
    err = q - d
    return {
        "silog": math.sqrt(max(float(np.mean(g * g)) - float(np.mean(g)) ** 2, 0.0)),
        "abs_rel": float(np.mean(np.abs(err) / d)),
        "rmse": math.sqrt(float(np.mean(err * err))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "scale": s,
        "valid_pixels": int(d.size),
    }


class AlignedDepthMetric(Metric):
    """SILog, AbsRel, RMSE and delta accuracies after per-image scale alignment, averaged over images.

    ``update(preds, target)``: ``(B, 1, H, W)``, ``(B, H, W)`` or one ``(H, W)`` image; target NaN
    (or <= 0) = invalid. ``alignment``: ``"lsq"`` or ``"median"`` (module docstring).
    ``compute()``: ``{"silog", "abs_rel", "rmse", "delta1", "delta2", "delta3"}`` as 0-d tensors
    (NaN when no image had a valid pixel).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    primary: str = "abs_rel"
    #: what a summary table shows for the task, primary first
    shown: tuple[str, ...] = ("abs_rel", "silog", "delta1")
    directions: dict[str, bool] = {"silog": False, "abs_rel": False, "rmse": False,
                                   "delta1": True, "delta2": True, "delta3": True}

    def __init__(self, alignment: str = "lsq", min_depth: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        if alignment not in ALIGNMENTS:
            raise ValueError(f"unknown depth alignment {alignment!r}; use one of {ALIGNMENTS}")
        if not min_depth > 0:
            raise ValueError(f"min_depth must be > 0, got {min_depth}")
        self.alignment = alignment
        self.min_depth = float(min_depth)
        for name in _NAMES:
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        #: the errors of the last image of the last ``update`` (None without a valid pixel), for per-image reports
        self.last_errors: dict[str, float] | None = None

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target = torch.as_tensor(preds), torch.as_tensor(target)
        if preds.ndim == 2 and target.ndim == 2:
            preds, target = preds[None], target[None]
        preds, target = bhw_pair(preds, target, "depth")
        p_np = preds.detach().to("cpu", torch.float64).numpy()
        t_np = target.detach().to("cpu", torch.float64).numpy()
        for i in range(p_np.shape[0]):
            errors = self.last_errors = aligned_depth_errors(p_np[i], t_np[i], self.alignment, self.min_depth)
            if errors is None:
                continue
            for name in _NAMES:
                setattr(self, name, getattr(self, name) + errors[name])
            self.num_images += 1

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.num_images.double()
        # 0/0 gives NaN on purpose: no valid image means no score, not a perfect one
        return {name: (getattr(self, name) / n).float() for name in _NAMES}


__all__ = ["ALIGNMENTS", "AlignedDepthMetric", "aligned_depth_errors", "fit_scale"]
