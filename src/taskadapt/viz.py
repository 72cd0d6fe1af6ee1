"""Lay samples out as picture sheets: a contact sheet of samples x keys, a row of titled panels.

The picture of one label or prediction is its task's (:meth:`taskadapt.tasks.TaskSpec.visualize`);
only the photo (``"image"``) is drawn here. The colour helpers (:func:`semseg_to_rgb`,
:func:`depth_to_rgb`, :func:`normals_to_rgb`, :func:`edge_to_rgb`, :func:`image_to_rgb`,
:func:`palette`) live in the leaf module :mod:`taskadapt.tasks.pictures`, which the task specs draw
with, and are re-exported here; this module imports the specs, they never import it. All pictures
are ``uint8`` arrays of shape (H, W, 3); ignored pixels (255 / NaN) are black.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from taskadapt.io import atomic_open
from taskadapt.tasks import TASKS, get_task
from taskadapt.tasks.pictures import (
    ArrayLike,
    depth_to_rgb,
    edge_to_rgb,
    image_to_rgb,
    normals_to_rgb,
    palette,
    semseg_to_rgb,
)


def label_to_rgb(key: str, value: ArrayLike, num_classes: int | None = None,
                 depth_range: tuple[float, float] | None = None) -> np.ndarray:
    """The picture of sample key ``key`` (``image``, or a task's label key such as ``semseg``, ``depth``):
    the photo, or the task's own :meth:`~taskadapt.tasks.TaskSpec.visualize`. Unknown keys: KeyError."""
    if key == "image":
        return image_to_rgb(value)
    if key not in TASKS:
        raise KeyError(f"no visualisation for {key!r}")
    return get_task(key).visualize(value, num_classes, depth_range=depth_range)


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


__all__ = ["SHEET_ORDER", "contact_sheet", "depth_to_rgb", "edge_to_rgb", "image_to_rgb", "label_to_rgb",
           "normals_to_rgb", "palette", "panel_sheet", "save_figure", "semseg_to_rgb"]
