"""The ``eval-real`` flow: open the folders, run the model and the baselines, score, write the files.

Everything that differs between tasks is asked of the folder's protocol (:mod:`.protocols`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from taskadapt.data.real import Calibration, RealFolder, RealSample, open_real_folder
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.io import write_json, write_text
from taskadapt.settings.real_images.protocols import PROTOCOLS, RealOptions, RealProtocol, Shown, protocol_for
from taskadapt.settings.real_images.report import report_markdown
from taskadapt.version import __version__

MODEL = "model"
RESIZE_NOTE = ("each photo is resized (bilinear, antialiased; squashed to a square, aspect ratio not kept) to "
               "the model's input size and the outputs are resized back to the photo's full resolution")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "folder"


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
    options = RealOptions(edge_tolerance=edge_tolerance, thin_gt=thin_gt)
    for protocol in PROTOCOLS.values():
        protocol.check(options)
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
                           f"Pass folders of a task the checkpoint predicts, or a checkpoint trained on "
                           f"{'/'.join(PROTOCOLS)}")

    results = []
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeRemainingColumn(), disable=not progress, transient=True)
    with bar:
        job = bar.add_task("eval-real", total=sum(len(f) for _, f in todo))
        for name, folder in todo:
            bar.update(job, description=f"eval-real {name}")
            protocol = protocol_for(folder.task)(options)
            results.append(_evaluate_folder(name, folder, protocol, predictor, out, sheets, lambda: bar.advance(job)))

    doc: dict[str, Any] = {
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "step": predictor.meta.get("step") if predictor else None,
        "method": predictor.meta.get("method") if predictor else None,
        "backbone": predictor.meta.get("backbone") if predictor else None,
        "tasks": list(predictor.tasks) if predictor else None,
        "input_size": predictor.input_size if predictor else None,
        "resize": RESIZE_NOTE if predictor else None,
        "protocol": {task: protocol(options).settings() for task, protocol in PROTOCOLS.items()},
        "folders": results,
        "skipped": skipped,
        "taskadapt_version": __version__,
    }
    metrics_path, report_path = out / "metrics.json", out / "report.md"
    write_json(metrics_path, doc)
    write_text(report_path, report_markdown(doc))
    return {**doc, "files": {"metrics": str(metrics_path), "report": str(report_path)}}


def _evaluate_folder(name: str, folder: RealFolder, protocol: RealProtocol, predictor, out: Path, sheets: bool,
                     advance: Callable[[], Any]) -> dict[str, Any]:
    task = folder.task
    baselines = protocol.baselines(predictor.input_size if predictor is not None else None)
    methods = ([MODEL] if predictor is not None else []) + list(baselines)
    scorers = {m: protocol.scorers() for m in methods}
    per_image: dict[str, dict[str, dict[str, float]]] = {}
    for sample in folder:
        target = protocol.prepare_target(sample.target)
        preds = {n: fn(sample.image) for n, fn in baselines.items()}
        if predictor is not None:
            preds = {MODEL: np.asarray(predictor.predict(sample.image)[task], dtype=np.float32), **preds}
        scores = {m: protocol.score_image(scorers[m], preds[m], target) for m in methods}
        per_image[sample.id] = scores
        best = list(baselines)[0]
        for n in baselines:
            if protocol.better(scores[n], scores[best]):
                best = n
        if sheets:
            _write_sheet(out / "sheets" / name / f"{_safe(sample.id)}.png", protocol, sample, target, preds, scores,
                         best)
        advance()
    entry: dict[str, Any] = {"name": name, "root": str(folder.root), "format": folder.format, "task": task,
                             "images": len(folder), "methods": methods,
                             "scores": {m: protocol.final(scorers[m]) for m in methods}}
    entry.update(protocol.folder_notes())
    if folder.calibration is not None:
        c = folder.calibration
        entry["calibration"] = {"f": c.f, "baseline_m": c.baseline, "doffs": c.doffs, "source": c.source}
    entry["sheets"] = str(out / "sheets" / name) if sheets else None
    entry["per_image"] = per_image
    return entry


def _write_sheet(path: Path, protocol: RealProtocol, sample: RealSample, target: np.ndarray,
                 preds: dict[str, np.ndarray], scores: dict[str, dict[str, float]], best_baseline: str) -> Path:
    """Photo, ground truth, the model and the image's best baseline, per-image scores in the titles."""
    from taskadapt.viz import panel_sheet

    h, w = sample.image.shape[:2]
    shown: list[Shown] = [(n if n == MODEL else f"best baseline here: {n}", preds[n], scores[n])
                          for n in (MODEL, best_baseline) if n in preds]
    return panel_sheet([(f"photo {sample.id} ({w}x{h})", sample.image), *protocol.panels(target, shown)], path)


__all__ = ["MODEL", "RESIZE_NOTE", "evaluate_real"]
