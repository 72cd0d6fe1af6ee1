"""``create_model(config)``: the configured model for the configured tasks."""

from __future__ import annotations

from collections.abc import Mapping

from taskadapt.config import Config, model_tasks
from taskadapt.errors import ConfigError
from taskadapt.models.backbones import create_backbone
from taskadapt.models.methods import get_method
from taskadapt.models.multitask import MultiTaskModel, SingleTaskEnsemble
from taskadapt.tasks import get_task


def num_classes_for(cfg: Config) -> dict[str, int]:
    """Class counts of the configured dataset's class-map tasks (semseg, parts)."""
    if cfg.data.format == "scenes":
        from taskadapt.data.scenes import CLASS_NAMES

        return {"semseg": len(CLASS_NAMES)}
    from taskadapt.data.datasets import create_dataset

    tasks = [t for t in cfg.data.tasks if t in ("semseg", "parts")]
    if not tasks:
        return {}
    ds = create_dataset(cfg.data.format, cfg.data.root, cfg.data.train_split, tasks=tasks, **cfg.data.options)
    return dict(ds.num_classes)


def create_model(cfg: Config, num_classes: Mapping[str, int] | None = None) -> MultiTaskModel | SingleTaskEnsemble:
    """Build backbone (optionally pretrained) + method + decoder + heads from a validated config.

    ``num_classes`` defaults to the dataset's (read from its folder for real datasets).
    """
    m = cfg.model
    plan = get_method(m.method)
    plan = type(plan)(**{**plan.__dict__, "taa": plan.taa and m.taa.enabled, "tsn": plan.tsn and m.tsn.enabled,
                         "troa": plan.troa and m.troa.enabled})
    classes = dict(num_classes) if num_classes is not None else num_classes_for(cfg)
    img_size = m.img_size or cfg.data.crop_size

    def build(tasks: list[str]) -> MultiTaskModel:
        kwargs = dict(m.backbone_kwargs)
        size = kwargs.pop("img_size", img_size)  # an explicit backbone_kwargs.img_size wins
        try:
            backbone = create_backbone(m.backbone, pretrained=m.pretrained, img_size=size, **kwargs)
        except TypeError as err:  # an architecture override the family does not take
            raise ConfigError(f"config key 'model.backbone_kwargs' {m.backbone_kwargs}: {err}") from None
        return MultiTaskModel(
            backbone, tasks, classes, plan,
            adapter_blocks=m.adapter_blocks, bottleneck_ratio=m.bottleneck_ratio,
            train_block_weights=m.train_block_weights, task_embed_dim=m.task_embed_dim,
            task_embed_std=m.task_embed_std,
            decoder_channels=m.decoder_channels, decoder=m.decoder,
            decoder_conv=m.decoder_conv, decoder_resample=m.decoder_resample,
            prefix_lora=m.prefix_lora, tsn_hidden=m.tsn.hidden, tsn_lr=m.tsn.lr,
            tsn_task_offset=m.tsn.task_offset,
            taa_per_head=m.taa.per_head, taa_block_size=m.taa.block_size,
            taa_align_to_grid=m.taa.align_to_grid,
            troa_measure=m.troa.measure, troa_momentum=m.troa.momentum,
            lora_rank=m.lora.rank, lora_alpha=m.lora.alpha,
        )

    tasks = model_tasks(cfg)
    missing = [t for t in tasks if get_task(t).kind == "classification" and t not in classes]
    if missing:
        raise ConfigError(f"the number of classes of {missing} is unknown: those tasks have no labels in "
                          f"{cfg.data.root}; start from a checkpoint that has them (train.init_from=...)")
    if plan.single_task:
        return SingleTaskEnsemble({t: build([t]) for t in tasks})
    return build(tasks)
