"""Single-task learning: one independent model per task, whole backbone fine-tuned, its own decoder
and head -- the baseline Delta_m is measured against (Vandenhende et al., Eq. 10)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from taskadapt.models.methods.base import BackboneSource, Method, check_options, register_method
from taskadapt.models.methods.mtl_finetune import MTLFinetune
from taskadapt.models.multitask import MultiTaskModel
from taskadapt.models.network import TaskNetwork


class SingleTaskEnsemble(TaskNetwork):
    """``stl``: one independent :class:`MultiTaskModel` per task (nothing shared). Parameter names are
    ``models.<task>.<name of the single-task model>``."""

    def __init__(self, models: Mapping[str, MultiTaskModel]):
        super().__init__()
        self.tasks = list(models)
        self.models = torch.nn.ModuleDict(models)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: self.models[t](image)[t] for t in self.tasks}

    def pretrained_parameters(self) -> set[str]:
        return {f"models.{t}.{n}" for t, m in self.models.items() for n in m.pretrained_parameters()}

    def no_weight_decay(self) -> set[str]:
        return {f"models.{t}.{n}" for t, m in self.models.items() for n in m.no_weight_decay()}

    def frozen_pretrained_keys(self) -> set[str]:
        return {f"models.{t}.{k}" for t, m in self.models.items() for k in m.frozen_pretrained_keys()}

    def components(self) -> dict[str, str]:
        return {f"models.{t}.{n}": c for t, m in self.models.items() for n, c in m.components().items()}

    def task_prefixes(self) -> dict[str, str]:
        return {f"models.{t}.": t for t in self.tasks}

    def set_speed_options(self, activation_checkpointing: bool = False, channels_last: bool = False) -> None:
        for m in self.models.values():
            m.set_speed_options(activation_checkpointing, channels_last)

    def freeze_tasks(self, tasks: Sequence[str]) -> None:
        """Zero-shot tasks: their single-task models never train."""
        for t in tasks:
            for p in self.models[t].parameters():
                p.requires_grad_(False)


@register_method
class STL(Method):
    name = "stl"
    summary = "one fully fine-tuned model per task (the Delta_m baseline)"

    def build(self, backbone: BackboneSource, tasks: Sequence[str], num_classes: Mapping[str, int] | None = None,
              **options: Any) -> SingleTaskEnsemble:
        check_options(options)
        if isinstance(backbone, torch.nn.Module):  # one given backbone: each task fine-tunes its own copy
            template = backbone
            backbone = lambda: copy.deepcopy(template)  # noqa: E731
        return SingleTaskEnsemble({t: MTLFinetune().build(backbone, [t], num_classes, **options) for t in tasks})
