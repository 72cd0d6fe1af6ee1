"""``create_model(cfg)``: the configured method's network for the configured tasks.

The one place that knows both the configuration and the model code: it turns the ``model`` section into
the methods' keyword options, and a :class:`~taskadapt.models.multitask.ModelOptionError` raised while
building into a :class:`~taskadapt.errors.ConfigError` naming the config key. The config package is only
imported for type checking: configuration imports the model registries to validate names, never the
other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from taskadapt.data.datasets import class_names_of
from taskadapt.errors import ConfigError
from taskadapt.models.backbones import Backbone, create_backbone
from taskadapt.models.methods import get_method
from taskadapt.models.multitask import ModelOptionError
from taskadapt.models.network import TaskNetwork
from taskadapt.tasks import get_task

if TYPE_CHECKING:
    from taskadapt.config.schema import Config


def num_classes_for(cfg: Config) -> dict[str, int]:
    """Class counts of the configured dataset's class-map tasks (semseg, parts)."""
    return {t: len(names) for t, names in class_names_of(cfg.data, cfg.data.tasks).items()}


def model_options(cfg: Config) -> dict[str, tuple[Any, str]]:
    """Every method option -> (its value, the config key it comes from); also the two build arguments that
    are not options (``tasks``, ``num_classes``), so that their errors name a config key too."""
    m = cfg.model
    return {
        "decoder_channels": (m.decoder_channels, "model.decoder_channels"), "decoder": (m.decoder, "model.decoder"),
        "decoder_conv": (m.decoder_conv, "model.decoder_conv"),
        "decoder_resample": (m.decoder_resample, "model.decoder_resample"),
        "adapter_blocks": (m.adapter_blocks, "model.adapter_blocks"),
        "bottleneck_ratio": (m.bottleneck_ratio, "model.bottleneck_ratio"),
        "train_block_weights": (m.train_block_weights, "model.train_block_weights"),
        "task_embed_dim": (m.task_embed_dim, "model.task_embed_dim"),
        "task_embed_std": (m.task_embed_std, "model.task_embed_std"),
        "prefix_lora": (m.prefix_lora, "model.prefix_lora"),
        "tsn_hidden": (m.tsn.hidden, "model.tsn.hidden"), "tsn_lr": (m.tsn.lr, "model.tsn.lr"),
        "tsn_task_offset": (m.tsn.task_offset, "model.tsn.task_offset"),
        "taa_per_head": (m.taa.per_head, "model.taa.per_head"),
        "taa_block_size": (m.taa.block_size, "model.taa.block_size"),
        "taa_align_to_grid": (m.taa.align_to_grid, "model.taa.align_to_grid"),
        "troa_measure": (m.troa.measure, "model.troa.measure"),
        "troa_momentum": (m.troa.momentum, "model.troa.momentum"),
        "lora_rank": (m.lora.rank, "model.lora.rank"), "lora_alpha": (m.lora.alpha, "model.lora.alpha"),
        "taa": (m.taa.enabled, "model.taa.enabled"), "tsn": (m.tsn.enabled, "model.tsn.enabled"),
        "troa": (m.troa.enabled, "model.troa.enabled"), "task_groups": (m.task_groups, "model.task_groups"),
        "tasks": (cfg.model_tasks(), "model.tasks"), "num_classes": (None, "data.tasks"),
    }


def create_model(cfg: Config, num_classes: Mapping[str, int] | None = None) -> TaskNetwork:
    """Build backbone (optionally pretrained) + method + decoder + heads from a validated config.

    ``num_classes`` defaults to the dataset's (read from its folder for real datasets).
    """
    m = cfg.model
    method = get_method(m.method)
    classes = dict(num_classes) if num_classes is not None else num_classes_for(cfg)
    tasks = cfg.model_tasks()
    missing = [t for t in tasks if get_task(t).kind == "classification" and t not in classes]
    if missing:
        raise ConfigError(f"the number of classes of {missing} is unknown: those tasks have no labels in "
                          f"{cfg.data.root}; start from a checkpoint that has them (train.init_from=...)")

    def backbone() -> Backbone:
        kwargs = dict(m.backbone_kwargs)
        size = kwargs.pop("img_size", m.img_size or cfg.data.crop_size)  # an explicit backbone_kwargs.img_size wins
        try:
            return create_backbone(m.backbone, pretrained=m.pretrained, img_size=size, **kwargs)
        except TypeError as err:  # an architecture override the family does not take
            raise ConfigError(f"config key 'model.backbone_kwargs' {m.backbone_kwargs}: {err}") from None

    options = model_options(cfg)
    built = {k: v for k, (v, _) in options.items() if k not in ("tasks", "num_classes")}
    try:
        return method.build(backbone, tasks, classes, **built)
    except ModelOptionError as err:
        raise ConfigError(f"config key '{options[err.option][1]}': {err}") from None
