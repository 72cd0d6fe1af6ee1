"""Zero-shot task transfer (``taskadapt zeroshot``; method.md §8, docs/settings.md).

[paper] "Normal is the zero-shot task": a task that has no labels in a new setting is still predicted,
through the task embedding, head and affinity column carried over from where it was learned.

Protocol [ours where the paper is silent]:

1. **source**: train the configured method on ``data`` (every task labelled), and the same with TROA
   conditioning off (``no_troa``: each task conditioned on its own embedding only).
2. **target**: from each source model's weights, train ``zeroshot.steps`` steps on
   ``zeroshot.target`` with the labels of every task *except* ``zeroshot.tasks``. The model keeps
   predicting all tasks (``model.tasks``); the zero-shot tasks' heads and embeddings get no gradient
   step (:meth:`MultiTaskModel.freeze_tasks`), and their affinity row and column stay as learned, since
   TROA only updates pairs of labelled tasks. What changes for them is what they share: the adapters,
   the decoder, and -- with TROA -- the other tasks' embeddings, which their conditioning vector mixes
   (w_t = sum_j A[j, t] E[j] / sum_j A[j, t]).
3. **score** on the target's test split, against its ground truth: the source models unchanged, and
   both transferred models.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taskadapt.config import Config
from taskadapt.data.datasets import describe
from taskadapt.errors import ConfigError
from taskadapt.io import write_json, write_text
from taskadapt.settings.common import (
    fmt,
    markdown_table,
    metric_header,
    rich_table,
    score,
    shorter_schedule,
    shown_metrics,
    with_run,
)

NO_TROA = "no_troa"


@dataclass
class ZeroShotRow:
    name: str
    method: str
    checkpoint: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class ZeroShotResult:
    zero_shot_tasks: list[str]
    labelled_tasks: list[str]
    source: str
    target: str
    rows: list[ZeroShotRow]
    out_dir: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_runs(cfg: Config, out: Path) -> dict[str, Config]:
    """The four training runs of the protocol, by name (``source-<method>``, ``target-<method>``).

    The target runs' ``train.init_from`` is filled in when their source run has finished.
    """
    z = cfg.zeroshot
    tasks = cfg.model_tasks()
    missing = [t for t in z.tasks if t not in tasks]
    if missing or not z.tasks:
        raise ConfigError(f"zeroshot.tasks {z.tasks} must name tasks the source model learns ({tasks})")
    labelled = [t for t in tasks if t not in z.tasks and t in z.target.tasks]
    if not labelled:
        raise ConfigError(f"the target labels none of the source tasks besides the zero-shot ones: "
                          f"zeroshot.target.tasks={z.target.tasks}, zero-shot {z.tasks}")
    unscored = [t for t in z.tasks if t not in z.target.tasks]
    if unscored:
        raise ConfigError(f"zeroshot.target.tasks must include the zero-shot tasks {unscored}: their test labels "
                          "score the transfer (training never reads them)")
    if cfg.model.method == NO_TROA or not cfg.model.troa.enabled:
        raise ConfigError("zero-shot transfer compares TROA on and off: use a method with TROA "
                          "(model.method=adapters, model.troa.enabled=true)")
    if cfg.adapt.enabled:
        raise ConfigError("adapt.enabled=true has no place in zero-shot transfer; set adapt.enabled=false")
    runs: dict[str, Config] = {}
    for method in (cfg.model.method, NO_TROA):
        source = with_run(cfg, out / f"source-{method}")
        source.model.method = method
        target = copy.deepcopy(source)
        target.out_dir = str(out / f"target-{method}")
        target.data = copy.deepcopy(z.target)
        target.data.tasks = labelled
        target.model.tasks = list(tasks)
        # the source weights fix the input size (ViT position embeddings): keep it whatever the target crop
        target.model.img_size = cfg.model.img_size or cfg.data.crop_size
        shorter_schedule(target, z.steps)
        target.train.lr = z.lr if z.lr is not None else cfg.train.lr
        runs[f"source-{method}"], runs[f"target-{method}"] = source, target
    return runs


def run_zeroshot(cfg: Config, out: str | os.PathLike | None = None, progress: bool = True) -> ZeroShotResult:
    """Run the protocol (reusing finished runs in ``out``) and write ``zeroshot.json`` / ``zeroshot.md``."""
    from taskadapt.settings.compare import ensure_trained

    out = Path(out if out is not None else cfg.out_dir)
    runs = plan_runs(cfg, out)
    method = cfg.model.method
    scored = [t for t in cfg.model_tasks() if t in cfg.zeroshot.target.tasks]
    rows: list[ZeroShotRow] = []
    for m in (method, NO_TROA):
        source_ckpt, _, _ = ensure_trained(runs[f"source-{m}"], progress)
        target_cfg = runs[f"target-{m}"]
        target_cfg.train.init_from = str(source_ckpt)
        target_ckpt, _, _ = ensure_trained(target_cfg, progress)
        label = "ours" if m == method else "TROA off"
        for name, path in ((f"source model, unchanged ({label})", source_ckpt),
                           (f"zero-shot transfer ({label})", target_ckpt)):
            metrics = score(path, cfg.zeroshot.target, scored, Path(path).parent.parent / "eval-target", progress)
            rows.append(ZeroShotRow(name, m, str(path), metrics))
    rows.sort(key=lambda r: (not r.name.startswith("source"), r.method != method))
    result = ZeroShotResult(list(cfg.zeroshot.tasks), runs[f"target-{method}"].data.tasks,
                            describe(cfg.data), describe(cfg.zeroshot.target), rows, str(out))
    write_json(out / "zeroshot.json", result.to_dict())
    write_text(out / "zeroshot.md", zeroshot_markdown(result))
    return result


def _table(result: ZeroShotResult) -> tuple[list[str], list[list[str]]]:
    first = result.rows[0].metrics
    tasks = list(result.zero_shot_tasks) + [t for t in first if t not in result.zero_shot_tasks]
    columns = [(t, n) for t in tasks for n in shown_metrics(t, first.get(t, {}))]
    header = ["model"] + [("zero-shot " if t in result.zero_shot_tasks else "") + metric_header(t, n)
                          for t, n in columns]
    rows = [[r.name] + [fmt(r.metrics.get(t, {}).get(n)) for t, n in columns] for r in result.rows]
    return header, rows


def zeroshot_markdown(result: ZeroShotResult) -> str:
    header, rows = _table(result)
    return (f"# Zero-shot task transfer: {', '.join(result.zero_shot_tasks)}\n\n"
            f"Source {result.source} (all tasks labelled) -> target {result.target}, where only "
            f"{', '.join(result.labelled_tasks)} have labels. Test split of the target; the zero-shot "
            "task is scored against its ground truth, which training never read.\n\n"
            + markdown_table(header, rows))


def zeroshot_table(result: ZeroShotResult):
    header, rows = _table(result)
    return rich_table(f"zero-shot {', '.join(result.zero_shot_tasks)}: {result.source} -> {result.target}",
                      header, rows)
