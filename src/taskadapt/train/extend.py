"""Add a task to a trained model without retraining it (the paper: "no retraining when a new task is added").

``taskadapt extend CKPT --task saliency --out runs/plus-saliency [data.root=...]`` trains, from the trained
checkpoint, only what belongs to the new task: its task-embedding row, its head (and its decoder with
``model.decoder=per_task``); its stream runs through the trained, frozen adapters. Everything the old tasks
use stays as it was, and they compute exactly what they computed before, bit for bit:

* ours: the new task gets its own stream group (``model.task_groups``); the old group's streams, their
  conditioning (TROA's mix over the old tasks only) and their decoding are the same operations on the same
  numbers as in the trained model;
* the baselines run one stream whose features the new head only reads.

TROA's affinity gains a row and a column. With the old tasks' labels in the data (``data.tasks``, by default
the old trained tasks plus the new ones) their losses are computed -- they change nothing, every old part is
frozen -- so that TROA measures how the old tasks relate to the new one and mixes their embeddings into its
conditioning; the affinity among the old tasks stays fixed. Without them (``data.tasks=[saliency]``) the new
task is conditioned on its own embedding.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from taskadapt.config import Config, build_config, parse_overrides, read_yaml
from taskadapt.errors import ConfigError
from taskadapt.run import Run
from taskadapt.tasks import list_tasks


def extend_config(checkpoint: str | os.PathLike, tasks: Sequence[str], out_dir: str | os.PathLike,
                  config_file: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    """The training configuration that adds ``tasks`` to the model of ``checkpoint``.

    Starts from the run's own configuration (or ``config_file``), then: ``model.tasks`` = old + new,
    ``model.task_groups`` = the old groups + one group of the new tasks, ``data.tasks`` = the old trained tasks
    + new, ``train.init_from`` = ``checkpoint``, ``train.train_tasks`` = new, ``out_dir``; ``overrides`` last
    (e.g. ``data.root=...``, ``data.tasks=[saliency]``, ``train.steps=200``).
    """
    run = Run.open(checkpoint)
    new = list(dict.fromkeys(tasks))
    if not new:
        raise ConfigError("name the task to add: --task <name>, e.g. --task saliency")
    unknown = [t for t in new if t not in list_tasks()]
    if unknown:
        raise ConfigError(f"unknown task {unknown[0]!r}; tasks are {', '.join(list_tasks())}")
    known = [t for t in new if t in run.tasks]
    if known:
        raise ConfigError(f"the model of '{run.path}' already predicts {known}; --task names a task it does not "
                          f"predict yet (it predicts {run.tasks})")
    layer = read_yaml(config_file) if config_file is not None else dict(run.meta.get("config") or {})
    model = dict(layer.get("model") or {})
    groups = model.get("task_groups") or [list(run.tasks)]
    trained = [t for t in (run.meta.get("trained_tasks") or run.tasks) if t in run.tasks]
    layer["model"] = {**model, "tasks": [*run.tasks, *new], "task_groups": [*groups, new]}
    layer["data"] = {**(layer.get("data") or {}), "tasks": [*trained, *new]}
    layer["train"] = {**(layer.get("train") or {}), "init_from": str(Path(checkpoint)), "train_tasks": new}
    layer["out_dir"] = str(out_dir)
    return build_config(layer, parse_overrides(list(overrides)))


def probe_images(cfg: Config, count: int = 16) -> torch.Tensor:
    """Up to ``count`` images of the run's validation split at the model's input size, (B, 3, S, S)."""
    from taskadapt.train.data import TrainingData

    loader = TrainingData(cfg).val_loader()
    images = [batch["image"] for batch, _ in zip(loader, range(-(-count // cfg.data.batch_size)), strict=False)]
    return torch.cat(images)[:count]


__all__ = ["extend_config", "probe_images"]
