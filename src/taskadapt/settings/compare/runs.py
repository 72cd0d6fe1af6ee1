"""Running a comparison: which methods and seeds, each method's run (trained, reused or resumed in
its folder), its test metrics through :func:`taskadapt.evaluation.evaluate_run`, and Delta_m against
``stl``; the summary files are rewritten after every method and every seed."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from pathlib import Path

import torch
from rich.console import Console

from taskadapt.config import Config, to_yaml
from taskadapt.data.datasets import edge_tolerance, prepare_dataset
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.evaluation.scoring import evaluate_run
from taskadapt.metrics.delta_m import delta_m, load_baseline, save_baseline
from taskadapt.models import create_model
from taskadapt.models.methods import get_method, list_methods
from taskadapt.models.params import count_trainable
from taskadapt.run import Run
from taskadapt.settings.compare.results import (
    BASELINE_METHOD,
    REFERENCE_METHOD,
    CompareResult,
    MethodResult,
    SeedsResult,
)
from taskadapt.settings.compare.tables import write_outputs, write_seed_outputs
from taskadapt.tasks import get_task
from taskadapt.train import trainer
from taskadapt.train.data import build_splits

console = Console()


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
# several seeds


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


