"""The task contract: everything task-specific (label key, loss, ignore rule, post-processing,
metric, visualisation) lives in one :class:`TaskSpec` per task, registered in :data:`TASKS`.

Models, trainers and evaluators never branch on task names; they ask the spec. Shapes below use
B = batch, C = the task's ``out_channels``, (H, W) = the label resolution.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from taskadapt.data.sample import INTEGER_LABELS, valid_mask
from taskadapt.errors import ConfigError
from taskadapt.registry import Registry

TaskKind = Literal["classification", "regression", "binary"]

#: every task, by name; ``get_task``/``list_tasks`` in :mod:`taskadapt.tasks` read it
TASKS: Registry[TaskSpec] = Registry("task")


@dataclass(frozen=True)
class TaskSpec(abc.ABC):
    """One dense-prediction task. Subclasses fill the fields and implement the methods.

    Fields:
        name: registry name (``"semseg"``).
        label_key: the sample key holding the label (:mod:`taskadapt.data.sample`).
        kind: ``"classification"`` (integer class map, 255 ignore), ``"regression"`` (float map,
            NaN ignore) or ``"binary"`` (float {0, 1} map predicted as a logit, NaN ignore).
        primary_metric: key of the metric's ``compute()`` dict used for model selection and Δm.
        higher_is_better: direction of ``primary_metric``.
        default_loss_weight: lambda_t in the weighted total loss (method.md §7).

    Options (task-specific dataclass fields such as ``depth_loss``) are changed with
    :meth:`configure`, which returns a new spec.
    """

    name: str
    label_key: str
    kind: TaskKind
    primary_metric: str
    higher_is_better: bool
    default_loss_weight: float

    #: fields that are identity, not options (``configure`` refuses to change them)
    _FIXED: ClassVar[tuple[str, ...]] = ("name", "label_key", "kind", "primary_metric", "higher_is_better")

    # -- structure -------------------------------------------------------------------------

    @abc.abstractmethod
    def out_channels(self, num_classes: int | None = None) -> int:
        """Channels of the raw head output (C)."""
        ...

    @property
    def ignore_value(self) -> float:
        """255 for integer label maps, NaN for float ones (the sample conventions)."""
        return 255.0 if self.label_key in INTEGER_LABELS else float("nan")

    def valid_mask(self, target: torch.Tensor) -> torch.Tensor:
        """Labelled pixels of a batched target: (B, H, W) or (B, C, H, W) -> (B, H, W) bool."""
        return valid_mask(self.label_key, target)

    # -- training --------------------------------------------------------------------------

    @abc.abstractmethod
    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of raw head output (B, C, H, W) against the batched label.

        Ignored pixels contribute nothing (zero gradient). With no valid pixel in the batch the
        loss is an exact 0 that still carries a graph (``.backward()`` works, gradients are 0).
        """
        ...

    @abc.abstractmethod
    def postprocess(self, pred: torch.Tensor) -> torch.Tensor:
        """Raw head output (B, C, H, W) -> prediction in the sample conventions (batched)."""
        ...

    # -- evaluation ------------------------------------------------------------------------

    @abc.abstractmethod
    def make_metric(self, num_classes: int | None = None, **kwargs: Any):
        """A fresh ``torchmetrics.Metric`` fed with ``update(postprocess(pred), target)``."""
        ...

    def visualize(self, value: torch.Tensor | np.ndarray, num_classes: int | None = None) -> np.ndarray:
        """One label or post-processed prediction (no batch dim) -> (H, W, 3) uint8 picture."""
        from taskadapt.viz import label_to_rgb

        return label_to_rgb(self.label_key, value, num_classes)

    # -- options ---------------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """The changeable fields and their current values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self._FIXED}

    def configure(self, **options: Any) -> TaskSpec:
        """A copy with some options changed, e.g. ``get_task("depth").configure(depth_loss="berhu")``.

        Unknown option names raise :class:`ConfigError` with a did-you-mean hint; values are
        checked by the subclass's ``__post_init__``.
        """
        known = self.options()
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else "."
                raise ConfigError(f"unknown option '{key}' for task '{self.name}'{hint} "
                                  f"Available: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **options)


# ----------------------------------------------------------------------------------------------
# helpers shared by the task modules


def check_choice(task: str, option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"task '{task}': {option} must be one of {', '.join(choices)}, got {value!r}")


def check_shapes(task: str, pred: torch.Tensor, target: torch.Tensor, channels: int | None,
                 target_channels: int | None) -> None:
    """Validate ``pred`` (B, C, H, W) against a batched target.

    ``target_channels=None`` means an integer class map (B, H, W); otherwise (B, Ct, H, W).
    Mismatches are programming errors in the model or the collate step, hence ``ValueError``.
    """
    want_pred = f"(B, {channels if channels is not None else 'C'}, H, W)"
    if pred.dim() != 4 or (channels is not None and pred.shape[1] != channels):
        raise ValueError(f"task '{task}': prediction must be {want_pred}, got {tuple(pred.shape)}")
    want_t = "(B, H, W)" if target_channels is None else f"(B, {target_channels}, H, W)"
    ok = target.dim() == (3 if target_channels is None else 4)
    if ok and target_channels is not None:
        ok = target.shape[1] == target_channels
    if not ok:
        raise ValueError(f"task '{task}': target must be {want_t}, got {tuple(target.shape)}")
    if pred.shape[0] != target.shape[0] or pred.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"task '{task}': prediction {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "differ in batch size or resolution; upsample the head output to the label size")


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``valid`` elements (same shape); 0 (with graph) when none is valid.

    ``torch.where`` (not multiplication) so NaN/inf at ignored elements cannot leak into the
    value or the gradient.
    """
    total = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    return total / valid.sum().clamp(min=1)


__all__ = ["TASKS", "TaskKind", "TaskSpec", "check_choice", "check_shapes", "masked_mean"]
