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
from collections.abc import Mapping, Sequence
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
    class_names: Mapping[str, Sequence[str]] | None = None,
    depth_bar: bool = False,
) -> Path:
    """Write a grid PNG: one row per sample, one column per key (image first, then labels).

    ``samples`` are sample dicts (tensors in the :mod:`taskadapt.data.sample` conventions, or
    predictions in the same form). ``num_classes`` maps class-map keys to K for fixed colours.
    ``depth_range`` (metres) colours every depth panel on one scale, so a prediction can be compared
    with its ground truth; by default each panel uses its own 2nd-98th percentiles.
    ``class_names`` (key -> names by class id) adds, under each class-map column it names, a legend of
    the classes that occur in that column (colour and name, most frequent first, at most
    :data:`LEGEND_MAX` of them). ``depth_bar`` adds a colour bar in metres under the depth column; the
    depth panels then share one scale (``depth_range``, or the 2nd-98th percentiles of them all).
    The PNG is written atomically (temp file, then rename). Returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not samples:
        raise ValueError("contact_sheet needs at least one sample")
    keys = list(keys) if keys is not None else [k for k in SHEET_ORDER if k in samples[0]]
    num_classes = num_classes or {}
    legends = {key: _legend_entries(samples, key, names, num_classes.get(key))
               for key, names in (class_names or {}).items() if key in keys}
    bar = depth_bar and "depth" in keys and any("depth" in s for s in samples)
    if bar and depth_range is None:
        depth_range = _shared_depth_range(samples)
    rows, cols = len(samples), len(keys)
    below = max([_legend_height(len(e)) for e in legends.values()] + [0.5 if bar else 0.0])
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.0 * rows + (0.4 if title else 0) + below),
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
    for key, entries in legends.items():
        _draw_legend(axes[-1][keys.index(key)], entries)
    if bar:
        _draw_depth_bar(fig, axes[-1][keys.index("depth")], depth_range)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


LEGEND_MAX = 20  # classes listed in a sheet's legend (the most frequent)


def _legend_entries(samples: Sequence[dict], key: str, names: Sequence[str], k: int | None
                    ) -> list[tuple[str, np.ndarray | None]]:
    """The (name, RGB uint8 colour) of the classes occurring in the ``key`` maps of ``samples``, most
    frequent first, at most :data:`LEGEND_MAX` (then a last "+n more" entry without a colour patch)."""
    maps = [np.asarray(s[key].detach().cpu() if hasattr(s[key], "detach") else s[key]).reshape(-1)
            for s in samples if key in s]
    ids = np.concatenate(maps).astype(np.int64) if maps else np.zeros(0, np.int64)
    k = k or getattr(get_task(key), "default_num_classes", None) or len(names)
    counts = np.bincount(ids[(ids >= 0) & (ids < k)], minlength=k)
    order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    colours = palette(k)
    entries = [(names[i] if i < len(names) else f"class_{i}", colours[i]) for i in order[:LEGEND_MAX]]
    if len(order) > LEGEND_MAX:
        entries.append((f"+{len(order) - LEGEND_MAX} more", None))
    return entries


def _legend_columns(n: int) -> int:
    return 1 if n <= 4 else 2


def _legend_height(n: int) -> float:
    """Inches a legend of ``n`` entries takes under its panel."""
    return 0.15 + 0.14 * -(-n // _legend_columns(n)) if n else 0.0


def _draw_legend(ax, entries: list[tuple[str, np.ndarray | None]]) -> None:
    """A legend of class colours and names under ``ax``."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=(c / 255.0) if c is not None else "none", edgecolor="none", label=name)
               for name, c in entries]
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=6, frameon=False,
                  ncol=_legend_columns(len(handles)), handlelength=1.0, handletextpad=0.4, columnspacing=0.8,
                  borderaxespad=0.0)


def _shared_depth_range(samples: Sequence[dict]) -> tuple[float, float]:
    """The 2nd-98th percentiles (metres) of the finite depths of every sample; (0, 1) when none is finite."""
    values = [np.asarray(s["depth"].detach().cpu() if hasattr(s["depth"], "detach") else s["depth"],
                         dtype=np.float32).reshape(-1) for s in samples if "depth" in s]
    d = np.concatenate(values) if values else np.zeros(0, np.float32)
    d = d[np.isfinite(d)]
    if not d.size:
        return 0.0, 1.0
    lo, hi = np.percentile(d, [2, 98])
    return float(lo), float(hi)


def _draw_depth_bar(fig, ax, depth_range: tuple[float, float]) -> None:
    """A horizontal turbo colour bar in metres under ``ax`` (the scale :func:`depth_to_rgb` colours with)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    lo, hi = float(depth_range[0]), float(depth_range[1])
    cax = ax.inset_axes([0.05, -0.14, 0.9, 0.07])
    bar = fig.colorbar(ScalarMappable(norm=Normalize(lo, max(hi, lo + 1e-6)), cmap="turbo"), cax=cax,
                       orientation="horizontal")
    bar.ax.tick_params(labelsize=6, length=2, pad=1)
    bar.set_label("depth (m)", fontsize=7, labelpad=1)


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
