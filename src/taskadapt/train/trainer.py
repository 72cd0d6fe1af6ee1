"""The training loop: plain PyTorch, DDP-ready, reproducible and resumable.

``train(cfg)`` writes into ``cfg.out_dir``::

    config.yaml                      the resolved configuration
    checkpoints/last.safetensors     (+ last.state.pt)  written every train.checkpoint_every steps
    checkpoints/best.safetensors     lowest validation loss (validation carved from training data)
    log.csv, tb/                     per-step losses and learning rate; validation metrics
    metrics.json                     validation metrics of the best checkpoint

AdamW (no weight decay on biases, norms and embeddings), linear warm-up then cosine / one-cycle /
constant, gradient clipping, optional bf16 autocast, TROA updates every ``model.troa.every`` steps.
SIGINT/SIGTERM write ``last`` and stop cleanly; a NaN or infinite loss stops the run, naming the task
and the step, and leaves the last good checkpoint untouched.
"""

from __future__ import annotations

import contextlib
import csv
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from taskadapt import checkpoint as ckpt
from taskadapt.config import (
    Config,
    build_config,
    load_config,
    parse_overrides,
    read_yaml,
    to_dict,
    to_yaml,
    validate,
)
from taskadapt.data.datasets import dataset_root, edge_thin_targets, edge_tolerance
from taskadapt.distributed import DistInfo, barrier, cleanup, init_from_env, unwrap
from taskadapt.errors import ConfigError, TaskadaptError
from taskadapt.evaluation.loop import evaluate
from taskadapt.io import write_json, write_text
from taskadapt.losses import MultiTaskLoss
from taskadapt.models import create_model
from taskadapt.models.network import TaskNetwork
from taskadapt.run import Run
from taskadapt.train.adversarial import DomainAdversary
from taskadapt.train.data import TrainingData
from taskadapt.train.schedule import build_scheduler

console = Console()


class TrainingDiverged(TaskadaptError):
    """A loss became NaN or infinite."""


class TrainingInterrupted(TaskadaptError):
    """SIGINT/SIGTERM: the last checkpoint was written and the run stopped."""

    exit_code = 130


@dataclass
class TrainResult:
    out_dir: Path
    last: Path
    best: Path | None
    step: int
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def param_groups(model: TaskNetwork, cfg: Config) -> list[dict]:
    """AdamW groups as the network names them (:meth:`TaskNetwork.param_groups`): pretrained weights at
    ``train.backbone_lr``, everything new at ``train.lr``; no weight decay on 1-D tensors and embeddings."""
    t = cfg.train
    return unwrap(model).param_groups(t.lr, t.backbone_lr, t.weight_decay)


def apply_speed_options(model: TaskNetwork, cfg: Config) -> None:
    """``train.activation_checkpointing`` and ``train.channels_last``; ``train.compile`` is applied by the
    trainer after the DDP wrap."""
    unwrap(model).set_speed_options(cfg.train.activation_checkpointing, cfg.train.channels_last)


def _sync_step(info: DistInfo, tasks: list[str], per_task: dict[str, torch.Tensor], total: torch.Tensor,
               stop: bool) -> tuple[dict[str, float], float, bool]:
    """Per-task losses averaged over the ranks that had labels for the task, the total loss averaged over
    the ranks, and whether any rank was signalled (``tasks``: the model's tasks, the same on every rank).
    Single process: the values themselves. A NaN on any rank stays NaN in the sum, so every rank sees
    the divergence and stops at the same step."""
    if not info.distributed:
        return {t: float(v) for t, v in per_task.items()}, float(total.detach()), stop
    n = len(tasks)
    vals = torch.zeros(2 * n + 2, dtype=torch.float64)
    for i, t in enumerate(tasks):
        if t in per_task:
            vals[i], vals[n + i] = float(per_task[t]), 1.0
    vals[-2], vals[-1] = float(total.detach()), float(stop)
    torch.distributed.all_reduce(vals)
    synced = {t: float(vals[i] / vals[n + i]) for i, t in enumerate(tasks) if vals[n + i] > 0}
    return synced, float(vals[-2]) / info.world, bool(vals[-1] > 0)


class _StopFlag:
    """Records SIGINT/SIGTERM so the loop can checkpoint and stop between steps."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave the handlers alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Logger:
    """CSV and TensorBoard logs (rank 0 only)."""

    def __init__(self, out: Path, enabled: bool, resume: bool):
        self.enabled = enabled
        self.csv_path = out / "log.csv"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"))
            except ImportError:  # tensorboard is a dependency; stay usable if someone removed it
                self.tb = None
        self._fields: list[str] | None = None
        if enabled and resume and self.csv_path.is_file():
            with open(self.csv_path, newline="") as f:
                self._fields = next(csv.reader(f), None)

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self._fields is None:
            self._fields = ["step", *values]
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(self._fields)
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerow([step, *[values.get(k, "") for k in self._fields[1:]]])
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def log_eval(self, step: int, result: dict) -> None:
        if self.tb is None:
            return
        for task, metrics in result["metrics"].items():
            for k, v in metrics.items():
                self.tb.add_scalar(f"val/{task}/{k}", v, step)
        if result["loss"] is not None:
            self.tb.add_scalar("val/loss", result["loss"], step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def portable_config(cfg: Config) -> dict[str, Any]:
    """The configuration as a dict with every dataset folder absolute (``data``, ``zeroshot.target``,
    ``adapt.target``; a generated dataset's default folder made explicit), so a checkpoint finds its data
    from any working directory."""
    doc = to_dict(cfg)
    for section, node in ((cfg.data, doc["data"]), (cfg.zeroshot.target, doc["zeroshot"]["target"]),
                          (cfg.adapt.target, doc["adapt"]["target"])):
        node["root"] = str(dataset_root(section).absolute())
    return doc


def _meta(cfg: Config, model: torch.nn.Module, step: int, classes: tuple[dict, dict], metrics: dict | None,
          command: str | None = None) -> dict:
    affinity = unwrap(model).affinity_matrix()
    return {"config": portable_config(cfg), "command": command, "step": step, "tasks": cfg.model_tasks(),
            "num_classes": classes[0], "class_names": classes[1], "trained_tasks": list(cfg.data.tasks),
            "backbone": cfg.model.backbone, "method": cfg.model.method,
            "affinity": affinity.tolist() if affinity is not None else None,
            "metrics": metrics or {}}


#: keys a resumed run must keep: they fix the model's shapes, the data it reads and the order of its batches
RESUME_FIXED = ("model", "data.format", "data.root", "data.tasks", "data.batch_size", "data.crop_size",
                "data.train_split", "data.val_split", "data.scenes", "seed", "out_dir")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        return {k: v for key, value in node.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def resume_config(checkpoint: str | Path, config_file: str | Path | None = None,
                  overrides: list[str] | tuple[str, ...] = ()) -> tuple[Config, Path, list[str]]:
    """The configuration to continue ``checkpoint`` with: the run's own (stored in the checkpoint), or
    ``config_file`` when one is given, then ``overrides``. ``checkpoint`` may be ``last``: the run's
    ``<out_dir>/checkpoints/last.safetensors`` (``out_dir`` from the file and overrides).

    Returns (config, checkpoint path, the keys whose values differ from the run's, as ``key: old -> new``).
    A change of a key in :data:`RESUME_FIXED` (the model, the data, the batch order, the folder) or
    ``train.steps`` below the steps already done is a ConfigError naming the keys.
    """
    if str(checkpoint) == "last":
        checkpoint = Path(load_config(config_file, overrides).out_dir) / "checkpoints" / "last.safetensors"
    checkpoint = Path(checkpoint)
    run = Run.open(checkpoint)
    stored = run.meta.get("config")
    if not isinstance(stored, dict):
        raise ConfigError(f"cannot resume '{checkpoint}': its header stores no configuration; start a new run")
    cfg = build_config(read_yaml(config_file) if config_file is not None else stored, parse_overrides(list(overrides)))
    # folders compared as absolute paths (the checkpoint stores them so; a config file may name them relatively)
    before, after = _flatten(portable_config(build_config(stored))), _flatten(portable_config(cfg))
    changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    fixed = [k for k in changed if any(k == f or k.startswith(f + ".") for f in RESUME_FIXED)]
    if fixed:
        shown = "; ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in fixed[:4])
        raise ConfigError(f"cannot resume '{checkpoint}' with other values of {', '.join(fixed)} ({shown}): they "
                          "fix the model, the data or the order of the batches. Resume with the run's own values "
                          "(leave them out) or start a new run in another out_dir")
    if cfg.train.steps < run.step:
        raise ConfigError(f"cannot resume '{checkpoint}' with train.steps={cfg.train.steps}: it has already done "
                          f"{run.step} steps; set train.steps to at least {run.step}")
    return cfg, checkpoint, [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed]


def freeze_untrained(model: TaskNetwork, cfg: Config) -> None:
    """Tasks without labels in this run (zero-shot) and, when adding tasks (``train.train_tasks``), the old
    ones keep their parts; with ``train.train_tasks`` nothing shared trains either."""
    train_only = cfg.train.train_tasks
    frozen = [t for t in cfg.model_tasks()
              if t not in cfg.data.tasks or (train_only is not None and t not in train_only)]
    if frozen:
        model.freeze_tasks(frozen)
    if train_only is not None:
        model.freeze_shared()


def train(cfg: Config, resume: str | Path | None = None, progress: bool = True,
          command: str | None = None) -> TrainResult:
    """Train ``cfg``; ``resume`` is a checkpoint (``.../last.safetensors``) or ``True``-ish ``"last"``.
    ``command``: the command line that started the run, kept in the checkpoints' header (model cards show it)."""
    info = init_from_env(cfg.train.device)
    try:
        return _train(cfg, info, resume, progress, command)
    finally:
        cleanup(info)


def _train(cfg: Config, info: DistInfo, resume: str | Path | None, progress: bool, command: str | None
           ) -> TrainResult:
    out = Path(cfg.out_dir)
    ckpt_dir = out / "checkpoints"
    last_path, best_path = ckpt_dir / "last.safetensors", ckpt_dir / "best.safetensors"
    if resume == "last":
        resume = last_path
    if resume is None and last_path.exists():
        raise ConfigError(f"out_dir '{out}' already holds a run ({last_path}); pass --resume to continue it "
                          "or set out_dir to a new folder")
    validate(cfg)  # again: the protocols derive their runs' configs from a validated one by changing fields
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        TrainingData.prepare(cfg, progress=progress)
        write_text(out / "config.yaml", to_yaml(cfg))
    barrier(info)

    torch.manual_seed(cfg.seed)
    data = TrainingData(cfg)
    num_classes, class_names = dict(data.num_classes), dict(data.class_names)
    source = Run.open(cfg.train.init_from) if cfg.train.init_from is not None else None
    if source is not None:  # classes of tasks without labels here come from the source model
        for t, k in source.num_classes.items():
            num_classes.setdefault(t, k)
        for t, names in source.class_names.items():
            class_names.setdefault(t, names)
    if source is not None and (source.method, source.backbone) != (cfg.model.method, cfg.model.backbone):
        raise ConfigError(f"train.init_from '{source.path}' is a {source.method} model on {source.backbone}; this "
                          f"run trains {cfg.model.method} on {cfg.model.backbone}. Start from a checkpoint of the "
                          "same method and backbone")
    model = create_model(cfg, num_classes=num_classes).to(info.device)
    if source is not None and resume is None:
        if source.tasks == cfg.model_tasks():
            source.load_weights(model)
        else:  # a task subset or superset: shared tasks carry over, new ones start fresh
            source.load_weights_for_tasks(model)
    freeze_untrained(model, cfg)
    adversary = None
    if cfg.adapt.enabled:
        adversary = DomainAdversary(cfg.adapt, cfg.model_tasks(), num_classes, cfg.train.steps).to(info.device)
    loss_fn = MultiTaskLoss(cfg.model_tasks(), cfg.model.loss_weights)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.train.lr)
    total = cfg.train.steps
    scheduler = build_scheduler(optimizer, total, cfg.train.warmup_steps, cfg.train.schedule)
    start, best_loss = 0, math.inf
    if resume is not None:
        previous = Run.open(resume)
        if (previous.tasks, previous.method, previous.backbone) != (cfg.model_tasks(), cfg.model.method,
                                                                     cfg.model.backbone):
            raise ConfigError(f"cannot resume '{resume}': it was trained with method {previous.method}, backbone "
                              f"{previous.backbone} on tasks {previous.tasks}; this config has {cfg.model.method}, "
                              f"{cfg.model.backbone} on {cfg.model_tasks()}. Resume with the run's own config "
                              "(`taskadapt train --resume CKPT` without a config file)")
        previous.load_weights(model)
        state = ckpt.load_train_state(resume)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, best_loss = int(state["step"]), float(state.get("best_loss", math.inf))
        if adversary is not None:
            if "adversary" not in state:
                raise ConfigError(f"cannot resume '{resume}' with adapt.enabled=true: it was trained without "
                                  "domain adaptation")
            adversary.load_train_state(state["adversary"])
    apply_speed_options(model, cfg)
    if info.distributed:
        ddp_kwargs = {"device_ids": [info.device.index]} if info.device.type == "cuda" else {}
        model = torch.nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
    inner: TaskNetwork = unwrap(model)
    # compiled forward only: checkpoints keep reading the plain (or DDP) module's parameter names
    forward = torch.compile(model) if cfg.train.compile else model
    troa_every = cfg.model.troa.every

    loader = data.train_loader(start, info.rank, info.world)
    targets = iter(data.target_loader(start, info.rank, info.world)) if adversary is not None else None
    # each rank scores its share of the validation images; metrics and loss are summed over the ranks
    val_loader = data.val_loader(info.rank, info.world)
    logger = _Logger(out, info.is_main, resume is not None)
    autocast = (torch.autocast(device_type=info.device.type, dtype=torch.bfloat16) if cfg.train.bf16
                else contextlib.nullcontext())
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                   disable=not (progress and info.is_main), console=console)
    t0 = time.perf_counter()
    step = start
    best_metrics: dict = {}
    running: dict[str, float] = {}

    def save(path: Path, metrics: dict | None = None) -> None:
        if info.is_main:
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "step": step, "best_loss": best_loss}
            if adversary is not None:
                state["adversary"] = adversary.train_state()
            ckpt.save_checkpoint(path, model, _meta(cfg, model, step, (num_classes, class_names), metrics, command),
                                 state)
        barrier(info)

    with _StopFlag() as stop, bar:
        job = bar.add_task(f"training {cfg.model.method}", total=total, completed=start, losses="")
        model.train()
        for batch in loader:
            batch = {k: (v.to(info.device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                     for k, v in batch.items()}
            inner.capture_affinity = step % troa_every == 0
            images, n_source = batch["image"], batch["image"].shape[0]
            if targets is not None:  # unlabelled target images ride in the same batch (one forward, DDP-safe)
                images = torch.cat([images, next(targets)["image"].to(info.device, non_blocking=True)])
            with autocast:
                preds = forward(images)
            preds = {k: v.float() for k, v in preds.items()}
            if targets is not None:  # split the outputs back into source and target halves
                target_preds = {k: v[n_source:] for k, v in preds.items()}
                preds = {k: v[:n_source] for k, v in preds.items()}
            losses = loss_fn(preds, batch)
            total_loss, extra_logs = losses.total, {}
            if adversary is not None:
                adv_loss, extra_logs = adversary.generator_loss(target_preds, step)
                total_loss = total_loss + adv_loss
            # one small all-reduce: losses averaged over the ranks, and every rank agrees on stopping
            per_task, step_loss, stop_now = _sync_step(info, loss_fn.tasks, losses.per_task, total_loss,
                                                   stop.signal is not None)
            bad = [t for t, v in per_task.items() if not math.isfinite(v)]
            if bad or not math.isfinite(step_loss):
                where = f"task '{bad[0]}' ({per_task[bad[0]]})" if bad else "the total loss"
                kept = f"the last good checkpoint is {last_path}" if last_path.exists() else "no checkpoint was written"
                raise TrainingDiverged(f"{where} is not finite at step {step}; {kept}. Lower train.lr, keep "
                                       "train.grad_clip on, or check the labels of that task")
            optimizer.zero_grad(set_to_none=True)
            total_loss.backward()
            if cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                               cfg.train.grad_clip)
            optimizer.step()
            scheduler.step()
            if adversary is not None:
                extra_logs.update(adversary.discriminator_step(preds, step))
            if step % troa_every == 0:
                inner.update_affinity(losses.weights, losses.present, samples=n_source)
            step += 1
            for t, v in per_task.items():
                running[t] = 0.9 * running.get(t, v) + 0.1 * v
            bar.update(job, completed=step, losses=" ".join(f"{t} {v:.3f}" for t, v in running.items()))
            if step % cfg.train.log_every == 0 or step == total:
                logger.log(step, {"loss": step_loss, "lr": scheduler.get_last_lr()[0],
                                  **{f"loss/{t}": v for t, v in per_task.items()}, **extra_logs})
            if step % cfg.train.eval_every == 0 or step == total:
                result = evaluate(inner, val_loader, list(cfg.data.tasks), data.num_classes, loss_fn,
                                  edge_exact=False, edge_tolerance=edge_tolerance(cfg.data),
                                  edge_thin_targets=edge_thin_targets(cfg.data))
                logger.log_eval(step, result)
                if result["loss"] is not None and result["loss"] < best_loss:
                    best_loss, best_metrics = result["loss"], {"step": step, "val_loss": result["loss"],
                                                               **result["metrics"]}
                    save(best_path, best_metrics)
            if step % cfg.train.checkpoint_every == 0 or step == total:
                save(last_path, best_metrics)
            if stop_now:
                save(last_path, best_metrics)
                logger.close()
                name = signal.Signals(stop.signal).name if stop.signal is not None else "a signal (on another rank)"
                raise TrainingInterrupted(f"{name} received at step {step}: wrote {last_path}; continue with "
                                          f"`taskadapt train ... --resume {last_path}`")
    logger.close()
    seconds = time.perf_counter() - t0
    if info.is_main:
        write_json(out / "metrics.json", {"best": best_metrics, "steps": step, "train_seconds": seconds,
                                          "note": "validation images carved from the training split"})
    return TrainResult(out, last_path, best_path if best_path.exists() else None, step, best_metrics, seconds)
