"""Trivial, training-free predictors to report beside a model on real images (NumPy/SciPy only).

Every function maps an (H, W, 3) uint8 photo to an (H, W) float32 map and is scored exactly like a
model's prediction. Parameters are fixed a priori (MATLAB ``edge(I, 'canny')`` defaults for the
smoothing and the low/high ratio), never tuned on the evaluation images.

Edges (soft maps in [0, 1], so that the metric's 99 thresholds sweep them):

* :func:`sobel_edges` -- grey (ITU-R BT.601 luma), Gaussian-smoothed (sigma = sqrt 2), Sobel gradient
  magnitude divided by its image maximum.
* :func:`canny_edges` -- Canny (1986): the same gradient, non-maximum suppression along the gradient
  direction quantised to 0/45/90/135 degrees, then double thresholding with hysteresis (a weak pixel,
  ``m >= low``, survives when its 8-connected weak component holds a strong pixel, ``m >= high``;
  components from ``scipy.ndimage.label``), with ``low = 0.4 high``. The soft output is the
  "hysteresis strength": the largest level t of a grid (the metric's thresholds by default) at which
  the pixel survives with ``high = t`` (in units of the maximum magnitude). Survival is monotone in t,
  so thresholding the map at t gives exactly Canny's binary output for ``high = t`` -- the metric's
  sweep is a sweep of Canny's high threshold.

Depth (any positive scale: the evaluation fits a per-image scale):

* :func:`constant_depth` -- the same depth everywhere.
* :func:`row_depth` -- depth linear in the row, growing toward the top of the image (floor near the
  bottom of a photo, far wall or horizon at the top): 1 on the bottom row, ``top_over_bottom`` (2) on
  the top row.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

SIGMA = math.sqrt(2.0)  # MATLAB edge(I, 'canny') default
LOW_RATIO = 0.4  # MATLAB: low threshold = 0.4 * high threshold


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 (or float in [0, 1]) -> (H, W) float64 luma in [0, 1] (BT.601 weights)."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {a.shape}")
    a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
    return a @ np.array([0.299, 0.587, 0.114])


def gradient(image: np.ndarray, sigma: float = SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Sobel derivatives (gy along rows, gx along columns) of the Gaussian-smoothed grey image."""
    g = ndimage.gaussian_filter(grey(image), sigma, mode="nearest")
    return ndimage.sobel(g, axis=0, mode="nearest"), ndimage.sobel(g, axis=1, mode="nearest")


def _unit_max(m: np.ndarray) -> np.ndarray:
    top = float(m.max()) if m.size else 0.0
    return (m / top if top > 0 else np.zeros_like(m)).astype(np.float32)


def sobel_edges(image: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """(H, W, 3) -> (H, W) float32 gradient magnitude in [0, 1] (1 = the image's strongest edge)."""
    gy, gx = gradient(image, sigma)
    return _unit_max(np.hypot(gx, gy))


def non_maximum_suppression(gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """(H, W) magnitude kept where it is a maximum along the gradient direction, 0 elsewhere.

    The direction is quantised to 0, 45, 90 or 135 degrees; a pixel survives when its magnitude is
    > the neighbour behind it and >= the neighbour ahead (the asymmetric tie keeps ONE pixel of a
    two-pixel plateau, e.g. across an ideal step between two columns).
    """
    mag = np.hypot(gx, gy)
    h, w = mag.shape
    angle = np.rad2deg(np.arctan2(gy, gx)) % 180.0
    sector = np.round(angle / 45.0).astype(np.int64) % 4
    padded = np.pad(mag, 1, mode="constant")
    keep = np.zeros((h, w), dtype=bool)
    for s, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        ahead = padded[1 + dy : h + 1 + dy, 1 + dx : w + 1 + dx]
        behind = padded[1 - dy : h + 1 - dy, 1 - dx : w + 1 - dx]
        keep |= (sector == s) & (mag > behind) & (mag >= ahead)
    return np.where(keep & (mag > 0), mag, 0.0)


def hysteresis(mag: np.ndarray, low: float, high: float) -> np.ndarray:
    """Pixels ``>= low`` whose 8-connected component of such pixels has a pixel ``>= high`` (bool)."""
    weak = mag >= low
    labels, n = ndimage.label(weak, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return weak
    strong_in = np.zeros(n + 1, dtype=bool)
    strong_in[labels[weak & (mag >= high)]] = True
    strong_in[0] = False
    return strong_in[labels]


def canny_edges(image: np.ndarray, sigma: float = SIGMA, low_ratio: float = LOW_RATIO,
                levels: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) -> (H, W) float32 Canny hysteresis strength in [0, 1] (module docstring).

    ``canny_edges(img) >= t`` is Canny's edge map with ``high = t`` and ``low = low_ratio * t`` (in
    units of the image's maximum gradient magnitude) for every t in ``levels`` (default: the edge
    metric's 99 thresholds 0.01 ... 0.99).
    """
    if levels is None:
        from taskadapt.metrics.edges import edge_thresholds

        levels = edge_thresholds(99)
    gy, gx = gradient(image, sigma)
    nms = non_maximum_suppression(gy, gx)
    top = float(nms.max())
    strength = np.zeros(nms.shape, dtype=np.float32)
    if top <= 0:
        return strength
    m = nms / top
    for t in np.sort(np.asarray(levels, dtype=np.float64)):  # survival shrinks with t: later levels overwrite
        kept = hysteresis(m, low_ratio * t, t) & (m > 0)
        if not kept.any():
            break
        strength[kept] = np.float32(t)
    return strength


def constant_depth(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) float32 ones."""
    h, w = np.asarray(image).shape[:2]
    return np.ones((h, w), dtype=np.float32)


def row_depth(image: np.ndarray, top_over_bottom: float = 2.0) -> np.ndarray:
    """(H, W, 3) -> (H, W) float32 depth linear in the row: 1 on the bottom row, ``top_over_bottom`` on top."""
    h, w = np.asarray(image).shape[:2]
    up = (h - 1 - np.arange(h, dtype=np.float64)) / max(h - 1, 1)  # 0 bottom row .. 1 top row
    return np.repeat((1.0 + (top_over_bottom - 1.0) * up)[:, None], w, axis=1).astype(np.float32)


#: task -> baseline name -> function (H, W, 3) uint8 -> (H, W) float32
BASELINES: dict[str, dict[str, Callable[[np.ndarray], np.ndarray]]] = {
    "edge": {"sobel": sobel_edges, "canny": canny_edges},
    "depth": {"constant": constant_depth, "rows": row_depth},
}

__all__ = ["BASELINES", "canny_edges", "constant_depth", "gradient", "grey", "hysteresis",
           "non_maximum_suppression", "row_depth", "sobel_edges"]
