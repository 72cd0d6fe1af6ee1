"""Pieces the settings share: a run's config for another dataset, scoring a checkpoint on a dataset
section, and the metric cells of their tables."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from rich.table import Table

from taskadapt.config import Config, DataConfig
from taskadapt.evaluation_report import evaluate_checkpoint, metric_info

#: every table cell shows these metrics of each task (the primary first)
SHOWN = {"semseg": ["mIoU"], "depth": ["rmse", "abs_rel"], "normals": ["mean", "median", "within_11.25"],
         "edge": ["odsF"], "parts": ["mIoU"], "saliency": ["maxF"]}


def with_run(cfg: Config, out_dir: Path, **train: Any) -> Config:
    """A copy of ``cfg`` writing to ``out_dir``, with ``train.<key>=value`` changes."""
    c = copy.deepcopy(cfg)
    c.out_dir = str(out_dir)
    for key, value in train.items():
        setattr(c.train, key, value)
    return c


def shorter_schedule(c: Config, steps: int) -> None:
    """Fit warm-up, evaluation and checkpoint intervals to a run of ``steps`` steps."""
    t = c.train
    t.steps = steps
    t.warmup_steps = min(t.warmup_steps, steps // 10)
    t.eval_every = min(t.eval_every, steps)
    t.checkpoint_every = min(t.checkpoint_every, steps)


def score(checkpoint: Path, data: DataConfig, tasks: list[str], out: Path, progress: bool = True) -> dict:
    """Every metric of ``tasks`` on the test split of the dataset section ``data`` (exact edges)."""
    from taskadapt.train.data import dataset_root, prepare_scenes

    if data.format == "scenes":
        prepare_scenes(data, progress=progress)
    fmt = "nyud" if data.format == "scenes" else data.format
    doc = evaluate_checkpoint(checkpoint, data=str(dataset_root(data)), format=fmt, split=data.test_split,
                              out=str(out), progress=progress, tasks=tasks, options=dict(data.options))
    return doc["metrics"]


def describe(d: DataConfig) -> str:
    """``scenes/<domain>`` or ``<format>:<root>``."""
    return f"scenes/{d.scenes.domain}" if d.format == "scenes" else f"{d.format}:{d.root}"


def shown_metrics(task: str, metrics: dict[str, float]) -> list[str]:
    primary, _ = metric_info(task)
    names = SHOWN.get(task, [primary])
    return [n for n in names if n in metrics]


def metric_header(task: str, name: str) -> str:
    _, directions = metric_info(task)
    return f"{task} {name} {'↑' if directions.get(name, True) else '↓'}"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    return table
