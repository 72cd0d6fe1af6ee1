"""Typed configuration: a dataclass tree, YAML files in ``configs/``, ``key=value`` overrides.

A run's configuration is built in one place and validated once, at the edge::

    cfg = load_config("configs/scenes.yaml", ["data.batch_size=8", "data.tasks=[semseg,depth]"])

Layering: dataclass defaults <- YAML file <- command-line overrides. OmegaConf structured configs do
the merging and type conversion; :func:`validate` then checks the values that depend on registries
(task, dataset format, scene domain and backbone names) and ranges. Every problem becomes one
:class:`~taskadapt.errors.ConfigError` line naming the key, the bad value and the allowed values.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, get_args, get_origin, get_type_hints

import yaml
from omegaconf import OmegaConf
from omegaconf import errors as oc_errors

from taskadapt.errors import ConfigError
from taskadapt.registry import unknown_name_message

DEFAULT_TASKS = ("semseg", "depth", "normals", "edge")


@dataclass
class ScenesConfig:
    """How procedural scenes are generated when ``data.format`` is ``scenes``."""

    domain: str = "studio"
    train: int = 2000
    val: int = 200
    test: int = 500
    size: int = 128
    seed: int = 0


@dataclass
class AugmentConfig:
    """Training-time joint transforms (see :mod:`taskadapt.data.transforms`)."""

    scale_min: float = 0.75
    scale_max: float = 1.5
    flip: bool = True
    color_jitter: float = 0.2


@dataclass
class DataConfig:
    """Which dataset, which tasks, how it is batched."""

    #: ``scenes`` (procedural, generated into ``root``) or a reader format: nyud, pascal, ...
    format: str = "scenes"
    #: dataset folder; for ``scenes`` the folder the scenes are written to / read from
    root: str | None = None
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    train_split: str = "train"
    #: split used for model selection; null = carved from the training split (train.val_fraction),
    #: never the test split (the field's common flaw)
    val_split: str | None = None
    test_split: str = "test"
    crop_size: int = 128
    #: edge match tolerance as a fraction of the image diagonal; null = by format (pascal 0.0075, else 0.011)
    edge_tolerance: float | None = None
    batch_size: int = 16
    num_workers: int = 0
    #: keep decoded samples in memory after their first read (small datasets such as the 64 px scenes)
    cache: bool = False
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    #: options of the format's reader, e.g. {num_classes: 16} for cityscapes/synthia (docs/datasets.md)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TAAConfig:
    """Task-adapted attention (method.md §5)."""

    enabled: bool = True
    #: one bias per attention head instead of one shared by the heads
    per_head: bool = False
    #: block width b of the block-diagonal bias; null = family default (Swin: window size, ViT/PVT: grid width)
    block_size: int | None = None
    #: ViT: the class/register tokens get blocks of their own and patch blocks start on a row [ours]
    align_to_grid: bool = False


@dataclass
class TSNConfig:
    """Task-scaled norm (method.md §6)."""

    enabled: bool = True
    #: width of w~_t = Linear(w_t) that feeds gamma_t and beta_t (a low-rank map; ours)
    hidden: int = 32
    #: learning rate of gamma'/beta' (initialised from the pretrained LayerNorm): backbone = train.backbone_lr,
    #: as every fine-tuned pretrained weight; new = train.lr, as the other adapter parameters [ours]
    lr: str = "backbone"
    #: a free per-task offset of gamma_t/beta_t (T x 2C per norm, zero-initialised) on top of the
    #: embedding-conditioned maps [ours] (docs/method.md, "TSN")
    task_offset: bool = False


@dataclass
class TROAConfig:
    """Task-affinity from gradients (method.md §4)."""

    enabled: bool = True
    #: projection (asymmetric, default) or cosine
    measure: str = "projection"
    momentum: float = 0.9
    #: update the affinity every K training steps
    every: int = 1


@dataclass
class LoRAConfig:
    """The LoRA baseline's rank and scale."""

    rank: int = 4
    alpha: float = 8.0


@dataclass
class ModelConfig:
    """The network: backbone, method, adapter layers, decoder."""

    backbone: str = "vit_tiny_patch16_224"
    #: local .safetensors/.pth file, ``hf-hub:timm/<repo>``, or null for random initialisation
    pretrained: str | None = None
    #: architecture overrides passed to the backbone (e.g. {depth: 6, embed_dim: 192, patch_size: 8})
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    #: input size the model is built for; null = data.crop_size
    img_size: int | None = None
    #: adapters (ours), stl, mtl_finetune, frozen_heads, lora, no_taa, no_tsn, no_troa
    method: str = "adapters"
    #: 0-based indices over all transformer blocks; null = the last quarter of the blocks (on Swin-S/B the
    #: paper's figure: stage-3 blocks 15-18 + stage 4); PVTv2: the last stage
    adapter_blocks: list[int] | None = None
    #: bottleneck C -> C / r -> C
    bottleneck_ratio: float = 4.0
    #: also train the pretrained weights of the adapter blocks (the released code's mode)
    train_block_weights: bool = False
    #: size D of the task embeddings; null = family default (Swin: window^3 = 343 as the paper; else 128)
    task_embed_dim: int | None = None
    #: standard deviation of the task embeddings' initialisation N(0, std^2) (the authors' code: 1)
    task_embed_std: float = 0.02
    decoder_channels: int = 64
    #: shared: one multi-scale decoder for every task (task streams still decoded separately); per_task: one
    #: decoder per task, each reading its own task's stream (docs/method.md, "Decoder")
    decoder: str = "shared"
    #: full: dense 3x3 convolutions in the decoder and heads; separable: depthwise + pointwise [ours]
    decoder_conv: str = "full"
    #: interpolate: bilinear resampling of ViT taps to the pyramid levels; learned: depthwise strided /
    #: transposed convolutions [ours] (docs/method.md, "Decoder")
    decoder_resample: str = "interpolate"
    #: ours (adapters): LoRA (model.lora.rank/alpha) on the attention of the blocks before the adapter
    #: blocks, shared by every task [ours] (docs/method.md, "Shared adaptation of the prefix")
    prefix_lora: bool = False
    taa: TAAConfig = field(default_factory=TAAConfig)
    tsn: TSNConfig = field(default_factory=TSNConfig)
    troa: TROAConfig = field(default_factory=TROAConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    #: task -> loss weight; tasks not listed use their default (semseg 1, depth 1, normals 10, edge 50)
    loss_weights: dict[str, float] = field(default_factory=dict)
    #: tasks the model predicts; null = data.tasks. Tasks listed here but not in data.tasks have no labels
    #: in this run: they are predicted zero-shot (their head and task embedding never train; docs/settings.md)
    tasks: list[str] | None = None


@dataclass
class TrainConfig:
    """The optimisation schedule and the run's bookkeeping."""

    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.01
    #: learning rate of the backbone weights when they train (fine-tuning baselines); null = lr
    backbone_lr: float | None = 1e-4
    warmup_steps: int = 100
    #: cosine, onecycle or constant (after the warm-up)
    schedule: str = "cosine"
    #: clip the gradient norm to this value; 0 = off
    grad_clip: float = 1.0
    #: bfloat16 autocast for the forward pass
    bf16: bool = False
    #: torch.compile the model (off by default: on CPU it did not pay off, docs/performance.md)
    compile: bool = False
    #: recompute the adapter layers' activations in backward instead of storing them (saves memory)
    activation_checkpointing: bool = False
    #: channels-last memory format for the convolutional decoder and heads
    channels_last: bool = False
    #: share of the training split held out for model selection when data.val_split is null
    val_fraction: float = 0.1
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 10
    #: images evaluated on the validation split at each evaluation; 0 = all
    val_max_images: int = 0
    #: start from the weights of this checkpoint (e.g. a source-domain model); null = fresh adapters
    init_from: str | None = None


@dataclass
class ZeroShotConfig:
    """Zero-shot task transfer (``taskadapt zeroshot``, docs/settings.md)."""

    #: tasks that have no labels in the target setting: predicted, never trained there
    tasks: list[str] = field(default_factory=lambda: ["normals"])
    #: the target dataset; its labels of ``zeroshot.tasks`` are read only to score them on the test split
    target: DataConfig = field(default_factory=DataConfig)
    #: training steps on the target's labelled tasks (from the source model's weights)
    steps: int = 200
    #: learning rate on the target; null = train.lr
    lr: float | None = None


@dataclass
class AdaptConfig:
    """Unsupervised domain adaptation with output-space discriminators (``taskadapt adapt``)."""

    #: train with the adversarial loss on ``adapt.target`` (set by ``taskadapt adapt`` for its adapted run)
    enabled: bool = False
    #: the unlabelled target dataset: training reads its images only; labels only score the test split
    target: DataConfig = field(default_factory=DataConfig)
    #: lambda_adv, the weight of every task's adversarial loss on target batches
    adv_weight: float = 0.005
    #: per-task override of adv_weight, e.g. {depth: 0.001}
    adv_weights: dict[str, float] = field(default_factory=dict)
    #: discriminators: Adam with betas (0.9, 0.99)
    disc_lr: float = 1e-4
    #: width of the first discriminator layer (doubles per layer, 4 layers)
    disc_channels: int = 64
    #: constant, or poly (lr * (1 - step / steps) ** 0.9, as AdaptSegNet)
    disc_schedule: str = "constant"
    #: ramp the adversarial weight linearly from 0 over this many steps
    rampup_steps: int = 0


@dataclass
class Config:
    """The whole run configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    zeroshot: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    seed: int = 0
    out_dir: str = "runs/default"


# --------------------------------------------------------------------------------------------------
# loading


def _fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of a config dataclass."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_keys(data: Any, cls: type, prefix: str = "") -> None:
    """Reject unknown keys anywhere in ``data`` (a nested dict) with a did-you-mean message."""
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "the configuration"
        raise ConfigError(f"config key '{where}' must be a mapping of keys, got {data!r}")
    fields = _fields(cls)
    for key, value in data.items():
        if key not in fields:
            section = prefix.rstrip(".") or "top level"
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else "."
            raise ConfigError(
                f"unknown config key '{prefix}{key}'{hint} Allowed keys in {section}: {', '.join(fields)}"
            )
        ftype = fields[key]
        if dataclasses.is_dataclass(ftype) and value is not None:
            _check_keys(value, ftype, f"{prefix}{key}.")


def _field_type(dotted: str) -> Any:
    """The annotation of a dotted key (``data.tasks`` -> ``list[str]``); unknown keys raise."""
    cls: Any = Config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = _fields(cls)
        if part not in fields:
            _check_keys({part: None}, cls, "".join(p + "." for p in parts[:i]))
        cls = fields[part]
    return cls


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["data.batch_size=8", "data.tasks=semseg,depth"]`` -> a nested dict.

    Values are parsed as YAML (``8`` -> int, ``null`` -> None, ``[a,b]`` -> list); for list-typed
    keys a plain comma-separated string is split, so ``data.tasks=semseg,depth`` works too.
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"override '{item}' is not of the form key=value (for example data.batch_size=8)"
            )
        ftype = _field_type(key)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if get_origin(ftype) is list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file into a dict; missing/unreadable/invalid files raise ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist; pass a YAML file such as configs/scenes.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file '{path}' cannot be read: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must contain a mapping of keys at the top, got {type(data).__name__}")
    return data


def _expected(ftype: Any) -> str:
    args = [a for a in get_args(ftype) if a is not type(None)]
    if get_origin(ftype) is list:
        return f"a list of {getattr(args[0], '__name__', args[0])}"
    if args:
        return " or ".join(getattr(a, "__name__", str(a)) for a in args) + " or null"
    return getattr(ftype, "__name__", str(ftype))


def build_config(*layers: dict[str, Any]) -> Config:
    """Merge dict layers (later wins) over the dataclass defaults, convert types, validate."""
    schema = OmegaConf.structured(Config)
    for layer in layers:
        _check_keys(layer, Config)
    try:
        merged = OmegaConf.merge(schema, *layers)
        cfg = OmegaConf.to_object(merged)
    except oc_errors.OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        value = getattr(err, "value", None)
        try:
            expected = _expected(_field_type(key)) if key != "?" else "a value of the declared type"
        except ConfigError:
            expected = "a value of the declared type"
        raise ConfigError(f"config key '{key}' has a bad value {value!r}: expected {expected}") from None
    validate(cfg)
    return cast(Config, cfg)


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML file ``path`` (optional) <- ``key=value`` overrides; validated."""
    layers = [read_yaml(path)] if path is not None else []
    layers.append(parse_overrides(list(overrides)))
    return build_config(*layers)


def to_yaml(cfg: Config) -> str:
    """The resolved configuration as YAML (what a run saves next to its outputs)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def model_tasks(cfg: Config) -> list[str]:
    """The tasks the model predicts: ``model.tasks``, else ``data.tasks``."""
    return list(cfg.model.tasks) if cfg.model.tasks is not None else list(cfg.data.tasks)


def edge_tolerance(cfg: Config) -> float:
    """The BSDS match tolerance for this dataset (metrics-and-datasets §4.6)."""
    if cfg.data.edge_tolerance is not None:
        return cfg.data.edge_tolerance
    return 0.0075 if cfg.data.format == "pascal" else 0.011


# --------------------------------------------------------------------------------------------------
# validation of values that depend on registries and ranges


def _one_of(key: str, value: str, choices: list[str], kind: str) -> None:
    if value not in choices:
        msg = unknown_name_message(kind, value, choices)
        raise ConfigError(f"config key '{key}': {msg}")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"config key '{key}' must be {bound}, got {value}")


def _validate_data(p: str, d: DataConfig) -> None:
    """Check one dataset section (``data``, ``zeroshot.target``, ``adapt.target``)."""
    from taskadapt.data.datasets import list_formats
    from taskadapt.data.scenes import list_domains
    from taskadapt.tasks import list_tasks

    _one_of(f"{p}.format", d.format, ["scenes", *list_formats()], "dataset format")
    if d.options:
        from taskadapt.data.datasets import get_dataset_class

        allowed = get_dataset_class("nyud" if d.format == "scenes" else d.format).option_names()
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
    if d.format != "scenes" and d.root is None:
        raise ConfigError(f"config key '{p}.root' is null; set it to the {d.format} dataset folder ({p}.root=/path)")
    _one_of(f"{p}.scenes.domain", d.scenes.domain, list_domains(), "scene domain")
    for key in ("train", "val", "test"):
        _positive(f"{p}.scenes.{key}", getattr(d.scenes, key), allow_zero=True)
    if d.scenes.size < 16:
        raise ConfigError(f"config key '{p}.scenes.size' must be >= 16 pixels, got {d.scenes.size}")
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


def validate(cfg: Config) -> None:
    """Check names against the registries and numbers against their ranges."""
    from taskadapt.models import list_backbones
    from taskadapt.models.decoder import DECODER_CONVS, DECODER_LAYOUTS, DECODER_RESAMPLING
    from taskadapt.models.methods import list_methods
    from taskadapt.tasks import list_tasks

    d = cfg.data
    _validate_data("data", d)
    t = cfg.train
    _one_of("train.schedule", t.schedule, ["constant", "cosine", "onecycle"], "schedule")
    _positive("train.steps", t.steps)
    _positive("train.lr", t.lr)
    if t.backbone_lr is not None:
        _positive("train.backbone_lr", t.backbone_lr)
    for key in ("weight_decay", "warmup_steps", "grad_clip", "val_max_images"):
        _positive(f"train.{key}", getattr(t, key), allow_zero=True)
    for key in ("eval_every", "checkpoint_every", "log_every"):
        _positive(f"train.{key}", getattr(t, key))
    if not 0 < t.val_fraction < 1:
        raise ConfigError(f"config key 'train.val_fraction' must be in (0, 1), got {t.val_fraction}")
    m = cfg.model
    _one_of("model.backbone", m.backbone, list_backbones(), "backbone")
    _one_of("model.method", m.method, list_methods(), "method")
    _one_of("model.troa.measure", m.troa.measure, ["cosine", "projection"], "TROA measure")
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
    _one_of("model.tsn.lr", m.tsn.lr, ["backbone", "new"], "TSN learning rate")
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
    for task, weight in m.loss_weights.items():
        if task not in model_tasks(cfg):
            raise ConfigError(f"config key 'model.loss_weights.{task}': '{task}' is not one of the model's tasks "
                              f"{model_tasks(cfg)}")
        if weight < 0:
            raise ConfigError(f"config key 'model.loss_weights.{task}' must be >= 0, got {weight}")
    _validate_settings(cfg)


def _validate_settings(cfg: Config) -> None:
    """The zero-shot and adaptation sections (their target datasets are checked like ``data``)."""
    from taskadapt.tasks import list_tasks

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
        if task not in model_tasks(cfg):
            raise ConfigError(f"config key 'adapt.adv_weights.{task}': '{task}' is not one of the model's tasks "
                              f"{model_tasks(cfg)}")
        _positive(f"adapt.adv_weights.{task}", weight, allow_zero=True)
    _positive("adapt.disc_lr", a.disc_lr)
    _positive("adapt.disc_channels", a.disc_channels)
    _positive("adapt.rampup_steps", a.rampup_steps, allow_zero=True)
    _one_of("adapt.disc_schedule", a.disc_schedule, ["constant", "poly"], "discriminator schedule")
