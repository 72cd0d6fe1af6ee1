"""Compare methods on one protocol: same data, schedule and seed; test-split metrics, parameters, Delta_m.

``run_compare(cfg, methods, out=...)`` trains every method of ``methods`` (default: every registered
method, ``stl`` first because it is the Delta_m baseline) with ``cfg`` changed only in
``model.method``, evaluates each on ``data.test_split`` with the exact edge matcher (unless
``exact_edges=False``), counts its trainable parameters and computes Delta_m (survey Eq. 10,
:mod:`taskadapt.metrics.delta_m`) against ``stl`` on each task's primary metric. It writes::

    out/<method>/          the method's training run (checkpoints, logs; see the trainer)
    out/baseline_stl.json  the Delta_m baseline made from stl's test results
    out/compare.json       protocol, primary metrics and one row per method (all test metrics)
    out/compare.md         the table: method, trainable params, one primary metric per task, Delta_m %

A method that fails (diverges, runs out of memory, ...) becomes a ``failed`` row carrying its error;
the other methods still run. Both summary files are rewritten (atomically) after every method, so an
interrupted comparison leaves the rows finished so far. Running the comparison again on the same
``out`` reuses every finished run whose configuration is unchanged, resumes unfinished ones from
their last checkpoint and retrains failed ones.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from taskadapt.config import Config, edge_tolerance, to_yaml
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.io import write_json, write_text
from taskadapt.metrics.delta_m import delta_m, load_baseline, save_baseline
from taskadapt.models import create_model
from taskadapt.models.methods import get_method, list_methods
from taskadapt.models.params import count_trainable
from taskadapt.train import checkpoint as ckpt
from taskadapt.train import trainer
from taskadapt.train.data import build_splits, eval_loader, prepare_scenes
from taskadapt.train.evaluate import evaluate, make_metrics

BASELINE_METHOD = "stl"
console = Console()


@dataclass
class MethodResult:
    """One row of the comparison.

    ``primary``: task -> primary metric on the test split; ``metrics``: every test metric;
    ``delta_m``: percent against ``stl`` (None when there is no baseline or the method failed);
    ``status``: ``ok`` or ``failed``; ``error``: why the method failed, or why an ``ok`` row has no
    Delta_m (a non-finite metric); ``reused``: the finished run in ``out_dir`` was tested again
    instead of retrained; ``checkpoint``/``step``: the checkpoint tested (best validation loss).
    """

    method: str
    status: str
    out_dir: str
    trainable_params: int | None = None
    primary: dict[str, float] = field(default_factory=dict)
    delta_m: float | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    checkpoint: str | None = None
    step: int | None = None
    train_seconds: float | None = None
    reused: bool = False
    error: str | None = None


@dataclass
class CompareResult:
    """What :func:`run_compare` measured; ``rows`` are in run order (``stl`` first)."""

    out: Path
    tasks: list[str]
    primary_metrics: dict[str, str]
    higher_is_better: dict[str, bool]
    rows: list[MethodResult]
    protocol: dict[str, Any]
    #: the Delta_m baseline file, or None when it could not be made (then ``note`` says why)
    baseline: Path | None = None
    note: str = ""

    def row(self, method: str) -> MethodResult:
        for r in self.rows:
            if r.method == method:
                return r
        raise KeyError(f"no row for method '{method}' (have: {', '.join(r.method for r in self.rows)})")

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "tasks": self.tasks, "primary_metrics": self.primary_metrics,
                "higher_is_better": self.higher_is_better, "baseline_method": BASELINE_METHOD,
                "baseline": str(self.baseline) if self.baseline else None, "note": self.note,
                "rows": [asdict(r) for r in self.rows]}


# --------------------------------------------------------------------------------------------------
# planning


def resolve_methods(methods: list[str] | None) -> list[str]:
    """Validated, de-duplicated method names with ``stl`` first (all registered methods by default)."""
    names = list(list_methods()) if methods is None else list(dict.fromkeys(methods))
    if not names:
        raise ConfigError("no methods to compare; name at least one, e.g. --methods stl,adapters")
    for name in names:
        get_method(name)  # unknown names: ConfigError with a did-you-mean hint
    return sorted(names, key=lambda m: m != BASELINE_METHOD)  # stable: only moves stl to the front


def method_config(cfg: Config, method: str, out: Path) -> Config:
    """``cfg`` with only the method and the run folder changed."""
    c = copy.deepcopy(cfg)
    c.model.method = method
    c.out_dir = str(out / method)
    return c


def run_state(c: Config) -> str:
    """``new`` (nothing there), ``done`` (finished with this exact config), ``partial`` (same config,
    unfinished: resume) or ``other`` (a run of another configuration)."""
    run = Path(c.out_dir)
    saved, last = run / "config.yaml", run / "checkpoints" / "last.safetensors"
    if not last.exists():
        return "new"
    if not saved.is_file() or saved.read_text(encoding="utf-8") != to_yaml(c):
        return "other"
    metrics = run / "metrics.json"
    if metrics.is_file():
        try:
            if json.loads(metrics.read_text(encoding="utf-8")).get("steps") == c.train.steps:
                return "done"
        except json.JSONDecodeError:
            pass
    return "partial"


def ensure_trained(c: Config, progress: bool = True) -> tuple[Path, float | None, bool]:
    """Train ``c`` into ``c.out_dir`` unless it is already finished there (an unfinished run of the same
    config is resumed; a run of another config raises). Returns (best-or-last checkpoint, training
    seconds, reused)."""
    run = Path(c.out_dir)
    state = run_state(c)
    if state == "other":
        raise ConfigError(f"'{run}' holds a run of another configuration; delete it or choose another --out")
    if state == "done":
        seconds = json.loads((run / "metrics.json").read_text(encoding="utf-8")).get("train_seconds")
        best = run / "checkpoints" / "best.safetensors"
        return (best if best.exists() else run / "checkpoints" / "last.safetensors"), seconds, True
    result = trainer.train(c, resume="last" if state == "partial" else None, progress=progress)
    return result.best or result.last, result.seconds, False


# --------------------------------------------------------------------------------------------------
# one method


class _OnDevice(nn.Module):
    """Runs ``model`` on ``device`` and returns float32 CPU predictions, so the metrics (which keep
    their states on the CPU, next to the labels) work whatever the device."""

    def __init__(self, model: nn.Module, device: torch.device):
        super().__init__()
        self.model, self.device = model, device

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        preds = self.model(image.to(self.device, non_blocking=True))
        return {k: v.float().cpu() for k, v in preds.items()}


def _eval_model(c: Config, num_classes: dict[str, int]) -> nn.Module:
    # every weight comes from the checkpoint (strict load), so no pretrained download is needed here
    c = copy.deepcopy(c)
    c.model.pretrained = None
    return create_model(c, num_classes=num_classes)


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def _run_method(c: Config, splits, progress: bool, exact_edges: bool) -> MethodResult:
    row = MethodResult(method=c.model.method, status="ok", out_dir=c.out_dir)
    try:
        path, row.train_seconds, row.reused = ensure_trained(c, progress)
        model = _eval_model(c, splits.num_classes)
        row.trainable_params = count_trainable(model)
        ckpt.restore_model(model, path)
        row.checkpoint, row.step = str(path), int(ckpt.read_meta(path).get("step", 0))
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        wrapped = _OnDevice(model.to(device), device)
        result = evaluate(wrapped, eval_loader(c, splits.test), list(c.data.tasks), splits.num_classes,
                          edge_exact=exact_edges, edge_tolerance=edge_tolerance(c), progress=progress,
                          description=f"testing {c.model.method}")
        row.metrics = result["metrics"]
    except trainer.TrainingInterrupted:
        raise  # Ctrl-C stops the whole comparison; the run folder can be resumed
    except Exception as err:  # one method's failure (divergence, OOM, bug) must not sink the others
        row.status, row.error = "failed", _one_line(err)
        if row.trainable_params is None:
            # a method that cannot even be built keeps None; the error above says why
            with contextlib.suppress(Exception):
                row.trainable_params = count_trainable(_eval_model(c, splits.num_classes))
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return row


# --------------------------------------------------------------------------------------------------
# the comparison


def run_compare(cfg: Config, methods: list[str] | None = None, out: str | os.PathLike | None = None,
                progress: bool = True, exact_edges: bool = True) -> CompareResult:
    """Train and test every method of ``methods`` on ``cfg``'s protocol; write ``out``/compare.{json,md}.

    ``out`` defaults to ``cfg.out_dir``; each method's run goes to ``out/<method>/``.
    ``exact_edges=False`` scores edges with the fast approximate matcher (an upper bound of odsF;
    the table then says so): the exact one costs seconds per full-size image on a CPU. Raises
    ConfigError/DatasetError before training anything when a method name is unknown, the test split
    is missing, a method folder holds a run of another configuration, or it runs under torchrun.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("`taskadapt compare` runs its methods one after another in one process; start it "
                          "without torchrun (each training uses the GPU it finds)")
    names = resolve_methods(methods)
    out = Path(out if out is not None else cfg.out_dir)
    configs = {m: method_config(cfg, m, out) for m in names}
    clashes = [m for m, c in configs.items() if run_state(c) == "other"]
    if clashes:
        raise ConfigError(f"'{out / clashes[0]}' holds a run of another configuration; delete it or pass a new "
                          "output folder (finished runs of the same configuration are reused)")
    if cfg.data.format == "scenes":
        prepare_scenes(cfg, progress=progress)
    splits = build_splits(cfg)
    if splits.test is None:
        raise DatasetError(f"the dataset has no '{cfg.data.test_split}' split to test on; set data.test_split to "
                           "an existing split (for NYUD and PASCAL-Context the test set is 'val')")
    tasks = list(cfg.data.tasks)
    metric_objs = make_metrics(tasks, splits.num_classes, edge_exact=exact_edges,
                               edge_tolerance=edge_tolerance(cfg))
    primary = {t: m.primary for t, m in metric_objs.items()}
    higher = {t: bool(m.directions[m.primary]) for t, m in metric_objs.items()}
    d, t = cfg.data, cfg.train
    protocol = {"dataset": d.format, "root": str(d.root) if d.root else None, "test_split": d.test_split,
                "test_images": len(splits.test), "tasks": tasks, "backbone": cfg.model.backbone,
                "pretrained": cfg.model.pretrained, "crop_size": d.crop_size, "batch_size": d.batch_size,
                "steps": t.steps, "lr": t.lr, "backbone_lr": t.backbone_lr, "schedule": t.schedule,
                "seed": cfg.seed, "edge_matcher": "exact" if exact_edges else "approximate",
                "edge_tolerance": edge_tolerance(cfg),
                "checkpoint": "best validation loss (validation carved from training unless data.val_split)"}
    result = CompareResult(out, tasks, primary, higher, [], protocol)
    if BASELINE_METHOD not in names:
        result.note = f"Delta_m needs the '{BASELINE_METHOD}' baseline, which was not among the methods"
    baseline: dict | None = None
    for i, (name, c) in enumerate(configs.items()):
        if progress:
            console.print(f"[bold][{i + 1}/{len(configs)}][/bold] {name} -> {c.out_dir}")
        row = _run_method(c, splits, progress, exact_edges)
        if row.status == "ok":
            row.primary = {task: row.metrics[task][primary[task]] for task in tasks}
        if name == BASELINE_METHOD:
            baseline = _make_baseline(result, row, metric_objs, cfg)
        if baseline is not None and row.status == "ok":
            try:
                row.delta_m = delta_m(row.metrics, baseline).value + 0.0  # + 0.0: no "-0.00" for stl
            except ConfigError as err:  # a non-finite metric: no Delta_m for this row
                row.error = str(err)
        result.rows.append(row)
        write_outputs(result)
    return result


def _make_baseline(result: CompareResult, row: MethodResult, metric_objs: dict, cfg: Config) -> dict | None:
    if row.status != "ok":
        result.note = f"no Delta_m: the '{BASELINE_METHOD}' baseline failed ({row.error})"
        return None
    path = result.out / f"baseline_{BASELINE_METHOD}.json"
    desc = (f"{BASELINE_METHOD} (one fully fine-tuned model per task), {cfg.model.backbone}, {cfg.data.format} "
            f"'{cfg.data.test_split}' split, {cfg.train.steps} steps, seed {cfg.seed}")
    try:
        save_baseline(path, row.metrics, metric_objs, description=desc)
        baseline = load_baseline(path)
    except ConfigError as err:  # e.g. a baseline metric of exactly 0: relative gains are undefined
        result.note = f"no Delta_m: {err}"
        return None
    result.baseline = path
    return baseline


# --------------------------------------------------------------------------------------------------
# output


def _columns(result: CompareResult) -> list[str]:
    arrows = {True: "↑", False: "↓"}
    return ["method", "trainable params",
            *[f"{t} {result.primary_metrics[t]} {arrows[result.higher_is_better[t]]}" for t in result.tasks],
            "Δm %", "notes"]


def _cells(result: CompareResult, row: MethodResult) -> list[str]:
    params = f"{row.trainable_params:,}" if row.trainable_params is not None else "-"
    values = [f"{row.primary[t]:.4f}" if t in row.primary and math.isfinite(row.primary[t]) else "-"
              for t in result.tasks]
    dm = f"{row.delta_m:+.2f}" if row.delta_m is not None else "-"
    if row.status == "failed":
        note = f"failed: {row.error}"
    else:
        note = "; ".join(x for x in ("baseline" if row.method == BASELINE_METHOD else "",
                                     "reused run" if row.reused else "", row.error or "") if x)
    return [row.method, params, *values, dm, note]


def compare_markdown(result: CompareResult) -> str:
    """``compare.md``: the protocol in a few lines, then the table."""
    p = result.protocol
    lines = [
        "# Method comparison",
        "",
        f"{p['dataset']} ({p['root'] or 'procedural scenes'}), tested on the '{p['test_split']}' split "
        f"({p['test_images']} images); backbone {p['backbone']} (pretrained: {p['pretrained'] or 'none'}); "
        f"every method trained {p['steps']} steps, batch {p['batch_size']}, crop {p['crop_size']}, seed {p['seed']}. "
        f"Edge odsF with the {p['edge_matcher']} matcher (tolerance {p['edge_tolerance']:g} of the diagonal). "
        f"Δm: mean over tasks of the signed relative change of the primary metric against "
        f"{BASELINE_METHOD} (Vandenhende et al., Eq. 10), in percent; higher is better.",
        "",
    ]
    if result.note:
        lines += [f"Note: {result.note}.", ""]
    cols = _columns(result)
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(cols) - 2) + ["---"]) + " |")
    for row in result.rows:
        cells = [c.replace("|", "\\|") for c in _cells(result, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(result: CompareResult) -> None:
    """Write ``compare.json`` and ``compare.md`` into ``result.out`` (atomically)."""
    write_json(result.out / "compare.json", result.to_dict())
    write_text(result.out / "compare.md", compare_markdown(result))


def compare_table(result: CompareResult) -> Table:
    """The comparison as a rich table (failed rows in red)."""
    table = Table(title=f"{result.protocol['dataset']} '{result.protocol['test_split']}': methods compared")
    for i, col in enumerate(_columns(result)):
        table.add_column(col, justify="left" if i == 0 or col == "notes" else "right")
    for row in result.rows:
        table.add_row(*_cells(result, row), style="red" if row.status == "failed" else None)
    return table


__all__ = ["CompareResult", "MethodResult", "compare_markdown", "compare_table", "method_config",
           "resolve_methods", "run_compare", "write_outputs"]
