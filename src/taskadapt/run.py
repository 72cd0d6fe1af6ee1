"""A trained run as one object: a checkpoint's header read once, and the model it describes rebuilt.

    run = Run.open("runs/scenes/checkpoints/best.safetensors")
    run.config, run.tasks, run.num_classes, run.method, run.step
    model = run.build_model()          # weights loaded with strict key and shape checking

Used by ``taskadapt.load`` (:mod:`taskadapt.api`), evaluation, the protocols (compare, settings), the
affinity report, and the trainer (classes carried over by ``train.init_from``; ``--resume``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskadapt import checkpoint as ckpt
from taskadapt.config import Config, build_config
from taskadapt.errors import CheckpointError, TaskadaptError
from taskadapt.models import create_model
from taskadapt.models.network import TaskNetwork


def _config_from_meta(meta: dict[str, Any], path: Path) -> Config:
    """The run's configuration with ``model.pretrained`` cleared: the checkpoint carries every weight."""
    layer = meta.get("config")
    if not isinstance(layer, dict):
        raise CheckpointError(f"checkpoint '{path}' has no configuration in its header; it was not written by "
                              "`taskadapt train` -- re-run training or pick another checkpoint")
    layer = {**layer, "model": {**layer.get("model", {}), "pretrained": None}}
    try:
        return build_config(layer)
    except TaskadaptError as err:
        raise CheckpointError(f"the configuration stored in checkpoint '{path}' is not valid for this taskadapt "
                              f"({err}); it was written by another version -- use that version or retrain") from None


@dataclass
class Run:
    """A checkpoint written by ``taskadapt train``: ``path`` and its JSON header ``meta``.

    Properties read the header: ``config`` (with ``model.pretrained`` cleared), ``tasks`` (predicted),
    ``num_classes``, ``class_names`` (as stored), ``method``, ``backbone``, ``step``, ``affinity`` (the TROA
    matrix or None) and ``input_size``; ``meta`` holds the rest (metrics, versions, trained tasks).
    """

    path: Path
    meta: dict[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike) -> Run:
        """Read the header of ``path``; a missing, corrupt or foreign file is a CheckpointError naming it."""
        path = Path(path)
        return cls(path, ckpt.read_meta(path))

    @cached_property
    def config(self) -> Config:
        return _config_from_meta(self.meta, self.path)

    @property
    def tasks(self) -> list[str]:
        return list(self.meta.get("tasks") or self.config.model_tasks())

    @property
    def num_classes(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in (self.meta.get("num_classes") or {}).items()}

    @property
    def class_names(self) -> dict[str, list[str]]:
        stored = self.meta.get("class_names")
        if not isinstance(stored, dict):
            return {}
        return {str(t): [str(n) for n in v] for t, v in stored.items() if isinstance(v, list)}

    @property
    def method(self) -> str:
        return str(self.meta.get("method"))

    @property
    def backbone(self) -> str:
        return str(self.meta.get("backbone"))

    @property
    def step(self) -> int:
        return int(self.meta.get("step") or 0)

    @property
    def affinity(self) -> np.ndarray | None:
        value = self.meta.get("affinity")
        return None if value is None else np.asarray(value, dtype=np.float64)

    @property
    def input_size(self) -> int:
        """The square side the model runs at."""
        return int(self.config.model.img_size or self.config.data.crop_size)

    def build_model(self, device: str | torch.device | None = None) -> TaskNetwork:
        """The network of this run with the checkpoint's weights (strict), in eval mode, on ``device``
        (default: CPU)."""
        try:
            model = create_model(self.config, num_classes=self.num_classes)
        except TaskadaptError as err:
            raise CheckpointError(f"cannot rebuild the model of checkpoint '{self.path}' ({err})") from None
        self.load_weights(model)
        return model.to(device or "cpu").eval()

    def load_weights(self, model: torch.nn.Module) -> None:
        """Load this checkpoint's weights into ``model`` with strict key and shape checking."""
        try:
            ckpt.restore_model(model, self.path)
        except RuntimeError as err:  # load_state_dict: same keys, other shapes
            first = str(err).strip().splitlines()[-1].strip()
            raise CheckpointError(f"checkpoint '{self.path}' does not fit this model ({first}); the file is corrupt "
                                  "or edited, or was trained with another backbone, method or task list") from None

    def load_weights_for_tasks(self, model: TaskNetwork) -> list[str]:
        """Start ``model`` from this checkpoint although it predicts other tasks (``train.init_from``):
        tasks both know keep what they learned, new tasks start fresh, tasks only the checkpoint knows are
        dropped (:meth:`TaskNetwork.load_task_state`). Returns the new tasks. The method and the backbone
        must be the same."""
        try:
            return model.load_task_state(ckpt.load_weights(self.path), self.tasks)
        except (ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[-1].strip()
            raise CheckpointError(f"checkpoint '{self.path}' cannot start this model ({first}); start from a "
                                  "checkpoint of the same method and backbone") from None


__all__ = ["Run"]
