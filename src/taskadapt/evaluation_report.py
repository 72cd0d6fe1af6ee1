"""What the ``evaluate``, ``predict`` and ``affinity`` commands do, as functions.

* :func:`evaluate_checkpoint` -- every metric of every task on a dataset split (exact edge matcher),
  written as ``metrics.json`` and ``report.md``; Delta_m when a baseline file is given.
* :func:`metrics_table` -- those results as a ``rich`` table for the terminal.
* :func:`predict_images` -- coloured prediction PNGs and a side-by-side sheet per input picture.
* :func:`affinity_report` -- the TROA matrix as a table and an annotated heat map.

Every file goes through :mod:`taskadapt.io` (temp file + rename), so an interrupted command never
leaves a half-written report.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.markup import escape
from rich.table import Table

from taskadapt import __version__
from taskadapt.api import Predictor, load, read_image
from taskadapt.errors import DatasetError, TaskadaptError
from taskadapt.io import atomic_open, write_json, write_text
from taskadapt.tasks import get_task


class NoAffinity(TaskadaptError):
    """The checkpoint's method learns no task affinity (baselines, ``no_troa``, TROA switched off)."""


# ---------------------------------------------------------------------------------- metric facts


def metric_info(task: str) -> tuple[str, dict[str, bool]]:
    """(primary metric name, {metric name: higher is better}) of ``task``'s metric class."""
    spec = get_task(task)
    metric = spec.make_metric(2 if spec.kind == "classification" else None)  # K only sizes the states
    return metric.primary, dict(metric.directions)


def _edge_tolerance_for(cfg, fmt: str, same_dataset: bool) -> float:
    """The config's explicit tolerance applies to its own dataset; otherwise the format's (§4.6)."""
    if same_dataset and cfg.data.edge_tolerance is not None:
        return float(cfg.data.edge_tolerance)
    return 0.0075 if fmt == "pascal" else 0.011


class _OnDevice(torch.nn.Module):
    """Feeds the CPU batches of the eval loader to a model on any device; outputs come back on the CPU."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        super().__init__()
        self.inner, self.device = model, device

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: p.float().cpu() for t, p in self.inner(image.to(self.device)).items()}


def available_splits(fmt: str, root: str | os.PathLike) -> list[str] | None:
    """The split names on disk for a reader format, or None when the format cannot list them."""
    from taskadapt.data.datasets import get_dataset_class

    try:
        return list(get_dataset_class(fmt).splits(root))
    except (NotImplementedError, OSError):  # formats whose splits are not files or folders
        return None


def _open_split(fmt: str, root: Path, split: str, tasks: list[str], trained_on: str, options: dict | None = None):
    """The reader for ``root``/``split``, or one DatasetError naming what exists."""
    from taskadapt.data.datasets import create_dataset

    if not root.is_dir():
        raise DatasetError(f"dataset folder '{root}' does not exist; pass --data <folder> (the checkpoint was "
                           f"trained on '{trained_on}')")
    available = available_splits(fmt, root)
    if available is not None and split not in available:
        have = ", ".join(available) if available else "none"
        raise DatasetError(f"split '{split}' does not exist in '{root}' ({fmt} format); splits there: {have}. "
                           "Pass --split <name>")
    dataset = create_dataset(fmt, root, split, tasks=tasks, **(options or {}))
    if len(dataset) == 0:
        raise DatasetError(f"split '{split}' of '{root}' lists no images; pick another split")
    return dataset


def evaluate_checkpoint(checkpoint: str | os.PathLike, data: str | None = None, format: str | None = None,
                        split: str | None = None, baseline: str | None = None, out: str | None = None,
                        progress: bool = True, tasks: list[str] | None = None,
                        options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint on a dataset split and write ``metrics.json`` and ``report.md``.

    ``data``/``format`` default to the checkpoint's own dataset (procedural scenes are read with the
    ``nyud`` reader), ``split`` to its test split. Images are resized to the model's input size,
    predictions upsampled to each label's original size; edges use the exact one-to-one matcher at
    the dataset's tolerance. ``baseline``: a Delta_m baseline JSON (:mod:`taskadapt.metrics.delta_m`).
    ``out`` defaults to ``<checkpoint dir>/../eval-<split>``. ``tasks``: score only these of the
    model's tasks (a dataset that labels fewer tasks); default all. ``options``: the reader's options
    (default: the checkpoint's ``data.options`` when it reads its own format, else none).

    Returns the document written to ``metrics.json`` plus ``"files": {"metrics", "report"}``.
    """
    from taskadapt.metrics.delta_m import delta_m, load_baseline
    from taskadapt.train.data import dataset_root, eval_loader, reader_format
    from taskadapt.train.distributed import cleanup, init_from_env
    from taskadapt.train.evaluate import evaluate

    checkpoint = Path(checkpoint)
    base = load_baseline(baseline) if baseline is not None else None  # a bad file fails before the work
    predictor = load(checkpoint)
    cfg = predictor.config
    own_format = reader_format(cfg)
    fmt = format or cfg.data.format
    reader = "nyud" if fmt == "scenes" else fmt
    root = Path(data) if data is not None else dataset_root(cfg)
    same_dataset = data is None and reader == own_format
    split = split or cfg.data.test_split
    if tasks is not None:
        unknown = [t for t in tasks if t not in predictor.tasks]
        if unknown:
            raise DatasetError(f"the checkpoint does not predict {unknown}; it predicts {predictor.tasks}")
    tasks = [t for t in predictor.tasks if tasks is None or t in tasks]
    if options is None:
        options = dict(cfg.data.options) if reader == own_format else {}
    dataset = _open_split(reader, root, split, tasks, str(dataset_root(cfg)), options)
    for task, k in dataset.num_classes.items():
        trained = predictor.num_classes.get(task)
        if trained is not None and trained != k:
            raise DatasetError(f"'{root}' has {k} {task} classes but the checkpoint predicts {trained}; "
                               "evaluate on a dataset with the classes it was trained on")

    tolerance = _edge_tolerance_for(cfg, reader, same_dataset)
    # under torchrun every rank scores its share of the images (each exactly once); metrics are summed
    info = init_from_env()
    try:
        loader = eval_loader(cfg, dataset, rank=info.rank, world=info.world)
        model = _OnDevice(predictor.model.to(info.device), info.device)
        results = evaluate(model, loader, tasks, predictor.num_classes, edge_exact=True, edge_tolerance=tolerance,
                           progress=progress and info.is_main, description=f"evaluating {split}")
    finally:
        cleanup(info)

    primary = {}
    for task in results["metrics"]:
        name, directions = metric_info(task)
        primary[task] = {"metric": name, "higher_is_better": directions[name]}
    doc: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "step": predictor.meta.get("step"),
        "method": predictor.meta.get("method"),
        "backbone": predictor.meta.get("backbone"),
        "tasks": tasks,
        "dataset": {"root": str(root), "format": fmt, "reader": reader, "split": split},
        "images": results["images"],
        "input_size": predictor.input_size,
        "edge_matcher": ({"exact": True, "tolerance": tolerance, "unit": "fraction of the image diagonal"}
                         if "edge" in tasks else None),
        "metrics": results["metrics"],
        "primary": primary,
        "delta_m": None,
        "taskadapt_version": __version__,
    }
    if base is not None:
        dm = delta_m(results["metrics"], base)
        doc["delta_m"] = {**dm.to_dict(), "baseline_file": str(baseline),
                          "baseline": {t: s["value"] for t, s in base["tasks"].items()}}

    out_dir = Path(out) if out is not None else checkpoint.absolute().parent.parent / f"eval-{split}"
    metrics_path, report_path = out_dir / "metrics.json", out_dir / "report.md"
    if info.is_main:
        write_json(metrics_path, doc)
        write_text(report_path, report_markdown(doc))
    return {**doc, "files": {"metrics": str(metrics_path), "report": str(report_path)}}


# ---------------------------------------------------------------------------------- rendering


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


def _rows(task: str, metrics: dict[str, float], primary: dict | None) -> list[tuple[str, str, str, bool]]:
    """(metric, value, direction arrow, is primary) per metric of one task."""
    name, directions = metric_info(task)
    if primary and task in primary:
        name = primary[task]["metric"]
    rows = []
    for metric, value in metrics.items():
        arrow = {True: "↑", False: "↓"}.get(directions.get(metric), "")  # e.g. ods_threshold: no direction
        rows.append((metric, _fmt(float(value)), arrow, metric == name))
    return rows


def report_markdown(doc: dict[str, Any]) -> str:
    """The ``report.md`` text of an :func:`evaluate_checkpoint` document."""
    d = doc["dataset"]
    lines = [
        f"# Evaluation of `{doc['checkpoint']}`",
        "",
        "| | |",
        "|---|---|",
        f"| checkpoint | `{doc['checkpoint']}` (step {doc.get('step')}, method {doc.get('method')}, "
        f"backbone {doc.get('backbone')}) |",
        f"| dataset | `{d['root']}` (format {d['format']}, read as {d['reader']}) |",
        f"| split | {d['split']} |",
        f"| images | {doc['images']} (model input {doc.get('input_size')} px, metrics at the labels' resolution) |",
    ]
    if doc.get("edge_matcher"):
        e = doc["edge_matcher"]
        kind = "exact one-to-one (max-cardinality bipartite)" if e["exact"] else "approximate (distance transform)"
        lines.append(f"| edge matcher | {kind}, tolerance {e['tolerance']} of the image diagonal |")
    lines.append(f"| taskadapt | {doc.get('taskadapt_version', __version__)} |")
    lines += ["", "The primary metric of each task (used for model selection and Δm) is in **bold**; "
              "↑ = higher is better, ↓ = lower is better.", ""]
    for task, metrics in doc["metrics"].items():
        lines += [f"## {task}", "", "| metric | value | better |", "|---|---:|:---:|"]
        for metric, value, arrow, is_primary in _rows(task, metrics, doc.get("primary")):
            label = f"**{metric}** (primary)" if is_primary else metric
            shown = f"**{value}**" if is_primary else value
            lines.append(f"| {label} | {shown} | {arrow} |")
        lines.append("")
    dm = doc.get("delta_m")
    if dm:
        lines += [f"## Δm against `{dm['baseline_file']}`", ""]
        if dm.get("description"):
            lines += [dm["description"], ""]
        lines += ["| task | metric | baseline | this model | relative gain |", "|---|---|---:|---:|---:|"]
        for task, gain in dm["contributions"].items():
            model_value = doc["metrics"][task][dm["metrics"][task]]
            lines.append(f"| {task} | {dm['metrics'][task]} | {_fmt(dm['baseline'][task])} | {_fmt(model_value)} "
                         f"| {gain:+.2f}% |")
        lines += ["", f"**Δm = {dm['delta_m']:+.2f}%** over {len(dm['contributions'])} tasks "
                  "(mean of the signed relative gains of the primary metrics; positive = better than the baseline)."]
        if dm.get("ignored"):
            lines.append(f"Not in the baseline, ignored: {', '.join(dm['ignored'])}.")
        lines.append("")
    return "\n".join(lines)


def metrics_table(results: dict[str, Any]) -> Table:
    """A terminal table of ``{"metrics": {task: {name: value}}}`` (an :func:`evaluate_checkpoint` or
    ``evaluate`` result): one row per metric, the primary metric of each task marked."""
    title = "metrics"
    if "dataset" in results:
        d = results["dataset"]
        title = f"{d['root']} / {d['split']} ({results.get('images')} images)"
    table = Table(title=title)
    for name, kw in (("task", {}), ("metric", {}), ("value", {"justify": "right"}), ("", {"justify": "center"})):
        table.add_column(name, **kw)
    for task, metrics in results["metrics"].items():
        for k, (metric, value, arrow, is_primary) in enumerate(_rows(task, metrics, results.get("primary"))):
            style = "bold" if is_primary else None
            table.add_row(task if k == 0 else "", f"{metric} *" if is_primary else metric, value, arrow, style=style)
        table.add_section()
    dm = results.get("delta_m")
    caption = "* primary metric; ↑ higher is better, ↓ lower is better"
    if dm:
        caption = f"Δm = {dm['delta_m']:+.2f}% vs {dm.get('baseline_file', 'baseline')}\n{caption}"
    table.caption = caption
    return table


# ---------------------------------------------------------------------------------- predictions


def _sample_convention(value: np.ndarray) -> np.ndarray:
    """Predictor layout -> sample layout: (H, W, 3) normals become (3, H, W); maps stay (H, W)."""
    return value.transpose(2, 0, 1) if value.ndim == 3 else value


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    from PIL import Image

    with atomic_open(path, "wb") as f:
        Image.fromarray(rgb).save(f, format="PNG")
    return path


def predict_images(checkpoint: str | os.PathLike, images: list[str], out: str) -> list[Path]:
    """Predict every task on each picture; write ``<stem>_<task>.png`` (coloured as the task's
    ``visualize``) and ``<stem>_sheet.png`` (input + every task side by side) into ``out``.

    Pictures of any size are accepted (predictions are at the picture's size). Repeated stems get
    ``-2``, ``-3`` ... appended. A missing or unreadable picture is a DatasetError naming it. Returns
    the written paths in order (per picture: the task PNGs, then the sheet).
    """
    from taskadapt.viz import contact_sheet

    if not images:
        raise DatasetError("no images given; pass one or more image files")
    for image in images:  # fail before any work on a typo
        if not Path(image).is_file():
            raise DatasetError(f"image '{image}' does not exist or is not a file; pass the path of an image file")
    predictor: Predictor = load(checkpoint)
    out_dir = Path(out)
    written: list[Path] = []
    seen: dict[str, int] = {}
    for image in images:
        rgb = read_image(image)
        stem = Path(image).stem
        seen[stem] = seen.get(stem, 0) + 1
        if seen[stem] > 1:
            stem = f"{stem}-{seen[stem]}"
        preds = predictor.predict(rgb)
        sample: dict[str, Any] = {"image": torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0}
        for task, value in preds.items():
            spec = predictor.specs[task]
            sample[task] = _sample_convention(value)
            picture = spec.visualize(sample[task], predictor.num_classes.get(task))
            written.append(_write_png(out_dir / f"{stem}_{task}.png", picture))
        written.append(contact_sheet([sample], out_dir / f"{stem}_sheet.png", num_classes=predictor.num_classes,
                                     keys=["image", *preds], title=Path(image).name))
    return written


# ---------------------------------------------------------------------------------- task affinity


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
    from taskadapt.models.methods import get_method
    from taskadapt.train.checkpoint import read_meta

    checkpoint = Path(checkpoint)
    meta = read_meta(checkpoint)
    method = str(meta.get("method"))
    cfg_model = (meta.get("config") or {}).get("model", {})
    troa_on = cfg_model.get("troa", {}).get("enabled", True)
    try:
        plan_troa = get_method(method).troa
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

    from taskadapt.viz import save_figure

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


__all__ = ["NoAffinity", "affinity_report", "evaluate_checkpoint", "metric_info", "metrics_table",
           "predict_images", "report_markdown"]
