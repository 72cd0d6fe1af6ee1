"""Turn labels and predictions into RGB pictures, and lay samples out as a contact sheet.

All colour functions take a tensor or array in the sample conventions of
:mod:`taskadapt.data.sample` and return ``uint8`` arrays of shape (H, W, 3). Ignored pixels
(255 / NaN) are drawn black so they are visibly "no label".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from taskadapt.data.sample import IGNORE_INDEX
from taskadapt.io import atomic_open

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


def label_to_rgb(key: str, value: ArrayLike, num_classes: int | None = None,
                 depth_range: tuple[float, float] | None = None) -> np.ndarray:
    """Dispatch on the sample key (``image``, ``semseg``, ``parts``, ``depth``, ``normals``, ...)."""
    if key == "image":
        return image_to_rgb(value)
    if key in ("semseg", "parts"):
        if num_classes is None:
            v = _np(value)
            num_classes = int(v[v != IGNORE_INDEX].max(initial=0)) + 1
        return semseg_to_rgb(value, num_classes)
    if key == "depth":
        return depth_to_rgb(value, *(depth_range or (None, None)))
    if key == "normals":
        return normals_to_rgb(value)
    if key in ("edge", "saliency"):
        return edge_to_rgb(value)
    raise KeyError(f"no visualisation for {key!r}")


SHEET_ORDER = ("image", "semseg", "parts", "depth", "normals", "edge", "saliency")


def contact_sheet(
    samples: Sequence[dict],
    path: str | os.PathLike,
    num_classes: dict[str, int] | None = None,
    keys: Sequence[str] | None = None,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    depth_range: tuple[float, float] | None = None,
) -> Path:
    """Write a grid PNG: one row per sample, one column per key (image first, then labels).

    ``samples`` are sample dicts (tensors in the :mod:`taskadapt.data.sample` conventions, or
    predictions in the same form). ``num_classes`` maps class-map keys to K for fixed colours.
    ``depth_range`` (metres) colours every depth panel on one scale, so a prediction can be compared
    with its ground truth; by default each panel uses its own 2nd-98th percentiles.
    The PNG is written atomically (temp file, then rename). Returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not samples:
        raise ValueError("contact_sheet needs at least one sample")
    keys = list(keys) if keys is not None else [k for k in SHEET_ORDER if k in samples[0]]
    num_classes = num_classes or {}
    rows, cols = len(samples), len(keys)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.0 * rows + (0.4 if title else 0)),
                             squeeze=False)
    for r, sample in enumerate(samples):
        for c, key in enumerate(keys):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if key in sample:
                ax.imshow(label_to_rgb(key, sample[key], num_classes.get(key), depth_range), interpolation="nearest")
            if r == 0:
                ax.set_title(key, fontsize=9)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def panel_sheet(panels: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike, title: str | None = None,
                panel_width: float = 3.2) -> Path:
    """Write a one-row PNG of titled pictures: ``panels`` are (title, (H, W, 3) uint8) pairs of one size.

    Titles may span several lines ("\\n"). Written atomically; returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("panel_sheet needs at least one panel")
    h, w = panels[0][1].shape[:2]
    lines = max(str(t).count("\n") + 1 for t, _ in panels)
    height = panel_width * h / max(w, 1) + 0.2 * lines + (0.4 if title else 0.15)
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_width * len(panels), height), squeeze=False)
    for ax, (name, rgb) in zip(axes[0], panels, strict=True):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)
