"""Pieces the protocols share: a run's config for another dataset, scoring a checkpoint on a dataset
section, and the metric cells of their tables."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from rich.table import Table

from taskadapt.config import Config, DataConfig
from taskadapt.data.datasets import prepare_dataset
from taskadapt.evaluation.scoring import evaluate_checkpoint
from taskadapt.tasks import get_task


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
    prepare_dataset(data, progress=progress)
    doc = evaluate_checkpoint(checkpoint, section=data, split=data.test_split, out=str(out), progress=progress,
                              tasks=tasks)
    return doc["metrics"]


def shown_metrics(task: str, metrics: dict[str, float]) -> list[str]:
    """The metrics a table shows for ``task`` (its metric's ``shown``, primary first) among ``metrics``."""
    return [n for n in get_task(task).shown_metrics if n in metrics]


def metric_header(task: str, name: str) -> str:
    return f"{task} {name} {'↑' if get_task(task).directions.get(name, True) else '↓'}"


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
