"""Unsupervised domain adaptation (``taskadapt adapt``; method.md §8, docs/settings.md).

Three runs with the same schedule and seed, scored on the target's test split:

* **source only**: trained on the labelled source (``data``), nothing of the target seen;
* **adapted (ours)**: the same, plus one unlabelled target batch per step and the output-space
  adversarial losses (:mod:`taskadapt.train.adversarial`); model selection on the carved *source*
  validation set, since target labels are not available in this setting;
* **target supervised**: trained on the target's labels (``adapt.target``): the upper bound.

Per task, the share of the gap closed is (adapted - source only) / (target supervised - source only)
on the primary metric: 0 % = no gain, 100 % = as good as training with target labels.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taskadapt.config import Config, validate
from taskadapt.data.datasets import describe
from taskadapt.errors import ConfigError
from taskadapt.io import write_json, write_text
from taskadapt.settings.common import (
    fmt,
    markdown_table,
    metric_header,
    rich_table,
    score,
    shown_metrics,
    with_run,
)
from taskadapt.tasks import get_task

ROWS = ("source only", "adapted (ours)", "target supervised")


@dataclass
class AdaptResult:
    source: str
    target: str
    tasks: list[str]
    metrics: dict[str, dict[str, dict[str, float]]]  # row -> task -> metric -> value
    checkpoints: dict[str, str]
    gap_closed: dict[str, float | None]  # task -> share of the gap closed (primary metric)
    out_dir: str
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_runs(cfg: Config, out: Path) -> dict[str, Config]:
    """The three runs of the protocol by row name."""
    target = cfg.adapt.target
    tasks = [t for t in cfg.model_tasks() if t in target.tasks]
    if not tasks:
        raise ConfigError(f"adapt.target.tasks {target.tasks} shares no task with the model's {cfg.model_tasks()}: "
                          "nothing could be scored on the target")
    if cfg.model.tasks is not None and cfg.model.tasks != cfg.data.tasks:
        raise ConfigError("domain adaptation trains every model task on the source: set model.tasks=null")
    source_only = with_run(cfg, out / "source-only")
    source_only.adapt.enabled = False
    adapted = with_run(cfg, out / "adapted")
    adapted.adapt.enabled = True
    validate(adapted)  # before any training, not when the adapted run starts (e.g. the crop sizes)
    oracle = with_run(cfg, out / "target-supervised")
    oracle.adapt.enabled = False
    oracle.data = copy.deepcopy(target)
    oracle.data.tasks = tasks
    return dict(zip(ROWS, (source_only, adapted, oracle), strict=True))


def gap_closed(source: float, adapted: float, oracle: float) -> float | None:
    """(adapted - source) / (oracle - source) on a primary metric; None when there is no gap.

    The ratio of two differences in the same metric needs no direction: it holds for mIoU and RMSE alike.
    """
    gap = oracle - source
    if abs(gap) < 1e-12:
        return None
    return (adapted - source) / gap


def run_adapt(cfg: Config, out: str | os.PathLike | None = None, progress: bool = True) -> AdaptResult:
    """Run the protocol (reusing finished runs in ``out``) and write ``adapt.json`` / ``adapt.md``."""
    from taskadapt.settings.compare import ensure_trained

    out = Path(out if out is not None else cfg.out_dir)
    runs = plan_runs(cfg, out)
    tasks = list(runs["target supervised"].data.tasks)  # the scored tasks: model tasks the target labels
    metrics, checkpoints = {}, {}
    for row, c in runs.items():
        path, _, _ = ensure_trained(c, progress)
        checkpoints[row] = str(path)
        metrics[row] = score(path, cfg.adapt.target, tasks, Path(c.out_dir) / "eval-target", progress)
    closed = {}
    for t in tasks:
        primary = get_task(t).primary_metric
        values = [metrics[r][t][primary] for r in ROWS]
        closed[t] = gap_closed(*values)
    a = cfg.adapt
    result = AdaptResult(describe(cfg.data), describe(a.target), tasks, metrics, checkpoints, closed, str(out),
                         {"adv_weight": a.adv_weight, "adv_weights": dict(a.adv_weights), "disc_lr": a.disc_lr,
                          "disc_schedule": a.disc_schedule, "rampup_steps": a.rampup_steps,
                          "steps": cfg.train.steps})
    write_json(out / "adapt.json", result.to_dict())
    write_text(out / "adapt.md", adapt_markdown(result))
    return result


def _table(result: AdaptResult) -> tuple[list[str], list[list[str]]]:
    first = result.metrics[ROWS[0]]
    columns = [(t, n) for t in result.tasks for n in shown_metrics(t, first.get(t, {}))]
    header = ["model"] + [metric_header(t, n) for t, n in columns]
    rows = [[r] + [fmt(result.metrics[r].get(t, {}).get(n)) for t, n in columns] for r in ROWS]
    closed = ["share of the gap closed"]
    for t, n in columns:
        value = result.gap_closed.get(t) if n == get_task(t).primary_metric else None
        closed.append("" if n != get_task(t).primary_metric else ("-" if value is None else f"{100 * value:.0f} %"))
    return header, rows + [closed]


def adapt_markdown(result: AdaptResult) -> str:
    header, rows = _table(result)
    s = result.settings
    return (f"# Unsupervised domain adaptation: {result.source} -> {result.target}\n\n"
            f"Test split of the target. The adapted model never read a target label; it was selected on "
            f"validation images carved from the source. lambda_adv {s.get('adv_weight')}, discriminator lr "
            f"{s.get('disc_lr')} ({s.get('disc_schedule')}), {s.get('steps')} steps for every row.\n\n"
            + markdown_table(header, rows))


def adapt_table(result: AdaptResult):
    header, rows = _table(result)
    return rich_table(f"domain adaptation {result.source} -> {result.target}", header, rows)
