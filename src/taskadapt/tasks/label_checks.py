"""Value checks and running statistics of label maps, one class per kind of label.

``taskadapt data check`` asks each task's spec for a fresh :class:`LabelStats`
(:meth:`TaskSpec.label_stats <taskadapt.tasks.base.TaskSpec.label_stats>`) per split, feeds it every
label map of the split with :meth:`LabelStats.update` (which returns what is wrong with that map, or
None) and shows :meth:`LabelStats.summary` in its table. The kinds, and the tasks that use them:

* :class:`ClassMapStats` -- integer class maps in [0, K) or 255 (semseg, parts);
* :class:`DepthStats` -- metres, finite and > 0 where valid, NaN invalid (depth);
* :class:`UnitVectorStats` -- unit vectors within a tolerance, NaN in all channels together (normals);
* :class:`BinaryStats` -- {0, 1} maps, NaN ignored (edge, saliency).

Labels are numpy arrays in the sample conventions (:mod:`taskadapt.data.sample`) without a batch
dimension: (H, W) for class maps, (C, H, W) for float maps. A :class:`LabelStats` is also a read-only
mapping of its numbers (``stats["pixels"]``, ``stats["valid"]`` and the kind's own, e.g.
``stats["min"]``).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from taskadapt.data.sample import IGNORE_INDEX


def _fmt(values: np.ndarray, limit: int = 5) -> str:
    vals = [f"{v:g}" for v in values[:limit]]
    return ", ".join(vals) + (", ..." if len(values) > limit else "")


class LabelStats(Mapping[str, Any]):
    """Running statistics of one task's label maps over a split, and the check of each map.

    ``numbers`` always holds ``pixels`` (pixels seen) and ``valid`` (pixels labelled); subclasses add
    their own. The mapping interface reads ``numbers``.
    """

    def __init__(self, task: str) -> None:
        self.task = task
        self.numbers: dict[str, Any] = {"pixels": 0, "valid": 0}

    @abc.abstractmethod
    def update(self, label: np.ndarray) -> str | None:
        """Add one label map to the statistics; return what is wrong with its values, or None."""
        ...

    def summary(self) -> str:
        """A short text for a table cell ("not checked" before any pixel was seen)."""
        if not self.numbers["pixels"]:
            return "not checked"
        return self._describe(self.numbers["valid"] / self.numbers["pixels"])

    @abc.abstractmethod
    def _describe(self, valid: float) -> str:
        """The summary given the share of valid pixels (at least one pixel was seen)."""
        ...

    def __getitem__(self, key: str) -> Any:
        return self.numbers[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.numbers)

    def __len__(self) -> int:
        return len(self.numbers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task!r}, {self.numbers!r})"


class ClassMapStats(LabelStats):
    """Integer class map (H, W): values in [0, ``num_classes``) or ``IGNORE_INDEX``; counts the
    classes present."""

    def __init__(self, task: str, num_classes: int) -> None:
        super().__init__(task)
        self.numbers.update(num_classes=num_classes, classes_present=set())

    def update(self, label: np.ndarray) -> str | None:
        s, k = self.numbers, self.numbers["num_classes"]
        valid = label != IGNORE_INDEX
        s["pixels"] += label.size
        s["valid"] += int(valid.sum())
        bad = np.unique(label[valid & ((label < 0) | (label >= k))])
        s["classes_present"].update(int(c) for c in np.unique(label[valid & (label >= 0) & (label < k)]))
        return f"{self.task} values out of range [0, {k}) and not {IGNORE_INDEX}: {_fmt(bad)}" if bad.size else None

    def _describe(self, valid: float) -> str:
        s = self.numbers
        return f"{len(s['classes_present'])}/{s['num_classes']} classes, {valid:.0%} labelled"


class FloatMapStats(LabelStats):
    """Float map (C, H, W) with NaN = ignore: a pixel is valid when none of its channels is NaN."""

    def update(self, label: np.ndarray) -> str | None:
        nan = np.isnan(label)
        valid = ~nan.any(axis=0)
        self.numbers["pixels"] += valid.size
        self.numbers["valid"] += int(valid.sum())
        return self._check(label, nan, valid)

    @abc.abstractmethod
    def _check(self, label: np.ndarray, nan: np.ndarray, valid: np.ndarray) -> str | None:
        """The kind's own check and statistics; ``nan`` (C, H, W), ``valid`` (H, W)."""
        ...


class DepthStats(FloatMapStats):
    """Metres (1, H, W): finite and > 0 where valid; records the smallest and largest depth."""

    def __init__(self, task: str) -> None:
        super().__init__(task)
        self.numbers.update(min=None, max=None)

    def _check(self, label: np.ndarray, nan: np.ndarray, valid: np.ndarray) -> str | None:
        s = self.numbers
        d = label[0][valid]
        if d.size:
            if not np.isfinite(d).all():
                return f"{self.task} has infinite values (use NaN for invalid pixels)"
            if (d <= 0).any():
                return f"{self.task} has {int((d <= 0).sum())} non-positive values where valid (min {d.min():g})"
            s["min"] = float(d.min()) if s["min"] is None else min(s["min"], float(d.min()))
            s["max"] = float(d.max()) if s["max"] is None else max(s["max"], float(d.max()))
        return None

    def _describe(self, valid: float) -> str:
        s = self.numbers
        if s["min"] is None:
            return f"no valid {self.task}"
        return f"{s['min']:.3g}-{s['max']:.3g} m, {valid:.0%} valid"


class UnitVectorStats(FloatMapStats):
    """Unit vectors (C, H, W): NaN in all channels of a pixel or in none, and | |n| - 1 | <= ``tolerance``
    where valid; records the largest deviation from unit length."""

    def __init__(self, task: str, tolerance: float) -> None:
        super().__init__(task)
        self.tolerance = tolerance
        self.numbers.update(max_norm_error=0.0)

    def _check(self, label: np.ndarray, nan: np.ndarray, valid: np.ndarray) -> str | None:
        s, tol = self.numbers, self.tolerance
        partial = nan.any(axis=0) & ~nan.all(axis=0)
        if partial.any():
            return f"{self.task}: {int(partial.sum())} pixels with NaN in some but not all channels"
        norm = np.sqrt((label[:, valid].astype(np.float64) ** 2).sum(axis=0))
        err = np.abs(norm - 1.0)
        if err.size:
            s["max_norm_error"] = max(s["max_norm_error"], float(err.max()))
            if not np.isfinite(norm).all() or (err > tol).any():
                n_bad = int((~np.isfinite(norm) | (err > tol)).sum())
                return (f"{self.task}: {n_bad} valid pixels are not unit vectors (|n| from {norm.min():.3g} "
                        f"to {norm.max():.3g}; tolerance {tol:g})")
        return None

    def _describe(self, valid: float) -> str:
        return f"{valid:.0%} valid"


class BinaryStats(FloatMapStats):
    """{0, 1} map (1, H, W), NaN ignored; counts the positive pixels, called ``positive_name`` in the
    summary."""

    def __init__(self, task: str, positive_name: str) -> None:
        super().__init__(task)
        self.positive_name = positive_name
        self.numbers.update(positive=0)

    def _check(self, label: np.ndarray, nan: np.ndarray, valid: np.ndarray) -> str | None:
        v = label[0][valid]
        self.numbers["positive"] += int((v == 1).sum())
        bad = np.unique(v[(v != 0) & (v != 1)])
        return f"{self.task} values must be 0 or 1 (or NaN), found {_fmt(bad)}" if bad.size else None

    def _describe(self, valid: float) -> str:
        positive = self.numbers["positive"] / max(self.numbers["valid"], 1)
        return f"{positive:.1%} {self.positive_name}, {valid:.0%} valid"


__all__ = ["BinaryStats", "ClassMapStats", "DepthStats", "FloatMapStats", "LabelStats", "UnitVectorStats"]
