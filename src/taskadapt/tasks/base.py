"""The task contract: everything task-specific (label key, loss, ignore rule, post-processing,
metric, visualisation) lives in one :class:`TaskSpec` per task, registered in :data:`TASKS` with
:func:`register_task` where the spec class is defined.

Models, trainers and evaluators never branch on task names; they ask the spec. Shapes below use
B = batch, C = the task's ``out_channels``, (H, W) = the label resolution.

Facts about a task's metric (its primary metric, directions, the metrics a table shows) have one
owner, the metric class in :mod:`taskadapt.metrics`; the spec names that class and reads it. The
import is lazy so that ``import taskadapt.tasks`` does not pull in torchmetrics and scipy (the CLI
and the models need the specs, not the metrics); :mod:`taskadapt.metrics` never imports this
package, so the graph stays acyclic.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np
import torch

from taskadapt.data.sample import INTEGER_LABELS, valid_mask
from taskadapt.errors import ConfigError
from taskadapt.registry import Registry

if TYPE_CHECKING:
    from torchmetrics import Metric

    from taskadapt.tasks.label_checks import LabelStats

TaskKind = Literal["classification", "regression", "binary"]


@dataclass(frozen=True)
class TaskSpec(abc.ABC):
    """One dense-prediction task. Subclasses fill the fields and implement the methods.

    Fields:
        name: registry name (``"semseg"``).
        label_key: the sample key holding the label (:mod:`taskadapt.data.sample`).
        kind: ``"classification"`` (integer class map, 255 ignore), ``"regression"`` (float map,
            NaN ignore) or ``"binary"`` (float {0, 1} map predicted as a logit, NaN ignore).
        default_loss_weight: lambda_t in the weighted total loss (method.md §7).

    Class attributes (identity, not options):
        metric_class_name: the class of :mod:`taskadapt.metrics` that scores the task; the read-only
            properties :attr:`primary_metric`, :attr:`higher_is_better`, :attr:`directions` and
            :attr:`shown_metrics` read it.
        positive_name: what a positive pixel of a binary task is called in summaries (``"edge"``).

    Options (task-specific dataclass fields such as ``depth_loss``) are changed with
    :meth:`configure`, which returns a new spec.
    """

    name: str
    label_key: str
    kind: TaskKind
    default_loss_weight: float

    metric_class_name: ClassVar[str]
    positive_name: ClassVar[str] = "positive"
    #: the metric matches predicted and true boundaries within a tolerance (``make_metric``'s
    #: ``boundary_tolerance``; the dataset format sets it, reports state it)
    matches_boundaries: ClassVar[bool] = False

    #: fields that are identity, not options (``configure`` refuses to change them)
    _FIXED: ClassVar[tuple[str, ...]] = ("name", "label_key", "kind")

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

    @abc.abstractmethod
    def label_stats(self, num_classes: int | None = None) -> LabelStats:
        """Fresh statistics for checking this task's labels over a split (``taskadapt data check``).

        ``update(label)`` takes one label map (numpy, no batch dim) and returns what is wrong with its
        values or None; ``summary()`` is the table text. The kinds live in
        :mod:`taskadapt.tasks.label_checks`. ``num_classes``: K of class-map tasks (the dataset's).
        """
        ...

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

    @property
    def metric_class(self) -> type[Metric]:
        """The metric class named by ``metric_class_name``."""
        import taskadapt.metrics  # lazy: keeps torchmetrics and scipy out of `import taskadapt.tasks`

        return getattr(taskadapt.metrics, self.metric_class_name)

    @property
    def primary_metric(self) -> str:
        """Key of the metric's ``compute()`` dict used for model selection and Δm."""
        return self.metric_class.primary

    @property
    def directions(self) -> dict[str, bool]:
        """Metric name -> higher is better (a copy of the metric class's ``directions``)."""
        return dict(self.metric_class.directions)

    @property
    def higher_is_better(self) -> bool:
        """Direction of :attr:`primary_metric`."""
        return bool(self.metric_class.directions[self.primary_metric])

    @property
    def shown_metrics(self) -> tuple[str, ...]:
        """The metrics a summary table shows for the task, primary first."""
        return tuple(self.metric_class.shown)

    def make_metric(self, num_classes: int | None = None, *, boundary_tolerance: float | None = None,
                    exact: bool = True, thin_boundary_targets: bool = False) -> Metric:
        """A fresh ``metric_class`` instance fed with ``update(postprocess(pred), target)``.

        Every task takes the same arguments, so callers never branch on the task; each uses only
        what concerns it. ``num_classes``: K of class-map tasks. ``boundary_tolerance``: maxDist
        of boundary matching as a fraction of the image diagonal (None: the metric's default).
        ``exact``: exact one-to-one boundary matching (False: the approximate matcher).
        ``thin_boundary_targets``: thin true boundaries to 1 px before matching (datasets whose boundary
        labels are wider, as NYUD's).
        """
        return self.metric_class()

    @abc.abstractmethod
    def visualize(self, value: torch.Tensor | np.ndarray, num_classes: int | None = None, *,
                  depth_range: tuple[float, float] | None = None) -> np.ndarray:
        """One label or post-processed prediction (no batch dim) -> (H, W, 3) uint8 picture.

        Every task takes the same arguments (as for :meth:`make_metric`); each uses only what
        concerns it. ``num_classes``: K of class-map tasks (fixed colours). ``depth_range``:
        (near, far) metres of the colour scale (None: the map's own 2nd-98th percentiles).
        Ignored pixels are black (:mod:`taskadapt.tasks.pictures`).
        """
        ...

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


#: every task, by name; ``get_task``/``list_tasks`` in :mod:`taskadapt.tasks` read it
TASKS: Registry[TaskSpec] = Registry("task")

SpecT = TypeVar("SpecT", bound=TaskSpec)


def register_task(cls: type[SpecT]) -> type[SpecT]:
    """Class decorator: register an instance of the spec class (its default options) under its ``name``.

    Used where each spec class is defined, like ``@register_backbone``; a task that reuses another's
    behaviour with other defaults is a subclass with its own field defaults (``PartsTask``).
    """
    spec = cls()
    TASKS.register(spec.name, spec)
    return cls


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


__all__ = ["TASKS", "TaskKind", "TaskSpec", "check_choice", "check_shapes", "masked_mean", "register_task"]
