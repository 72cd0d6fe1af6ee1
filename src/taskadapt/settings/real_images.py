"""Real photographs (``taskadapt eval-real``): a trained model, unchanged, against human / sensor ground truth.

For every folder (:mod:`taskadapt.data.real`; edges in ``bsds`` layout, depth as ``depth_png`` or
``middlebury``) the model's full-resolution prediction (``taskadapt.load(ckpt).predict(photo)``: the
photo is resized -- squashed, aspect ratio not kept -- to the model's square input and the outputs
resized back) and every trivial baseline of :mod:`taskadapt.baselines` are scored the same way:

* edges -- ODS-F, OIS-F and AP against all annotators of an image at once
  (:class:`~taskadapt.metrics.edges.MultiAnnotatorEdgeMetric`: exact one-to-one matching, thinned
  predictions, 99 thresholds, maxDist = ``edge_tolerance`` x the image diagonal, 0.0075 as BSDS).
  The ground truth is thinned too (``thin_gt``, default on) with :func:`taskadapt.morphology.thin`:
  a no-op on BSDS maps, which are 1 px wide already, but the NYUD boundary maps of the shared set are
  2-3 px wide in places (thinning removes 16 % of their pixels), and each GT pixel needs its own
  matched predicted pixel, so a 1-px thinned prediction could never recall a wide GT band. The
  BSDS protocol thins predictions only, because its GT is thin by construction; thinning a wide GT
  restores that premise. Measured on the 5 shared NYUD images: Sobel odsF 0.601 -> 0.606, Canny
  0.614 -> 0.642 (``--no-thin-gt`` uses the maps as stored).
* depth -- per-image least-squares scale and, separately, median scaling, then SILog (natural log,
  not x100), AbsRel, RMSE and delta < 1.25^k on the valid pixels, averaged over images
  (:class:`~taskadapt.metrics.depth_aligned.AlignedDepthMetric`).

Writes ``metrics.json`` and ``report.md`` (atomically) and, per image, a picture sheet
``sheets/<folder>/<id>.png`` (photo, ground truth, model, the image's best baseline; per-image scores in
the titles). A folder whose task the checkpoint does not predict is skipped with a note; when no
folder is left, that is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from taskadapt import __version__
from taskadapt.baselines import BASELINES
from taskadapt.data.real import Calibration, RealFolder, RealSample, open_real_folder
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.io import write_json, write_text
from taskadapt.metrics.depth_aligned import ALIGNMENTS, AlignedDepthMetric
from taskadapt.metrics.edges import MultiAnnotatorEdgeMetric, image_scores
from taskadapt.morphology import thin
from taskadapt.settings.common import markdown_table, rich_table

MODEL = "model"
RESIZE_NOTE = ("each photo is resized (bilinear, antialiased; squashed to a square, aspect ratio not kept) to "
               "the model's input size and the outputs are resized back to the photo's full resolution")

#: (metric key, column header) of each task's table; depth keys are "<alignment>/<metric>"
COLUMNS = {
    "edge": [("odsF", "ODS-F ↑"), ("oisF", "OIS-F ↑"), ("AP", "AP ↑")],
    "depth": [("lsq/silog", "SILog ↓"), ("lsq/abs_rel", "AbsRel ↓ (LSQ)"), ("lsq/delta1", "δ<1.25 ↑ (LSQ)"),
              ("median/abs_rel", "AbsRel ↓ (median)"), ("median/delta1", "δ<1.25 ↑ (median)")],
}


def _scorers(task: str, edge_tolerance: float) -> dict[str, Any]:
    if task == "edge":
        return {"edge": MultiAnnotatorEdgeMetric(tolerance=edge_tolerance)}
    return {a: AlignedDepthMetric(alignment=a) for a in ALIGNMENTS}


def _score_image(task: str, scorers: dict[str, Any], pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Update ``scorers`` with one image; return its per-image scores (for the sheet and per_image)."""
    if task == "edge":
        m = scorers["edge"]
        m.update(torch.from_numpy(np.asarray(pred, dtype=np.float32)), torch.from_numpy(target.astype(np.float32)))
        return image_scores(m.last_counts, m.thresholds)
    out: dict[str, float] = {}
    for alignment, m in scorers.items():
        m.update(torch.from_numpy(np.asarray(pred, dtype=np.float32)), torch.from_numpy(target))
        out.update({f"{alignment}/{k}": v for k, v in (m.last_errors or {}).items()})
    return out


def _final(task: str, scorers: dict[str, Any]) -> dict[str, Any]:
    if task == "edge":
        return {k: float(v) for k, v in scorers["edge"].compute().items()}
    return {a: {k: float(v) for k, v in m.compute().items()} for a, m in scorers.items()}


def _better(task: str, a: dict[str, float], b: dict[str, float]) -> bool:
    """Per-image comparison: higher best F for edges, lower LSQ AbsRel for depth."""
    if task == "edge":
        return a["F"] > b["F"]
    return a.get("lsq/abs_rel", np.inf) < b.get("lsq/abs_rel", np.inf)


# ---------------------------------------------------------------------------------- picture sheets


def _caption(task: str, name: str, scores: dict[str, float]) -> str:
    if task == "edge":
        return f"{name}\nF {scores['F']:.3f} (t={scores['threshold']:.2f}), AP {scores['AP']:.3f}"
    if "lsq/abs_rel" not in scores:
        return f"{name}\n(no valid pixel)"
    return (f"{name} (x{scores['lsq/scale']:.3g}, LSQ)\nAbsRel {scores['lsq/abs_rel']:.3f}, "
            f"δ1 {scores['lsq/delta1']:.3f}, SILog {scores['lsq/silog']:.3f}")


def _write_sheet(path: Path, sample: RealSample, target: np.ndarray, preds: dict[str, np.ndarray],
                 scores: dict[str, dict[str, float]], best_baseline: str) -> Path:
    from taskadapt.viz import depth_to_rgb, edge_to_rgb, panel_sheet

    h, w = sample.image.shape[:2]
    shown = [n for n in (MODEL, best_baseline) if n in preds]
    if sample.task == "edge":
        panels = [(f"photo {sample.id} ({w}x{h})", sample.image),
                  (f"ground truth: mean of {target.shape[0]} annotator(s)", edge_to_rgb(target.mean(axis=0)))]
        for n in shown:
            label = n if n == MODEL else f"best baseline here: {n}"
            panels.append((_caption("edge", label, scores[n]), edge_to_rgb(preds[n])))
    else:
        valid = np.isfinite(target)
        lo, hi = np.percentile(target[valid], [2, 98]) if valid.any() else (0.0, 1.0)
        grey = (128, 128, 128)
        panels = [(f"photo {sample.id} ({w}x{h})", sample.image),
                  (f"ground truth, {lo:.2f}-{hi:.2f} m\n(grey = no measurement)",
                   depth_to_rgb(target, lo, hi, invalid=grey))]
        for n in shown:
            label = n if n == MODEL else f"best baseline here: {n}"
            aligned = preds[n] * scores[n].get("lsq/scale", 1.0)
            panels.append((_caption("depth", label, scores[n]), depth_to_rgb(aligned, lo, hi, invalid=grey)))
    return panel_sheet(panels, path)


# ---------------------------------------------------------------------------------- protocol


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "folder"


def _thin_stack(maps: np.ndarray) -> np.ndarray:
    return np.stack([thin(m) for m in maps])


def evaluate_real(checkpoint: str | os.PathLike | None, folders: list[str | os.PathLike],
                  out: str | os.PathLike | None = None, format: str | None = None,
                  calibration: Calibration | None = None, overwrite: bool = False, edge_tolerance: float = 0.0075,
                  thin_gt: bool = True, sheets: bool = True, progress: bool = True) -> dict[str, Any]:
    """Score ``checkpoint`` (None: the baselines only) and the baselines on each folder of real photos.

    ``format``: the layout of every folder (default: detected per folder). ``calibration``: for
    ``middlebury`` folders without a ``calib.txt``. ``out`` defaults to ``<checkpoint dir>/../eval-real``
    (``runs/eval-real`` without a checkpoint); an ``out`` that already holds a ``metrics.json`` is an
    error unless ``overwrite``. Every folder is read completely before the model runs, so a corrupt
    file fails fast. Returns the ``metrics.json`` document plus ``"files": {"metrics", "report"}``.
    """
    from taskadapt.api import load

    if not folders:
        raise ConfigError("no folder given; pass one or more folders of real photos with ground truth")
    if not edge_tolerance > 0:
        raise ConfigError(f"--edge-tolerance must be > 0 (a fraction of the image diagonal), got {edge_tolerance}")
    if out is None:
        out = Path(checkpoint).absolute().parent.parent / "eval-real" if checkpoint else Path("runs/eval-real")
    out = Path(out)
    if (out / "metrics.json").exists() and not overwrite:
        raise ConfigError(f"'{out}' already holds an eval-real result (metrics.json); pass --overwrite to replace it "
                          "or choose another --out")

    opened: list[RealFolder] = [open_real_folder(f, format, calibration) for f in folders]
    for folder in opened:
        folder.check()  # decode every file now: a corrupt one fails before any model work
    predictor = load(checkpoint) if checkpoint is not None else None

    names: list[str] = []
    todo: list[tuple[str, RealFolder]] = []
    skipped: list[dict[str, str]] = []
    for folder in opened:
        if predictor is not None and folder.task not in predictor.tasks:
            skipped.append({"root": str(folder.root), "format": folder.format,
                            "reason": f"the checkpoint does not predict {folder.task} (it predicts "
                                      f"{', '.join(predictor.tasks)})"})
            continue
        name, k = _safe(folder.root.name), 2
        while name in names:
            name, k = f"{_safe(folder.root.name)}-{k}", k + 1
        names.append(name)
        todo.append((name, folder))
    if not todo:
        raise DatasetError(f"nothing to score: {'; '.join(s['root'] + ': ' + s['reason'] for s in skipped)}. "
                           "Pass folders of a task the checkpoint predicts, or a checkpoint trained on edge/depth")

    results = []
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeRemainingColumn(), disable=not progress, transient=True)
    with bar:
        job = bar.add_task("eval-real", total=sum(len(f) for _, f in todo))
        for name, folder in todo:
            bar.update(job, description=f"eval-real {name}")
            results.append(_evaluate_folder(name, folder, predictor, out, edge_tolerance, thin_gt, sheets,
                                            lambda: bar.advance(job)))

    doc: dict[str, Any] = {
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "step": predictor.meta.get("step") if predictor else None,
        "method": predictor.meta.get("method") if predictor else None,
        "backbone": predictor.meta.get("backbone") if predictor else None,
        "tasks": list(predictor.tasks) if predictor else None,
        "input_size": predictor.input_size if predictor else None,
        "resize": RESIZE_NOTE if predictor else None,
        "protocol": {
            "edge": {"tolerance": edge_tolerance, "unit": "fraction of the image diagonal", "thresholds": 99,
                     "matcher": "exact one-to-one (max-cardinality bipartite), all annotators at once",
                     "thin_predictions": True, "thin_gt": thin_gt},
            "depth": {"alignments": list(ALIGNMENTS), "aggregation": "mean over images", "min_depth": 1e-3,
                      "silog": "sqrt(mean(g^2) - mean(g)^2), g = ln q - ln d, natural log, not x100"},
        },
        "folders": results,
        "skipped": skipped,
        "taskadapt_version": __version__,
    }
    metrics_path, report_path = out / "metrics.json", out / "report.md"
    write_json(metrics_path, doc)
    write_text(report_path, report_markdown(doc))
    return {**doc, "files": {"metrics": str(metrics_path), "report": str(report_path)}}


def at_input_size(baseline: Callable[[np.ndarray], np.ndarray], size: int) -> Callable[[np.ndarray], np.ndarray]:
    """``baseline`` run on the photo resized to ``size`` x ``size`` as the model sees it (bilinear,
    antialiased, squashed), its (size, size) map resized back bilinearly to the photo's (H, W).

    A resolution-matched baseline: it has exactly the model's input pixels, so the gap between it and
    the full-resolution baseline is what the model's input size alone costs."""

    def run(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]  # a copy: writable
        small = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        small_image = small[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        low = torch.from_numpy(np.asarray(baseline(small_image), dtype=np.float32))[None, None]
        return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()

    return run


def _evaluate_folder(name: str, folder: RealFolder, predictor, out: Path, edge_tolerance: float, thin_gt: bool,
                     sheets: bool, advance) -> dict[str, Any]:
    task = folder.task
    baselines = dict(BASELINES[task])
    if predictor is not None and task == "edge":  # depth baselines do not depend on the resolution
        s = predictor.input_size
        baselines.update({f"{n}@{s}px": at_input_size(fn, s) for n, fn in BASELINES[task].items()})
    methods = ([MODEL] if predictor is not None else []) + list(baselines)
    scorers = {m: _scorers(task, edge_tolerance) for m in methods}
    per_image: dict[str, dict[str, dict[str, float]]] = {}
    annotators: list[int] = []
    for sample in folder:
        target = sample.target
        if task == "edge":
            annotators.append(int(target.shape[0]))
            if thin_gt:
                target = _thin_stack(target)
        preds = {n: fn(sample.image) for n, fn in baselines.items()}
        if predictor is not None:
            preds = {MODEL: np.asarray(predictor.predict(sample.image)[task], dtype=np.float32), **preds}
        scores = {m: _score_image(task, scorers[m], preds[m], target) for m in methods}
        per_image[sample.id] = scores
        best = list(baselines)[0]
        for n in baselines:
            if _better(task, scores[n], scores[best]):
                best = n
        if sheets:
            _write_sheet(out / "sheets" / name / f"{_safe(sample.id)}.png", sample, target, preds, scores, best)
        advance()
    entry: dict[str, Any] = {"name": name, "root": str(folder.root), "format": folder.format, "task": task,
                             "images": len(folder), "methods": methods,
                             "scores": {m: _final(task, scorers[m]) for m in methods}}
    if task == "edge":
        entry["annotators"] = {"min": min(annotators), "max": max(annotators), "total": sum(annotators)}
    if folder.calibration is not None:
        c = folder.calibration
        entry["calibration"] = {"f": c.f, "baseline_m": c.baseline, "doffs": c.doffs, "source": c.source}
    entry["sheets"] = str(out / "sheets" / name) if sheets else None
    entry["per_image"] = per_image
    return entry


# ---------------------------------------------------------------------------------- tables


def _cell(scores: dict[str, Any], key: str) -> str:
    value: Any = scores
    for part in key.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def folder_table(entry: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of one folder: a row per method (model first), a column per metric."""
    columns = COLUMNS[entry["task"]]
    header = ["method"] + [h for _, h in columns]
    rows = [[m] + [_cell(entry["scores"][m], k) for k, _ in columns] for m in entry["methods"]]
    return header, rows


def _describe(entry: dict[str, Any]) -> str:
    text = f"{entry['images']} image(s), format {entry['format']}, task {entry['task']}"
    if entry.get("annotators"):
        a = entry["annotators"]
        span = str(a["min"]) if a["min"] == a["max"] else f"{a['min']}-{a['max']}"
        text += f", {span} annotator(s) per image"
    if entry.get("calibration"):
        c = entry["calibration"]
        text += f", calibration f={c['f']:g} px, B={c['baseline_m']:g} m, doffs={c['doffs']:g} px ({c['source']})"
    return text


def report_markdown(doc: dict[str, Any]) -> str:
    """The ``report.md`` text of an :func:`evaluate_real` document."""
    p = doc["protocol"]
    lines = ["# Evaluation on real photographs", "", "| | |", "|---|---|"]
    if doc.get("checkpoint"):
        lines.append(f"| checkpoint | `{doc['checkpoint']}` (step {doc.get('step')}, method {doc.get('method')}, "
                     f"backbone {doc.get('backbone')}, input {doc.get('input_size')} px) |")
        lines.append(f"| resizing | {doc['resize']} |")
    else:
        lines.append("| checkpoint | none: baselines only |")
    e = p["edge"]
    lines += [
        f"| edges | ODS-F / OIS-F / AP against all annotators at once, exact one-to-one matching, maxDist "
        f"{e['tolerance']} of the diagonal, {e['thresholds']} thresholds, predictions thinned, "
        f"GT {'thinned' if e['thin_gt'] else 'as stored'} |",
        "| depth | per-image scale (least squares; median), then SILog (natural log, not x100), AbsRel, δ<1.25 "
        "on valid pixels, mean over images |",
        f"| taskadapt | {doc.get('taskadapt_version', __version__)} |",
        "",
        "Few images: read every number with its image count and beside the trivial baselines.",
        "",
    ]
    for entry in doc["folders"]:
        header, rows = folder_table(entry)
        lines += [f"## {entry['name']}", "", f"`{entry['root']}`: {_describe(entry)}.", "",
                  markdown_table(header, rows).rstrip("\n"), ""]
        if entry.get("sheets"):
            lines += [f"Picture sheets: `{entry['sheets']}/`.", ""]
    if doc.get("skipped"):
        lines += ["## Skipped", ""]
        lines += [f"- `{s['root']}` ({s['format']}): {s['reason']}" for s in doc["skipped"]]
        lines.append("")
    return "\n".join(lines)


def real_tables(doc: dict[str, Any]) -> list:
    """One ``rich`` table per scored folder, for the terminal."""
    tables = []
    for entry in doc["folders"]:
        header, rows = folder_table(entry)
        table = rich_table(entry["name"], header, rows)
        table.caption = _describe(entry)
        tables.append(table)
    return tables


__all__ = ["evaluate_real", "folder_table", "real_tables", "report_markdown"]
