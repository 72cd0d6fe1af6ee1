"""Semantic segmentation: K-way per-pixel classification, cross-entropy with 255 ignored.

:class:`ClassMapTask` is shared with human parts (:mod:`taskadapt.tasks.parts`), which differs only
in its name, label key, class count and loss weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from taskadapt.data.sample import IGNORE_INDEX
from taskadapt.errors import ConfigError
from taskadapt.tasks.base import TASKS, TaskKind, TaskSpec, check_shapes


@dataclass(frozen=True)
class ClassMapTask(TaskSpec):
    """Per-pixel classification into ``num_classes`` classes; label (B, H, W) int64, 255 = ignore.

    Loss: mean cross-entropy over the labelled pixels of the whole batch (pixels, not images, are
    averaged, as in ``F.cross_entropy(ignore_index=255)``), but 0 instead of NaN when no pixel is
    labelled. Prediction: ``argmax`` over the class logits -> (B, H, W) int64.
    """

    name: str = "semseg"
    label_key: str = "semseg"
    kind: TaskKind = "classification"
    primary_metric: str = "mIoU"
    higher_is_better: bool = True
    default_loss_weight: float = 1.0
    #: class count used when the caller passes none (None: the caller must say, it varies by dataset)
    default_num_classes: int | None = None
    #: check each batch's labels lie in [0, K) or 255 (one device sync per step; clearer than a CUDA assert)
    check_labels: bool = True

    def __post_init__(self) -> None:
        k = self.default_num_classes
        if k is not None and (not isinstance(k, int) or k < 2):
            raise ConfigError(f"task '{self.name}': default_num_classes must be an int >= 2, got {k!r}")

    def num_classes(self, num_classes: int | None = None) -> int:
        k = num_classes if num_classes is not None else self.default_num_classes
        if k is None:
            raise ConfigError(f"task '{self.name}' needs num_classes (the dataset's class count, e.g. 40 "
                              "for NYUD, 21 for PASCAL-Context); set it in the data config")
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= IGNORE_INDEX:
            raise ConfigError(f"task '{self.name}': num_classes must be an int in "
                              f"[2, {IGNORE_INDEX}], got {k!r}")
        return k

    def out_channels(self, num_classes: int | None = None) -> int:
        return self.num_classes(num_classes)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``pred`` (B, K, H, W) logits, ``target`` (B, H, W) int64 -> scalar."""
        check_shapes(self.name, pred, target, None, None)
        target = target.long()
        k = pred.shape[1]
        valid = target != IGNORE_INDEX
        if self.check_labels:
            bad = valid & ((target < 0) | (target >= k))
            if bool(bad.any()):
                value = int(target[bad][0])
                raise ConfigError(f"task '{self.name}': label value {value} is outside [0, {k}) and is not "
                                  f"{IGNORE_INDEX} (ignore); set num_classes to the dataset's class count, "
                                  "or fix the reader's label mapping")
        # reduction="none" gives exactly 0 (and 0 gradient) at ignored pixels; dividing by the
        # clamped count instead of using "mean" avoids 0/0 = NaN on an all-ignored batch
        per_pixel = F.cross_entropy(pred.float(), target, ignore_index=IGNORE_INDEX, reduction="none")
        return per_pixel.sum() / valid.sum().clamp(min=1)

    def postprocess(self, pred: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) logits -> (B, H, W) int64 class ids."""
        return pred.argmax(dim=1)

    def make_metric(self, num_classes: int | None = None, **kwargs: Any):
        k = self.num_classes(num_classes)  # first, so a missing K is reported as such
        from taskadapt.metrics import SegmentationMetric

        kwargs.setdefault("ignore_index", IGNORE_INDEX)
        return SegmentationMetric(k, **kwargs)

    def visualize(self, value: torch.Tensor | np.ndarray, num_classes: int | None = None) -> np.ndarray:
        return super().visualize(value, num_classes if num_classes is not None else self.default_num_classes)


SEMSEG = TASKS.register("semseg", ClassMapTask())
