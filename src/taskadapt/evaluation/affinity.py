"""``taskadapt affinity``: the TROA task-affinity matrix of a checkpoint as a table and a heat map."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from taskadapt.errors import TaskadaptError
from taskadapt.models.methods import get_method
from taskadapt.run import Run
from taskadapt.viz import save_figure


class NoAffinity(TaskadaptError):
    """The checkpoint's method learns no task affinity (baselines, ``no_troa``, TROA switched off)."""


def _affinity_updates(path: Path) -> int | None:
    """How many TROA updates the stored matrix has seen (None when the weights do not say)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            key = "affinity.num_updates"
            return int(f.get_tensor(key)) if key in list(f.keys()) else None
    except Exception:  # only an annotation: a read problem here must not hide the matrix
        return None


def affinity_report(checkpoint: str | os.PathLike, out: str | None = None) -> tuple[Table, Path]:
    """The TROA affinity ``A[i, j]`` (effect of task i on task j) as a table and a heat-map PNG.

    ``out``: the PNG path (``*.png``) or a folder for ``affinity-<checkpoint stem>.png``; default
    the run folder (``<checkpoint dir>/..``). Raises :class:`NoAffinity` for checkpoints whose method
    learns no affinity.
    """
    checkpoint = Path(checkpoint)
    meta = Run.open(checkpoint).meta
    method = str(meta.get("method"))
    cfg_model = (meta.get("config") or {}).get("model", {})
    troa_on = cfg_model.get("troa", {}).get("enabled", True)
    try:
        plan_troa = get_method(method).learns_affinity
    except TaskadaptError:
        plan_troa = True  # a method this version does not know: trust the stored matrix
    if meta.get("affinity") is None or not plan_troa or not troa_on:
        why = "model.troa.enabled is false" if plan_troa and meta.get("affinity") is not None else \
            f"method '{method}' learns no task affinity"
        raise NoAffinity(f"checkpoint '{checkpoint}' has no TROA affinity matrix ({why}); train with "
                         "model.method=adapters to get one")
    tasks = list(meta.get("tasks") or [])
    a = np.asarray(meta["affinity"], dtype=np.float64)
    if a.ndim != 2 or a.shape != (len(tasks), len(tasks)):
        raise NoAffinity(f"checkpoint '{checkpoint}' stores an affinity of shape {a.shape} for {len(tasks)} tasks; "
                         "the header is damaged")
    updates = _affinity_updates(checkpoint)
    note = f" after {updates} updates" if updates else " (never updated: the identity)" if updates == 0 else ""

    table = Table(title=escape(f"TROA affinity A[i, j] = effect of task i (row) on task j (column){note}"))
    table.add_column(escape("source \\ affected"), style="bold")
    for t in tasks:
        table.add_column(t, justify="right")
    for i, t in enumerate(tasks):
        table.add_row(t, *[f"[bold]{v:.3f}[/bold]" if i == j else f"{v:.3f}" for j, v in enumerate(a[i])])

    if out is None:
        png = checkpoint.absolute().parent.parent / f"affinity-{checkpoint.stem}.png"
    else:
        png = Path(out) if str(out).lower().endswith(".png") else Path(out) / f"affinity-{checkpoint.stem}.png"
    _heat_map(a, tasks, png, f"TROA task affinity ({method}, step {meta.get('step')}){note}")
    return table, png


def _heat_map(a: np.ndarray, tasks: list[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(tasks)
    side = 1.2 + 0.9 * n
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(a, cmap="viridis", vmin=0.0, vmax=max(1.0, float(a.max())))
    ax.set_xticks(range(n), tasks)
    ax.set_yticks(range(n), tasks)
    ax.set_xlabel("affected task j (column)")
    ax.set_ylabel("source task i (row)")
    ax.set_title(f"{title}\nA[i, j] = effect of task i on task j", fontsize=9)
    for i in range(n):
        for j in range(n):
            # dark text on the bright end of viridis, light text on the dark end
            colour = "black" if im.norm(a[i, j]) > 0.6 else "white"
            ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", color=colour, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = ["NoAffinity", "affinity_report"]
