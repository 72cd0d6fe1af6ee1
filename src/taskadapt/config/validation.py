"""Validation of a built :class:`Config`: names against the registries, numbers against their ranges,
and the checks that span sections. Each problem is one :class:`~taskadapt.errors.ConfigError` line
naming the key, the bad value and the allowed values.

Every list of choices is imported from the module that defines it (the registries, the decoder's
layouts, the schedules, ...), so a new choice needs no edit here.
"""

from __future__ import annotations

import dataclasses
import math

from taskadapt.config.schema import Config, DataConfig
from taskadapt.data.datasets import get_dataset_class, list_formats
from taskadapt.distributed import DEVICE_PATTERN
from taskadapt.errors import ConfigError
from taskadapt.models.backbones import list_backbones
from taskadapt.models.decoder import DECODER_CONVS, DECODER_LAYOUTS, DECODER_RESAMPLING
from taskadapt.models.methods import list_methods
from taskadapt.models.methods.adapters import TSN_LEARNING_RATES
from taskadapt.models.troa import TROA_MEASURES
from taskadapt.registry import unknown_name_message
from taskadapt.tasks import list_tasks
from taskadapt.train.adversarial import DISC_SCHEDULES
from taskadapt.train.schedule import SCHEDULES


def _one_of(key: str, value: str, choices: list[str], kind: str) -> None:
    if value not in choices:
        msg = unknown_name_message(kind, value, choices)
        raise ConfigError(f"config key '{key}': {msg}")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"config key '{key}' must be {bound}, got {value}")


def _validate_data(p: str, d: DataConfig) -> None:
    """Check one dataset section (``data``, ``zeroshot.target``, ``adapt.target``)."""
    _one_of(f"{p}.format", d.format, list_formats(), "dataset format")
    if d.options:
        allowed = get_dataset_class(d.format).option_names()
        for key in d.options:
            if key not in allowed:
                raise ConfigError(f"config key '{p}.options.{key}': the {d.format} reader has no option '{key}'; "
                                  f"its options: {', '.join(allowed) or 'none'}")
    if not d.tasks:
        raise ConfigError(f"config key '{p}.tasks' is empty; name at least one task, e.g. {p}.tasks=[semseg,depth]")
    for i, task in enumerate(d.tasks):
        _one_of(f"{p}.tasks[{i}]", task, list_tasks(), "task")
    if len(set(d.tasks)) != len(d.tasks):
        raise ConfigError(f"config key '{p}.tasks' lists a task twice: {d.tasks}")
    reader = get_dataset_class(d.format)
    if d.root is None and not reader.GENERATED:
        raise ConfigError(f"config key '{p}.root' is null; set it to the {d.format} dataset folder ({p}.root=/path)")
    reader.check_section(d, p)  # what only the format knows (the scenes' generator settings)
    _positive(f"{p}.crop_size", d.crop_size)
    _positive(f"{p}.batch_size", d.batch_size)
    _positive(f"{p}.num_workers", d.num_workers, allow_zero=True)
    a = d.augment
    if not 0 < a.scale_min <= a.scale_max:
        raise ConfigError(
            f"config keys '{p}.augment.scale_min'/'scale_max' must satisfy 0 < min <= max, "
            f"got {a.scale_min} and {a.scale_max}"
        )
    if not 0 <= a.color_jitter <= 1:
        raise ConfigError(f"config key '{p}.augment.color_jitter' must be in [0, 1], got {a.color_jitter}")
    if d.val_split is not None and d.val_split == d.test_split:
        raise ConfigError(
            f"config keys '{p}.val_split' and '{p}.test_split' are both '{d.test_split}': model selection on "
            f"the test split inflates results; set {p}.val_split=null to carve validation images from training"
        )


def _all_finite(node: object, key: str) -> None:
    """No NaN or infinity anywhere (a NaN passes every ``<`` check and fails later, inside torch)."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            _all_finite(getattr(node, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(node, dict):
        for k, v in node.items():
            _all_finite(v, f"{key}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _all_finite(v, f"{key}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config key '{key}' must be a finite number, got {node}")


def validate(cfg: Config) -> None:
    """Check names against the registries and numbers against their ranges."""
    _all_finite(cfg, "")
    d = cfg.data
    _validate_data("data", d)
    t = cfg.train
    _one_of("train.schedule", t.schedule, list(SCHEDULES), "schedule")
    _positive("train.steps", t.steps)
    _positive("train.lr", t.lr)
    if t.backbone_lr is not None:
        _positive("train.backbone_lr", t.backbone_lr)
    for key in ("weight_decay", "warmup_steps", "grad_clip", "val_max_images"):
        _positive(f"train.{key}", getattr(t, key), allow_zero=True)
    for key in ("eval_every", "checkpoint_every", "log_every"):
        _positive(f"train.{key}", getattr(t, key))
    if not DEVICE_PATTERN.match(t.device):
        raise ConfigError(f"config key 'train.device': '{t.device}' is not a device; use auto, cpu, cuda or cuda:N")
    if not 0 < t.val_fraction < 1:
        raise ConfigError(f"config key 'train.val_fraction' must be in (0, 1), got {t.val_fraction}")
    m = cfg.model
    _one_of("model.backbone", m.backbone, list_backbones(), "backbone")
    _one_of("model.method", m.method, list_methods(), "method")
    _one_of("model.troa.measure", m.troa.measure, list(TROA_MEASURES), "TROA measure")
    if not 0 <= m.troa.momentum < 1:
        raise ConfigError(f"config key 'model.troa.momentum' must be in [0, 1), got {m.troa.momentum}")
    _positive("model.troa.every", m.troa.every)
    _positive("model.bottleneck_ratio", m.bottleneck_ratio)
    _positive("model.decoder_channels", m.decoder_channels)
    _positive("model.task_embed_std", m.task_embed_std)
    _one_of("model.decoder", m.decoder, list(DECODER_LAYOUTS), "decoder layout")
    _one_of("model.decoder_conv", m.decoder_conv, list(DECODER_CONVS), "decoder convolution")
    _one_of("model.decoder_resample", m.decoder_resample, list(DECODER_RESAMPLING), "decoder resampling")
    _positive("model.lora.rank", m.lora.rank)
    _positive("model.tsn.hidden", m.tsn.hidden)
    _one_of("model.tsn.lr", m.tsn.lr, list(TSN_LEARNING_RATES), "TSN learning rate")
    for key in ("img_size", "task_embed_dim"):
        if getattr(m, key) is not None:
            _positive(f"model.{key}", getattr(m, key))
    if m.taa.block_size is not None:
        _positive("model.taa.block_size", m.taa.block_size)
    if m.adapter_blocks is not None and (not m.adapter_blocks or min(m.adapter_blocks) < 0):
        raise ConfigError(f"config key 'model.adapter_blocks' must list block indices >= 0, got {m.adapter_blocks}")
    if m.tasks is not None:
        for i, task in enumerate(m.tasks):
            _one_of(f"model.tasks[{i}]", task, list_tasks(), "task")
        missing = [t for t in d.tasks if t not in m.tasks]
        if missing or len(set(m.tasks)) != len(m.tasks):
            raise ConfigError(f"config key 'model.tasks' {m.tasks} must list each task once and include every "
                              f"task of data.tasks {d.tasks} (missing: {missing}); or set model.tasks=null")
    if m.task_groups is not None:
        flat = [t for group in m.task_groups for t in group]
        if flat != cfg.model_tasks() or any(not group for group in m.task_groups):
            raise ConfigError(f"config key 'model.task_groups' {m.task_groups} must split the model's tasks "
                              f"{cfg.model_tasks()} into non-empty groups, in that order; or set "
                              "model.task_groups=null")
    for task, weight in m.loss_weights.items():
        if task not in cfg.model_tasks():
            raise ConfigError(f"config key 'model.loss_weights.{task}': '{task}' is not one of the model's tasks "
                              f"{cfg.model_tasks()}")
        if weight < 0:
            raise ConfigError(f"config key 'model.loss_weights.{task}' must be >= 0, got {weight}")
    _validate_settings(cfg)
    _validate_run(cfg)


def _validate_settings(cfg: Config) -> None:
    """The zero-shot and adaptation sections (their target datasets are checked like ``data``)."""
    z = cfg.zeroshot
    _validate_data("zeroshot.target", z.target)
    for i, task in enumerate(z.tasks):
        _one_of(f"zeroshot.tasks[{i}]", task, list_tasks(), "task")
    _positive("zeroshot.steps", z.steps)
    if z.lr is not None:
        _positive("zeroshot.lr", z.lr)
    a = cfg.adapt
    _validate_data("adapt.target", a.target)
    _positive("adapt.adv_weight", a.adv_weight, allow_zero=True)
    for task, weight in a.adv_weights.items():
        if task not in cfg.model_tasks():
            raise ConfigError(f"config key 'adapt.adv_weights.{task}': '{task}' is not one of the model's tasks "
                              f"{cfg.model_tasks()}")
        _positive(f"adapt.adv_weights.{task}", weight, allow_zero=True)
    _positive("adapt.disc_lr", a.disc_lr)
    _positive("adapt.disc_channels", a.disc_channels)
    _positive("adapt.rampup_steps", a.rampup_steps, allow_zero=True)
    _one_of("adapt.disc_schedule", a.disc_schedule, list(DISC_SCHEDULES), "discriminator schedule")


def _validate_run(cfg: Config) -> None:
    """Cross-section checks of one training run."""
    zero_shot = [t for t in cfg.model_tasks() if t not in cfg.data.tasks]
    if zero_shot and cfg.train.init_from is None:
        raise ConfigError(f"model.tasks has tasks without labels in this run ({zero_shot}) but train.init_from "
                          "is null: they would never learn. Start from a model that learned them "
                          "(train.init_from=<checkpoint>) or add them to data.tasks")
    train_tasks = cfg.train.train_tasks
    if train_tasks is not None:
        unknown = [t for t in train_tasks if t not in cfg.model_tasks()]
        if not train_tasks or unknown or len(set(train_tasks)) != len(train_tasks):
            raise ConfigError(f"config key 'train.train_tasks' {train_tasks} must list, once each, some of the "
                              f"model's tasks {cfg.model_tasks()}; or set train.train_tasks=null")
        if cfg.train.init_from is None:
            raise ConfigError("train.train_tasks trains only some tasks' own parameters and keeps everything "
                              "else as train.init_from left it, but train.init_from is null; set it to the "
                              "trained model's checkpoint")
    if cfg.adapt.enabled and cfg.adapt.target.crop_size != cfg.data.crop_size:
        raise ConfigError(f"adapt.target.crop_size {cfg.adapt.target.crop_size} differs from data.crop_size "
                          f"{cfg.data.crop_size}: source and target crops go through the network in one batch; "
                          "make them equal")
