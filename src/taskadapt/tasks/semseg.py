"""Semantic segmentation: K-way per-pixel classification, cross-entropy with 255 ignored.

:class:`ClassMapTask` is shared with human parts (:class:`taskadapt.tasks.parts.PartsTask`, a
subclass that changes only the defaults of its name, label key, class count and loss weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from taskadapt.data.sample import IGNORE_INDEX
from taskadapt.errors import ConfigError
from taskadapt.tasks.base import TaskKind, TaskSpec, check_shapes, register_task
from taskadapt.tasks.label_checks import ClassMapStats
from taskadapt.tasks.pictures import semseg_to_rgb

if TYPE_CHECKING:
    from torchmetrics import Metric


@register_task
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
    default_loss_weight: float = 1.0
    #: class count used when the caller passes none (None: the caller must say, it varies by dataset)
    default_num_classes: int | None = None
    #: check each batch's labels lie in [0, K) or 255 (one device sync per step; clearer than a CUDA assert)
    check_labels: bool = True

    metric_class_name: ClassVar[str] = "SegmentationMetric"

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

    def label_stats(self, num_classes: int | None = None) -> ClassMapStats:
        """Class ids in [0, K) or 255, classes present (K: ``num_classes``, else ``default_num_classes``)."""
        return ClassMapStats(self.name, num_classes if num_classes is not None else self.num_classes())

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

    def make_metric(self, num_classes: int | None = None, *, boundary_tolerance: float | None = None,
                    exact: bool = True, thin_boundary_targets: bool = False) -> Metric:
        """:class:`~taskadapt.metrics.SegmentationMetric` over K classes, 255 ignored (K: ``num_classes``,
        else ``default_num_classes``; neither is a ConfigError). The boundary options are ignored."""
        k = self.num_classes(num_classes)
        return self.metric_class(k, ignore_index=IGNORE_INDEX)

    def visualize(self, value: torch.Tensor | np.ndarray, num_classes: int | None = None, *,
                  depth_range: tuple[float, float] | None = None) -> np.ndarray:
        """(H, W) class ids -> a fixed colour per class, 255 black.

        K: ``num_classes``, else ``default_num_classes``, else the largest labelled id + 1 (so any
        map can be drawn; pass K to keep colours fixed across pictures).
        """
        k = num_classes if num_classes is not None else self.default_num_classes
        if k is None:
            ids = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            k = int(ids[ids != IGNORE_INDEX].max(initial=0)) + 1
        return semseg_to_rgb(value, k)
