"""Colour helpers: one label map or prediction (no batch dim) -> an (H, W, 3) ``uint8`` picture.

Inputs follow the sample conventions of :mod:`taskadapt.data.sample` (tensors or arrays); ignored
pixels (255 / NaN) are drawn black so they are visibly "no label". Each task spec draws its own
picture with one of these (:meth:`taskadapt.tasks.base.TaskSpec.visualize`).

A leaf module on purpose: the task specs draw with it and :mod:`taskadapt.viz` (contact sheets, which
ask the specs) re-exports it, so neither imports the other in a cycle. matplotlib is imported inside
the functions that need it, keeping ``import taskadapt.tasks`` light.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _single_channel(x: ArrayLike) -> np.ndarray:
    """(1, H, W) or (H, W) -> (H, W) float32 (only the channel axis is dropped)."""
    a = _np(x).astype(np.float32)
    if a.ndim == 3:
        if a.shape[0] != 1:
            raise ValueError(f"expected a (1, H, W) or (H, W) map, got shape {tuple(a.shape)}")
        a = a[0]
    return a


def palette(num_classes: int) -> np.ndarray:
    """A fixed, well-separated colour per class, (num_classes, 3) uint8.

    The first 20 colours are matplotlib's ``tab20``; beyond that, colours come from a golden-ratio
    walk round the hue circle so any K gets distinct, deterministic colours.
    """
    import matplotlib

    base = (np.asarray(matplotlib.colormaps["tab20"].colors) * 255).round().astype(np.uint8)
    if num_classes <= len(base):
        return base[:num_classes].copy()
    hues = (np.arange(num_classes - len(base)) * 0.618033988749895) % 1.0
    hsv = np.stack([hues, np.full_like(hues, 0.65), np.full_like(hues, 0.9)], axis=1)
    extra = (matplotlib.colors.hsv_to_rgb(hsv) * 255).round().astype(np.uint8)
    return np.concatenate([base, extra], axis=0)


def semseg_to_rgb(labels: ArrayLike, num_classes: int) -> np.ndarray:
    """(H, W) int class map -> (H, W, 3) uint8; 255 (ignore) is black."""
    lab = _np(labels).astype(np.int64)
    out = np.zeros((*lab.shape, 3), dtype=np.uint8)
    valid = (lab >= 0) & (lab < num_classes)
    out[valid] = palette(num_classes)[lab[valid]]
    return out


def depth_to_rgb(
    depth: ArrayLike, vmin: float | None = None, vmax: float | None = None, cmap: str = "turbo",
    invalid: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """(1, H, W) or (H, W) metres -> (H, W, 3) uint8; near is blue, far is red; NaN is ``invalid`` (black).

    ``vmin``/``vmax`` default to the 2nd/98th percentile of the valid depths, so one outlier does
    not wash out the picture; pass fixed values to compare pictures.
    """
    import matplotlib

    d = _single_channel(depth)
    valid = np.isfinite(d)
    if vmin is None or vmax is None:
        lo, hi = np.percentile(d[valid], [2, 98]) if valid.any() else (0.0, 1.0)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    t = np.clip((np.nan_to_num(d, nan=vmin) - vmin) / max(vmax - vmin, 1e-6), 0, 1)
    rgb = (matplotlib.colormaps[cmap](t)[..., :3] * 255).round().astype(np.uint8)
    rgb[~valid] = invalid
    return rgb


def normals_to_rgb(normals: ArrayLike) -> np.ndarray:
    """(3, H, W) unit vectors -> (H, W, 3) uint8 as ``(n + 1) / 2``; NaN pixels are black."""
    n = _np(normals).astype(np.float32)
    valid = np.isfinite(n).all(axis=0)
    rgb = ((np.nan_to_num(n).transpose(1, 2, 0) + 1.0) * 127.5).clip(0, 255).round().astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def edge_to_rgb(edge: ArrayLike) -> np.ndarray:
    """(1, H, W) or (H, W) boundary map or probability in [0, 1] -> white edges on black."""
    e = np.nan_to_num(_single_channel(edge), nan=0.0)
    g = (e.clip(0, 1) * 255).round().astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def image_to_rgb(image: ArrayLike) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    im = _np(image).astype(np.float32)
    return (im.transpose(1, 2, 0).clip(0, 1) * 255).round().astype(np.uint8)


__all__ = ["ArrayLike", "depth_to_rgb", "edge_to_rgb", "image_to_rgb", "normals_to_rgb", "palette",
           "semseg_to_rgb"]
