"""Scoring a trained run on a dataset split: :func:`evaluate_run` (the one path every command takes --
``taskadapt eval``, compare, the settings, the demo) and :func:`evaluate_checkpoint` (``taskadapt eval``:
the same, written as ``metrics.json`` and ``report.md``, with Delta_m against a baseline file).

Images are resized to the model's input size; predictions are upsampled to each label's original size;
boundaries use the exact one-to-one matcher at the dataset's tolerance (:func:`edge_tolerance`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from taskadapt.data.datasets import dataset_root, edge_thin_targets, edge_tolerance
from taskadapt.distributed import cleanup, init_from_env, is_main_process
from taskadapt.errors import DatasetError
from taskadapt.evaluation.loaders import CheckedLabels, eval_loader, open_split
from taskadapt.evaluation.loop import OnDevice, evaluate
from taskadapt.evaluation.report import report_markdown
from taskadapt.io import write_json, write_text
from taskadapt.metrics.delta_m import delta_m, load_baseline
from taskadapt.run import Run
from taskadapt.sharing.hub import is_hub_id, parse_hub_id
from taskadapt.tasks import get_task
from taskadapt.version import __version__


def eval_section(run: Run, data: str | os.PathLike | None = None, format: str | None = None,
                 options: dict[str, Any] | None = None) -> Any:
    """The dataset section to score ``run`` on: its own (``data``/``format`` None), or the folder ``data``
    read in ``format`` (default: the run's format). The run's reader options and explicit boundary
    tolerance apply to its own dataset only."""
    own = run.config.data
    fmt = format or own.format
    if data is None and fmt == own.format and options is None:
        return own
    same_format = fmt == own.format
    return dataclasses.replace(
        own, format=fmt, root=str(data) if data is not None else str(dataset_root(own)),
        options=dict(options) if options is not None else (dict(own.options) if same_format else {}),
        edge_tolerance=own.edge_tolerance if data is None and same_format else None)


def _class_names(task: str, k: int, dataset: Any, run: Run) -> list[str]:
    """The K class names of ``task``: the dataset's, else the checkpoint's, else ``class_<i>``."""
    for names in (dataset.class_names.get(task), run.class_names.get(task)):
        if names is not None and len(names) == k:
            return list(names)
    return [f"class_{i}" for i in range(k)]


def evaluate_run(run: Run, section: Any = None, split: str | None = None, tasks: list[str] | None = None, *,
                 exact_edges: bool = True, batch_size: int | None = None, progress: bool = True,
                 description: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Every metric of ``tasks`` (default: all the run predicts) on ``split`` (default: the section's test
    split) of ``section`` (default: the run's own dataset), on ``device`` (default: the run's
    ``train.device``; ``auto`` = CUDA when available).

    Under torchrun every rank scores its share of the images (each exactly once) and the metrics are
    summed. Returns ``{"metrics": {task: {name: value}}, "per_class": {task: {name: {class name: value}}},
    "images", "tasks", "split", "dataset": {"root", "format", "split"}, "edge_tolerance", "exact_edges"}``.
    """
    section = section if section is not None else run.config.data
    split = split or section.test_split
    if tasks is not None:
        unknown = [t for t in tasks if t not in run.tasks]
        if unknown:
            raise DatasetError(f"the checkpoint does not predict {unknown}; it predicts {run.tasks}")
    tasks = [t for t in run.tasks if tasks is None or t in tasks]
    dataset = open_split(section, split, tasks, trained_on=str(dataset_root(run.config.data)))
    root = dataset_root(section)
    for task, k in dataset.num_classes.items():
        trained = run.num_classes.get(task)
        if trained is not None and trained != k:
            raise DatasetError(f"'{root}' has {k} {task} classes but the checkpoint predicts {trained}; "
                               "evaluate on a dataset with the classes it was trained on")
    tolerance, thin = edge_tolerance(section), edge_thin_targets(section)
    info = init_from_env(device or run.config.train.device)
    try:
        model = OnDevice(run.build_model(info.device), info.device)
        loader = eval_loader(CheckedLabels(dataset, run.num_classes), run.input_size,
                             batch_size or run.config.data.batch_size,
                             rank=info.rank, world=info.world)
        results = evaluate(model, loader, tasks, run.num_classes, edge_exact=exact_edges, edge_tolerance=tolerance,
                           edge_thin_targets=thin,
                           progress=progress and info.is_main, description=description or f"evaluating {split}")
    finally:
        cleanup(info)
    names = {t: _class_names(t, len(v[next(iter(v))]), dataset, run) for t, v in results["per_class"].items()}
    per_class = {t: {m: dict(zip(names[t], values, strict=True)) for m, values in v.items()}
                 for t, v in results["per_class"].items()}
    return {"metrics": results["metrics"], "per_class": per_class, "images": results["images"], "tasks": tasks,
            "split": split,
            "dataset": {"root": str(root), "format": section.format, "split": split},
            "edge_tolerance": tolerance, "edge_thin_targets": thin, "exact_edges": exact_edges}


def evaluate_checkpoint(checkpoint: str | os.PathLike, data: str | None = None, format: str | None = None,
                        split: str | None = None, baseline: str | None = None, out: str | None = None,
                        progress: bool = True, tasks: list[str] | None = None,
                        options: dict[str, Any] | None = None, section: Any = None,
                        device: str | None = None, backbone_weights: str | os.PathLike | None = None
                        ) -> dict[str, Any]:
    """Evaluate a checkpoint on a dataset split and write ``metrics.json`` and ``report.md``.

    ``data``/``format`` default to the checkpoint's own dataset (or pass a config ``section``), ``split``
    to its test split. ``baseline``: a Delta_m baseline JSON (:mod:`taskadapt.metrics.delta_m`). ``out``
    defaults to ``<checkpoint dir>/../eval-<split>``. ``tasks``: score only these of the model's tasks (a
    dataset that labels fewer tasks); default all. ``options``: the reader's options (default: the
    checkpoint's ``data.options`` when it reads its own format, else none). ``checkpoint`` may be an
    ``hf-hub:`` id (default ``out``: ``runs/eval-<repo>-<split>``); ``backbone_weights``: an adapter-only
    checkpoint's backbone weights when they are not where its header says.

    Returns the document written to ``metrics.json`` plus ``"files": {"metrics", "report"}``.
    """
    hub = is_hub_id(checkpoint)
    checkpoint = Path(checkpoint)
    base = load_baseline(baseline) if baseline is not None else None  # a bad file fails before the work
    run = Run.open(str(checkpoint) if hub else checkpoint, backbone_weights)
    section = section if section is not None else eval_section(run, data, format, options)
    result = evaluate_run(run, section, split, tasks, progress=progress, device=device)
    primary = {t: {"metric": get_task(t).primary_metric, "higher_is_better": get_task(t).higher_is_better}
               for t in result["metrics"]}
    boundary = [t for t in result["tasks"] if get_task(t).matches_boundaries]
    doc: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "step": run.meta.get("step"),
        "method": run.meta.get("method"),
        "backbone": run.meta.get("backbone"),
        "tasks": result["tasks"],
        "dataset": result["dataset"],
        "images": result["images"],
        "input_size": run.input_size,
        "edge_matcher": ({"exact": True, "tolerance": result["edge_tolerance"],
                          "unit": "fraction of the image diagonal", "thin_targets": result["edge_thin_targets"]}
                         if boundary else None),
        "metrics": result["metrics"],
        "per_class": result["per_class"],
        "primary": primary,
        "delta_m": None,
        "taskadapt_version": __version__,
    }
    if base is not None:
        dm = delta_m(result["metrics"], base)
        doc["delta_m"] = {**dm.to_dict(), "baseline_file": str(baseline),
                          "baseline": {t: s["value"] for t, s in base["tasks"].items()}}
    if out is not None:
        out_dir = Path(out)
    elif hub:  # not next to the file: that is huggingface_hub's cache
        out_dir = Path("runs") / f"eval-{parse_hub_id(str(checkpoint))[0].split('/')[-1]}-{result['split']}"
    else:
        out_dir = checkpoint.absolute().parent.parent / f"eval-{result['split']}"
    metrics_path, report_path = out_dir / "metrics.json", out_dir / "report.md"
    if is_main_process():  # under torchrun every rank has the results; one writes
        write_json(metrics_path, doc)
        write_text(report_path, report_markdown(doc))
    return {**doc, "files": {"metrics": str(metrics_path), "report": str(report_path)}}
