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
from taskadapt.distributed import unwrap
from taskadapt.errors import CheckpointError, TaskadaptError
from taskadapt.models import create_model
from taskadapt.models.backbones.pretrained import resolve_weights
from taskadapt.models.network import TaskNetwork
from taskadapt.sharing.hub import checkpoint_from_hub, is_hub_id


def _config_from_meta(meta: dict[str, Any], path: Path, pretrained: str | None = None) -> Config:
    """The run's configuration with ``model.pretrained`` cleared (the checkpoint carries every weight) or
    set to ``pretrained`` (an adapter-only checkpoint's frozen backbone)."""
    layer = meta.get("config")
    if not isinstance(layer, dict):
        raise CheckpointError(f"checkpoint '{path}' has no configuration in its header; it was not written by "
                              "`taskadapt train` -- re-run training or pick another checkpoint")
    layer = {**layer, "model": {**layer.get("model", {}), "pretrained": pretrained}}
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
    #: adapter-only checkpoints: a file (or ``hf-hub:`` id) to take the frozen backbone from instead of the
    #: one the header names (same SHA-256 required)
    backbone_weights: str | os.PathLike | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, backbone_weights: str | os.PathLike | None = None) -> Run:
        """Read the header of ``path`` -- a checkpoint file, or ``hf-hub:OWNER/REPO[@REVISION]`` (its
        ``model.safetensors``, :mod:`taskadapt.sharing.hub`); a missing, corrupt or foreign file is a
        CheckpointError naming it."""
        path = checkpoint_from_hub(str(path)) if is_hub_id(path) else Path(path)
        return cls(path, ckpt.read_meta(path), backbone_weights)

    @property
    def adapters_only(self) -> bool:
        """True for an adapter-only checkpoint: the frozen backbone weights come from their own file."""
        return self.meta.get("contents") == ckpt.ADAPTERS

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
        (default: CPU). An adapter-only checkpoint's frozen backbone is rebuilt from its weights file, whose
        SHA-256 is checked first."""
        model = self.create_network()
        self.load_weights(model)
        return model.to(device or "cpu").eval()

    def create_network(self) -> TaskNetwork:
        """The network of this run before its checkpoint weights are loaded: freshly initialised, except an
        adapter-only checkpoint's frozen backbone, rebuilt from its weights file (SHA-256 checked)."""
        config = self.config
        if self.adapters_only:
            record = self.meta.get("backbone_weights")
            if not isinstance(record, dict):
                raise CheckpointError(f"adapter-only checkpoint '{self.path}' does not say where its backbone "
                                      "weights come from (no 'backbone_weights' in its header); it is corrupt or "
                                      "edited -- use the full checkpoint")
            weights = resolve_weights(self.backbone, record, self.backbone_weights)
            config = _config_from_meta(self.meta, self.path, pretrained=str(weights))
        try:
            model = create_model(config, num_classes=self.num_classes)
        except TaskadaptError as err:
            raise CheckpointError(f"cannot rebuild the model of checkpoint '{self.path}' ({err})") from None
        return model

    def load_weights(self, model: TaskNetwork) -> None:
        """Load this checkpoint's weights into ``model`` with strict key and shape checking. For an adapter-only
        checkpoint, ``model``'s frozen pretrained weights must be the ones it was trained with (digest)."""
        rebuilt: set[str] = set()
        if self.adapters_only:
            rebuilt = unwrap(model).frozen_pretrained_keys()
            self.check_frozen(unwrap(model), rebuilt)
        try:
            ckpt.restore_model(model, self.path, rebuilt)
        except RuntimeError as err:  # load_state_dict: same keys, other shapes
            first = str(err).strip().splitlines()[-1].strip()
            raise CheckpointError(f"checkpoint '{self.path}' does not fit this model ({first}); the file is corrupt "
                                  "or edited, or was trained with another backbone, method or task list") from None

    def check_frozen(self, model: TaskNetwork, keys: set[str]) -> None:
        """The frozen weights ``model`` holds are, bit for bit, those the adapters were trained on."""
        frozen = self.meta.get("frozen") or {}
        state = model.state_dict()
        if len(keys) != frozen.get("tensors") or ckpt.tensor_digest(state, keys) != frozen.get("sha256"):
            raise CheckpointError(
                f"the frozen backbone of this model ({len(keys)} tensors) is not the one adapter-only checkpoint "
                f"'{self.path}' was trained with ({frozen.get('tensors')} tensors, digest "
                f"{str(frozen.get('sha256'))[:12]}...): other backbone weights, size or method. Build the model "
                "from the weights its header names (taskadapt.load does; for train.init_from set model.pretrained "
                "to them), or use the full checkpoint")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the model: the file's, plus for an adapter-only checkpoint the rebuilt backbone's."""
        if self.adapters_only:
            return ckpt.plain_state(self.build_model())
        return ckpt.load_weights(self.path)

    def load_weights_for_tasks(self, model: TaskNetwork) -> list[str]:
        """Start ``model`` from this checkpoint although it predicts other tasks (``train.init_from``):
        tasks both know keep what they learned, new tasks start fresh, tasks only the checkpoint knows are
        dropped (:meth:`TaskNetwork.load_task_state`). Returns the new tasks. The method and the backbone
        must be the same."""
        try:
            return model.load_task_state(self.state_dict(), self.tasks)
        except (ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[-1].strip()
            raise CheckpointError(f"checkpoint '{self.path}' cannot start this model ({first}); start from a "
                                  "checkpoint of the same method and backbone") from None


@dataclass(frozen=True)
class OutputComparison:
    """How far one model's raw outputs are from another's on the same images, per task of the first."""

    images: int
    max_abs_diff: dict[str, float]

    @property
    def identical(self) -> bool:
        return all(v == 0.0 for v in self.max_abs_diff.values())


@torch.no_grad()
def compare_outputs(first: str | os.PathLike | Run, second: str | os.PathLike | Run, images: torch.Tensor,
                    batch_size: int = 32) -> OutputComparison:
    """Run both checkpoints on ``images`` (B, 3, S, S) in [0, 1] and compare every task of ``first``: an
    adapter-only checkpoint against its full one, an extended model's old tasks against the trained model's."""
    a, b = (r if isinstance(r, Run) else Run.open(r) for r in (first, second))
    net_a, net_b = a.build_model(), b.build_model()
    worst = dict.fromkeys(a.tasks, 0.0)
    for chunk in images.split(batch_size):
        out_a, out_b = net_a(chunk), net_b(chunk)
        worst = {t: max(worst[t], float((out_a[t] - out_b[t]).abs().max())) for t in a.tasks}
    return OutputComparison(images.shape[0], worst)


__all__ = ["OutputComparison", "Run", "compare_outputs"]
