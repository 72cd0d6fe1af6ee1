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

``run_compare_seeds(cfg, methods, seeds, out=...)`` repeats that comparison once per seed (only
``seed`` changes: the initialisation, the batch order and augmentations, and the validation images
carved from training; the dataset and its test split stay the same), each in ``out/seed<s>/`` with
its own ``stl`` baseline, so Delta_m on seed s is against ``stl`` of seed s. It then writes::

    out/seed<s>/           one single-seed comparison per seed (the layout above)
    out/compare.json       protocol (config YAML, seeds, methods, reference), every run's test metrics,
                           the per-method aggregate and the paired differences against the reference
    out/compare.md         table 1: mean ± sample std over seeds per method; table 2: the reference
                           method minus each other method in Delta_m, paired by seed, with a 95 % t
                           interval and a verdict (:mod:`taskadapt.metrics.paired`)

Both summary files are rewritten after every finished seed.
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

from taskadapt.config import Config, to_yaml
from taskadapt.data.datasets import edge_tolerance, prepare_dataset
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.evaluation.scoring import evaluate_run
from taskadapt.io import write_json, write_text
from taskadapt.metrics.delta_m import delta_m, load_baseline, save_baseline
from taskadapt.metrics.paired import NEEDS_TWO, PairedDifference, Summary, paired_difference, summarize
from taskadapt.models import create_model
from taskadapt.models.methods import get_method, list_methods
from taskadapt.models.params import count_trainable
from taskadapt.run import Run
from taskadapt.tasks import get_task
from taskadapt.train import trainer
from taskadapt.train.data import build_splits

BASELINE_METHOD = "stl"
#: the method the seeds comparison sets against every other one unless told otherwise ("ours")
REFERENCE_METHOD = "adapters"
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


def _trainable_params(c: Config, num_classes: dict[str, int]) -> int:
    """Trainable parameters of ``c``'s model (built without pretrained weights: only the count matters)."""
    c = copy.deepcopy(c)
    c.model.pretrained = None
    return count_trainable(create_model(c, num_classes=num_classes))


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def _run_method(c: Config, num_classes: dict[str, int], progress: bool, exact_edges: bool) -> MethodResult:
    row = MethodResult(method=c.model.method, status="ok", out_dir=c.out_dir)
    try:
        path, row.train_seconds, row.reused = ensure_trained(c, progress)
        run = Run.open(path)
        row.trainable_params = count_trainable(run.build_model())
        row.checkpoint, row.step = str(path), run.step
        result = evaluate_run(run, c.data, c.data.test_split, list(c.data.tasks), exact_edges=exact_edges,
                              progress=progress, description=f"testing {c.model.method}")
        row.metrics = result["metrics"]
    except trainer.TrainingInterrupted:
        raise  # Ctrl-C stops the whole comparison; the run folder can be resumed
    except Exception as err:  # one method's failure (divergence, OOM, bug) must not sink the others
        row.status, row.error = "failed", _one_line(err)
        if row.trainable_params is None:
            # a method that cannot even be built keeps None; the error above says why
            with contextlib.suppress(Exception):
                row.trainable_params = _trainable_params(c, num_classes)
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
    prepare_dataset(cfg.data, progress=progress)
    splits = build_splits(cfg)
    if splits.test is None:
        raise DatasetError(f"the dataset has no '{cfg.data.test_split}' split to test on; set data.test_split to "
                           "an existing split (for NYUD and PASCAL-Context the test set is 'val')")
    tasks = list(cfg.data.tasks)
    primary = {t: get_task(t).primary_metric for t in tasks}
    higher = {t: get_task(t).higher_is_better for t in tasks}
    d, t = cfg.data, cfg.train
    protocol = {"dataset": d.format, "root": str(d.root) if d.root else None, "test_split": d.test_split,
                "test_images": len(splits.test), "tasks": tasks, "backbone": cfg.model.backbone,
                "pretrained": cfg.model.pretrained, "crop_size": d.crop_size, "batch_size": d.batch_size,
                "steps": t.steps, "lr": t.lr, "backbone_lr": t.backbone_lr, "schedule": t.schedule,
                "seed": cfg.seed, "edge_matcher": "exact" if exact_edges else "approximate",
                "edge_tolerance": edge_tolerance(cfg.data),
                "checkpoint": "best validation loss (validation carved from training unless data.val_split)"}
    result = CompareResult(out, tasks, primary, higher, [], protocol)
    if BASELINE_METHOD not in names:
        result.note = f"Delta_m needs the '{BASELINE_METHOD}' baseline, which was not among the methods"
    baseline: dict | None = None
    for i, (name, c) in enumerate(configs.items()):
        if progress:
            console.print(f"[bold][{i + 1}/{len(configs)}][/bold] {name} -> {c.out_dir}")
        row = _run_method(c, splits.num_classes, progress, exact_edges)
        if row.status == "ok":
            row.primary = {task: row.metrics[task][primary[task]] for task in tasks}
        if name == BASELINE_METHOD:
            baseline = _make_baseline(result, row, cfg)
        if baseline is not None and row.status == "ok":
            try:
                row.delta_m = delta_m(row.metrics, baseline).value + 0.0  # + 0.0: no "-0.00" for stl
            except ConfigError as err:  # a non-finite metric: no Delta_m for this row
                row.error = str(err)
        result.rows.append(row)
        write_outputs(result)
    return result


def _make_baseline(result: CompareResult, row: MethodResult, cfg: Config) -> dict | None:
    if row.status != "ok":
        result.note = f"no Delta_m: the '{BASELINE_METHOD}' baseline failed ({row.error})"
        return None
    path = result.out / f"baseline_{BASELINE_METHOD}.json"
    desc = (f"{BASELINE_METHOD} (one fully fine-tuned model per task), {cfg.model.backbone}, {cfg.data.format} "
            f"'{cfg.data.test_split}' split, {cfg.train.steps} steps, seed {cfg.seed}")
    try:
        save_baseline(path, row.metrics, {t: get_task(t).metric_class for t in result.tasks}, description=desc)
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


# --------------------------------------------------------------------------------------------------
# several seeds


@dataclass
class MethodSummary:
    """One method over the seeds: ``seeds`` it succeeded on, ``failed`` seed -> error, and mean ± sample
    std of its trainable parameters, of each task's primary metric and of Delta_m."""

    method: str
    seeds: list[int]
    failed: dict[int, str]
    trainable_params: Summary
    primary: dict[str, Summary]
    delta_m: Summary

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "seeds": self.seeds, "failed": {str(s): e for s, e in self.failed.items()},
                "trainable_params": self.trainable_params.to_dict(),
                "primary": {t: v.to_dict() for t, v in self.primary.items()}, "delta_m": self.delta_m.to_dict()}


@dataclass
class SeedsResult:
    """What :func:`run_compare_seeds` measured: ``runs`` maps each finished seed to its comparison."""

    out: Path
    seeds: list[int]
    methods: list[str]
    reference: str | None
    config: str
    runs: dict[int, CompareResult] = field(default_factory=dict)
    note: str = ""

    @property
    def first(self) -> CompareResult:
        """The first finished seed's comparison (tasks, metrics and protocol are the same on every seed)."""
        return next(iter(self.runs.values()))

    def protocol(self) -> dict[str, Any]:
        """The shared protocol: the first run's, with the seeds in place of its seed, plus the config."""
        protocol = {k: v for k, v in self.first.protocol.items() if k != "seed"}
        return {**protocol, "seeds": self.seeds, "methods": self.methods, "reference": self.reference,
                "config": self.config}

    def to_dict(self) -> dict[str, Any]:
        first = self.first
        return {"protocol": self.protocol(), "tasks": first.tasks, "primary_metrics": first.primary_metrics,
                "higher_is_better": first.higher_is_better, "baseline_method": BASELINE_METHOD,
                "reference": self.reference, "seeds": self.seeds, "seeds_done": list(self.runs),
                "notes": seed_notes(self),
                "aggregate": [m.to_dict() for m in aggregate(self.runs)],
                "paired": [{"reference": self.reference, "method": m, **d.to_dict()}
                           for m, d in paired(self.runs, self.reference).items()],
                "runs": {str(s): {"out": str(r.out), "baseline": str(r.baseline) if r.baseline else None,
                                  "note": r.note, "rows": [asdict(row) for row in r.rows]}
                         for s, r in self.runs.items()}}


def _parse_seed_list(text: str) -> list[int]:
    seeds = []
    for part in (p.strip() for p in text.split(",")):
        try:
            seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"--seed-list: '{part}' is not an integer; give comma-separated seeds, "
                              "e.g. --seed-list 0,1,2") from None
    return seeds


def resolve_seeds(base: int, count: int | None = None, listed: str | None = None) -> list[int] | None:
    """The seeds of ``--seeds N`` (``base``, ``base`` + 1, ...) or ``--seed-list 0,1,2``; None when
    neither is given (one comparison on the config's seed, the single-seed layout)."""
    if count is not None and listed is not None:
        raise ConfigError("pass either --seeds N or --seed-list, not both")
    if count is not None:
        if count < 1:
            raise ConfigError(f"--seeds must be at least 1, got {count}; e.g. --seeds 3 runs every method on "
                              f"seeds {base}, {base + 1} and {base + 2}")
        return list(range(base, base + count))
    if listed is None:
        return None
    seeds = _parse_seed_list(listed)
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seed-list needs distinct non-negative seeds, got '{listed}'; e.g. --seed-list 0,1,2")
    return seeds


def resolve_reference(reference: str | None, names: list[str]) -> str | None:
    """The method set against every other one: ``reference`` (which must be among ``names``), else
    ``adapters`` when it runs, else None (no paired table)."""
    if reference is None:
        return REFERENCE_METHOD if REFERENCE_METHOD in names else None
    get_method(reference)  # an unknown name: ConfigError with a did-you-mean hint
    if reference not in names:
        raise ConfigError(f"--reference '{reference}' is not among the compared methods ({', '.join(names)}); "
                          "add it to --methods or choose one of them")
    return reference


def seed_config(cfg: Config, seed: int) -> Config:
    """``cfg`` with only the seed changed."""
    c = copy.deepcopy(cfg)
    c.seed = seed
    return c


def seed_dir(out: Path, seed: int) -> Path:
    """The folder of seed ``seed``'s comparison."""
    return out / f"seed{seed}"


def _values(runs: dict[int, CompareResult], method: str, value) -> dict[int, float | None]:
    """seed -> ``value(row)`` of ``method`` on the seeds where it succeeded."""
    rows = {s: r.row(method) for s, r in runs.items()}
    return {s: value(row) for s, row in rows.items() if row.status == "ok"}


def summarize_method(runs: dict[int, CompareResult], method: str) -> MethodSummary:
    """Mean ± sample std over the seeds where ``method`` succeeded (its parameters: over every seed)."""
    rows = {s: r.row(method) for s, r in runs.items()}
    tasks = next(iter(runs.values())).tasks
    return MethodSummary(
        method=method,
        seeds=[s for s, row in rows.items() if row.status == "ok"],
        failed={s: row.error or "" for s, row in rows.items() if row.status == "failed"},
        trainable_params=summarize([row.trainable_params for row in rows.values()]),
        primary={t: summarize(list(_values(runs, method, lambda row, t=t: row.primary.get(t)).values()))
                 for t in tasks},
        delta_m=summarize(list(_values(runs, method, lambda row: row.delta_m).values())),
    )


def aggregate(runs: dict[int, CompareResult]) -> list[MethodSummary]:
    """One :class:`MethodSummary` per method (in run order) from the per-seed comparisons."""
    if not runs:
        return []
    return [summarize_method(runs, row.method) for row in next(iter(runs.values())).rows]


def paired(runs: dict[int, CompareResult], reference: str | None,
           confidence: float = 0.95) -> dict[str, PairedDifference]:
    """method -> Delta_m of ``reference`` minus Delta_m of the method, paired by seed (only seeds where
    both have a Delta_m), with its t interval; empty without a reference."""
    if reference is None or not runs:
        return {}
    ours = _values(runs, reference, lambda row: row.delta_m)
    return {row.method: paired_difference(ours, _values(runs, row.method, lambda r: r.delta_m), confidence)
            for row in next(iter(runs.values())).rows if row.method != reference}


def seed_notes(result: SeedsResult) -> list[str]:
    """The notes of the whole run and of each seed (e.g. why a seed has no Delta_m)."""
    notes = [result.note] if result.note else []
    return notes + [f"seed {s}: {r.note}" for s, r in result.runs.items() if r.note]


def run_compare_seeds(cfg: Config, methods: list[str] | None, seeds: list[int],
                      out: str | os.PathLike | None = None, reference: str | None = None,
                      progress: bool = True, exact_edges: bool = True) -> SeedsResult:
    """:func:`run_compare` once per seed of ``seeds`` into ``out/seed<s>/``; aggregate into ``out``.

    ``reference`` (default ``adapters`` when it runs) is set against every other method in paired
    Delta_m differences. Raises ConfigError before training anything for an unknown method or
    reference, empty or repeated seeds, or a seed folder holding a run of another configuration.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {seeds}; e.g. seeds=[0, 1, 2]")
    names = resolve_methods(methods)
    ref = resolve_reference(reference, names)
    out = Path(out if out is not None else cfg.out_dir)
    configs = {s: seed_config(cfg, s) for s in seeds}
    for s, c in configs.items():
        clashes = [m for m in names if run_state(method_config(c, m, seed_dir(out, s))) == "other"]
        if clashes:
            raise ConfigError(f"'{seed_dir(out, s) / clashes[0]}' holds a run of another configuration; delete it "
                              "or pass a new output folder (finished runs of the same configuration are reused)")
    result = SeedsResult(out, list(seeds), names, ref, to_yaml(cfg))
    if ref is None:
        result.note = (f"no paired differences: the reference '{REFERENCE_METHOD}' was not among the methods; "
                       "pass --reference METHOD")
    for i, (s, c) in enumerate(configs.items()):
        if progress:
            console.print(f"[bold]seed {s}[/bold] ({i + 1}/{len(configs)}) -> {seed_dir(out, s)}")
        result.runs[s] = run_compare(c, names, out=seed_dir(out, s), progress=progress, exact_edges=exact_edges)
        write_seed_outputs(result)
    return result


def _mean_std(s: Summary, spec: str, std_spec: str | None = None) -> str:
    """``mean ± std`` (just the mean for one value, ``-`` for none)."""
    if s.mean is None or not math.isfinite(s.mean):
        return "-"
    text = format(s.mean, spec)
    return text if s.std is None else f"{text} ± {format(s.std, std_spec or spec)}"


def _seed_columns(first: CompareResult) -> list[str]:
    return [*_columns(first)[:-2], "Δm %", "n seeds", "notes"]


def _seed_cells(m: MethodSummary, tasks: list[str], reference: str | None) -> list[str]:
    params = _mean_std(Summary(m.trainable_params.n, m.trainable_params.mean, None), ",.0f")
    failed = "; ".join(f"seed {s}: {e}" for s, e in m.failed.items())
    note = "; ".join(x for x in ("baseline" if m.method == BASELINE_METHOD else "",
                                 "reference" if m.method == reference else "",
                                 f"failed on {failed}" if failed else "") if x)
    return [m.method, params, *[_mean_std(m.primary[t], ".4f") for t in tasks],
            _mean_std(m.delta_m, "+.2f", ".2f"), str(len(m.seeds)), note]


def _paired_columns(reference: str, confidence: float = 0.95) -> list[str]:
    return ["method", "n", f"Δm {reference} − method (pp)", f"{confidence:.0%} CI", "verdict"]


def _paired_cells(method: str, d: PairedDifference) -> list[str]:
    mean = f"{d.mean:+.2f}" if d.mean is not None else "-"
    ci = f"[{d.low:+.2f}, {d.high:+.2f}]" if d.low is not None and d.high is not None else "-"
    return [method, str(d.n), mean, ci, d.verdict]


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |",
             "| " + " | ".join(["---"] + ["---:"] * (len(columns) - 2) + ["---"]) + " |"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows]


def seeds_markdown(result: SeedsResult) -> str:
    """``compare.md`` of several seeds: the protocol, the per-method table and the paired table."""
    first, p = result.first, result.protocol()
    done = ", ".join(str(s) for s in result.runs)
    lines = [
        "# Method comparison over seeds",
        "",
        f"{p['dataset']} ({p['root'] or 'procedural scenes'}), tested on the '{p['test_split']}' split "
        f"({p['test_images']} images); backbone {p['backbone']} (pretrained: {p['pretrained'] or 'none'}); "
        f"every method trained {p['steps']} steps, batch {p['batch_size']}, crop {p['crop_size']}, on each of the "
        f"seeds {done} (of {', '.join(str(s) for s in result.seeds)}). The seed sets the initialisation, the batch "
        f"order and augmentations and the validation images carved from training; the data stay the same. "
        f"Edge odsF with the {p['edge_matcher']} matcher (tolerance {p['edge_tolerance']:g} of the diagonal). "
        f"Δm (Vandenhende et al., Eq. 10, percent, higher is better) of a method on a seed is against "
        f"{BASELINE_METHOD} of the same seed. Values: mean ± sample standard deviation over the seeds where the "
        f"method succeeded (n seeds).",
        "",
    ]
    lines += [f"Note: {n}." for n in seed_notes(result)]
    if seed_notes(result):
        lines.append("")
    rows = [_seed_cells(m, first.tasks, result.reference) for m in aggregate(result.runs)]
    lines += ["## Methods", "", *_md_table(_seed_columns(first), rows), ""]
    diffs = paired(result.runs, result.reference)
    if diffs:
        lines += [f"## {result.reference} against each method", "",
                  f"Δm of {result.reference} minus Δm of the method, paired by seed (only seeds where both have a "
                  f"Δm; n), in percentage points: mean and two-sided 95 % Student-t interval "
                  f"(mean ± t(0.975, n-1) · sd / √n). Verdict: better or worse when the interval excludes 0, else "
                  f"within noise ({NEEDS_TWO} for an interval).", "",
                  *_md_table(_paired_columns(result.reference), [_paired_cells(m, d) for m, d in diffs.items()]),
                  ""]
    return "\n".join(lines)


def write_seed_outputs(result: SeedsResult) -> None:
    """Write ``compare.json`` and ``compare.md`` of the seeds finished so far into ``result.out``."""
    write_json(result.out / "compare.json", result.to_dict())
    write_text(result.out / "compare.md", seeds_markdown(result))


def seeds_tables(result: SeedsResult) -> list[Table]:
    """The seeds comparison as rich tables: per method, then the paired differences (if any)."""
    first = result.first
    title = f"{first.protocol['dataset']} '{first.protocol['test_split']}': methods over seeds " + \
        ", ".join(str(s) for s in result.runs)
    table = Table(title=title)
    for i, col in enumerate(_seed_columns(first)):
        table.add_column(col, justify="left" if i == 0 or col == "notes" else "right")
    for m in aggregate(result.runs):
        table.add_row(*_seed_cells(m, first.tasks, result.reference), style="red" if m.failed else None)
    tables = [table]
    diffs = paired(result.runs, result.reference)
    if diffs:
        pt = Table(title=f"{result.reference} against each method: paired Δm difference, 95 % t interval")
        for i, col in enumerate(_paired_columns(result.reference)):
            pt.add_column(col, justify="left" if i in (0, 4) else "right")
        for m, d in diffs.items():
            pt.add_row(*_paired_cells(m, d))
        tables.append(pt)
    return tables


__all__ = ["CompareResult", "MethodResult", "MethodSummary", "SeedsResult", "aggregate", "compare_markdown",
           "compare_table", "method_config", "paired", "resolve_methods", "resolve_reference", "resolve_seeds",
           "run_compare", "run_compare_seeds", "seeds_markdown", "seeds_tables", "write_outputs",
           "write_seed_outputs"]
