"""What each task does on real photographs, in one class per task (edges vs depth).

A :class:`RealProtocol` owns everything task-specific of ``taskadapt eval-real``: the trivial
baselines it runs, the metric objects ("scorers"), how the ground truth is prepared, how one image
is scored and which of two per-image scores is better, the final numbers, the table columns, the
picture-sheet panels and the protocol's lines of ``metrics.json`` and ``report.md``. The flow
(:mod:`.evaluate`) and the tables (:mod:`.report`) look a protocol up in :data:`PROTOCOLS` and never
branch on the task. One instance scores one folder (it keeps that folder's notes, e.g. annotators).

Shapes: photo (H, W, 3) uint8; prediction (H, W) float32; edge target (K, H, W) {0, 1} of K
annotators; depth target (H, W) metres, NaN = no measurement.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from taskadapt.baselines import BASELINES
from taskadapt.errors import ConfigError
from taskadapt.metrics.depth_aligned import ALIGNMENTS, AlignedDepthMetric
from taskadapt.metrics.edges import MultiAnnotatorEdgeMetric, image_scores
from taskadapt.morphology import thin

Baseline = Callable[[np.ndarray], np.ndarray]
#: (title, (H, W, 3) uint8) of one picture-sheet panel
Panel = tuple[str, np.ndarray]
#: (panel label, (H, W) prediction, its per-image scores) of one method shown on a sheet
Shown = tuple[str, np.ndarray, dict[str, float]]


@dataclass(frozen=True)
class RealOptions:
    """The ``eval-real`` options; every protocol gets all of them and reads those that concern it.

    ``edge_tolerance``: edge maxDist as a fraction of the image diagonal (0.0075, BSDS).
    ``thin_gt``: thin edge ground truth to 1-px lines before matching.
    """

    edge_tolerance: float = 0.0075
    thin_gt: bool = True


class RealProtocol(abc.ABC):
    """How one task is scored on real photographs; subclasses fill the class attributes and methods."""

    #: the task of the folders it scores (:data:`taskadapt.data.real.FORMATS`)
    task: ClassVar[str]
    #: (metric key, column header) of its table; a key "a/b" reads ``scores[a][b]``
    columns: ClassVar[list[tuple[str, str]]]

    def __init__(self, options: RealOptions):
        self.options = options

    @classmethod
    def check(cls, options: RealOptions) -> None:
        """Refuse options this protocol cannot use (a ConfigError naming the CLI flag); before any work.

        Nothing to refuse by default."""
        return None

    def baselines(self, input_size: int | None) -> dict[str, Baseline]:
        """Name -> baseline; ``input_size``: the model's square input size (None: no model)."""
        return dict(BASELINES[self.task])

    @abc.abstractmethod
    def scorers(self) -> dict[str, Any]:
        """Fresh metric objects for one method on one folder."""

    def prepare_target(self, target: np.ndarray) -> np.ndarray:
        """The ground truth as scored (and drawn); may note things about the folder."""
        return target

    @abc.abstractmethod
    def score_image(self, scorers: dict[str, Any], pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
        """Update ``scorers`` with one image; return its per-image scores (for the sheet and per_image)."""

    @abc.abstractmethod
    def final(self, scorers: dict[str, Any]) -> dict[str, Any]:
        """The folder's numbers of one method (what its table columns read)."""

    @abc.abstractmethod
    def better(self, a: dict[str, float], b: dict[str, float]) -> bool:
        """Whether per-image scores ``a`` beat ``b`` (picks the image's best baseline for the sheet)."""

    @abc.abstractmethod
    def panels(self, target: np.ndarray, shown: list[Shown]) -> list[Panel]:
        """The sheet panels after the photo: ground truth, then each shown method with its scores."""

    def folder_notes(self) -> dict[str, Any]:
        """Extra entries of the folder's ``metrics.json`` record, gathered while scoring."""
        return {}

    @staticmethod
    def describe_notes(entry: dict[str, Any]) -> str:
        """Text appended to a folder's description (from its ``folder_notes``), e.g. ", 2 annotator(s)"."""
        return ""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """This protocol's record under ``metrics.json["protocol"][task]``."""

    @staticmethod
    @abc.abstractmethod
    def report_row(settings: dict[str, Any]) -> str:
        """Its ``report.md`` line, from :meth:`settings` as stored."""


# ---------------------------------------------------------------------------------- edges


def at_input_size(baseline: Baseline, size: int) -> Baseline:
    """``baseline`` run on the photo resized to ``size`` x ``size`` as the model sees it (bilinear,
    antialiased, squashed), its (size, size) map resized back bilinearly to the photo's (H, W).

    A resolution-matched baseline: it has exactly the model's input pixels, so the gap between it and
    the full-resolution baseline is what the model's input size alone costs."""

    def run(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]  # a copy: writable
        small = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        small_image = small[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        low = torch.from_numpy(np.asarray(baseline(small_image), dtype=np.float32))[None, None]
        return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()

    return run


class EdgeRealProtocol(RealProtocol):
    """ODS-F / OIS-F / AP against all annotators at once (BSDS), GT thinned unless ``thin_gt=False``."""

    task = "edge"
    columns: ClassVar[list[tuple[str, str]]] = [("odsF", "ODS-F ↑"), ("oisF", "OIS-F ↑"), ("AP", "AP ↑")]

    def __init__(self, options: RealOptions):
        super().__init__(options)
        self.annotators: list[int] = []

    @classmethod
    def check(cls, options: RealOptions) -> None:
        if not options.edge_tolerance > 0:
            raise ConfigError(f"--edge-tolerance must be > 0 (a fraction of the image diagonal), "
                              f"got {options.edge_tolerance}")

    def baselines(self, input_size: int | None) -> dict[str, Baseline]:
        """With a model, each baseline also runs at the model's input size (``sobel@112px``)."""
        found = super().baselines(input_size)
        if input_size is not None:
            full = BASELINES[self.task]
            found.update({f"{n}@{input_size}px": at_input_size(fn, input_size) for n, fn in full.items()})
        return found

    def scorers(self) -> dict[str, Any]:
        return {"edge": MultiAnnotatorEdgeMetric(tolerance=self.options.edge_tolerance)}

    def prepare_target(self, target: np.ndarray) -> np.ndarray:
        """(K, H, W) maps, thinned to 1 px each when ``thin_gt`` (a wide GT band needs a wide prediction
        otherwise: matching is one-to-one); counts the annotators."""
        self.annotators.append(int(target.shape[0]))
        return np.stack([thin(m) for m in target]) if self.options.thin_gt else target

    def score_image(self, scorers: dict[str, Any], pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
        m = scorers["edge"]
        m.update(torch.from_numpy(np.asarray(pred, dtype=np.float32)), torch.from_numpy(target.astype(np.float32)))
        return image_scores(m.last_counts, m.thresholds)

    def final(self, scorers: dict[str, Any]) -> dict[str, Any]:
        return {k: float(v) for k, v in scorers["edge"].compute().items()}

    def better(self, a: dict[str, float], b: dict[str, float]) -> bool:
        """Higher best F of the image."""
        return a["F"] > b["F"]

    @staticmethod
    def caption(label: str, scores: dict[str, float]) -> str:
        return f"{label}\nF {scores['F']:.3f} (t={scores['threshold']:.2f}), AP {scores['AP']:.3f}"

    def panels(self, target: np.ndarray, shown: list[Shown]) -> list[Panel]:
        from taskadapt.viz import edge_to_rgb

        out = [(f"ground truth: mean of {target.shape[0]} annotator(s)", edge_to_rgb(target.mean(axis=0)))]
        return out + [(self.caption(label, scores), edge_to_rgb(pred)) for label, pred, scores in shown]

    def folder_notes(self) -> dict[str, Any]:
        a = self.annotators
        return {"annotators": {"min": min(a), "max": max(a), "total": sum(a)}} if a else {}

    @staticmethod
    def describe_notes(entry: dict[str, Any]) -> str:
        a = entry.get("annotators")
        if not a:
            return ""
        span = str(a["min"]) if a["min"] == a["max"] else f"{a['min']}-{a['max']}"
        return f", {span} annotator(s) per image"

    def settings(self) -> dict[str, Any]:
        return {"tolerance": self.options.edge_tolerance, "unit": "fraction of the image diagonal", "thresholds": 99,
                "matcher": "exact one-to-one (max-cardinality bipartite), all annotators at once",
                "thin_predictions": True, "thin_gt": self.options.thin_gt}

    @staticmethod
    def report_row(settings: dict[str, Any]) -> str:
        e = settings
        return (f"| edges | ODS-F / OIS-F / AP against all annotators at once, exact one-to-one matching, maxDist "
                f"{e['tolerance']} of the diagonal, {e['thresholds']} thresholds, predictions thinned, "
                f"GT {'thinned' if e['thin_gt'] else 'as stored'} |")


# ---------------------------------------------------------------------------------- depth


class DepthRealProtocol(RealProtocol):
    """Per-image scale (least squares; median), then SILog, AbsRel, RMSE, δ on valid pixels, mean over images.

    Scores are keyed ``"<alignment>/<metric>"`` per image and ``{alignment: {metric: value}}`` per folder.
    """

    task = "depth"
    columns: ClassVar[list[tuple[str, str]]] = [
        ("lsq/silog", "SILog ↓"), ("lsq/abs_rel", "AbsRel ↓ (LSQ)"), ("lsq/delta1", "δ<1.25 ↑ (LSQ)"),
        ("median/abs_rel", "AbsRel ↓ (median)"), ("median/delta1", "δ<1.25 ↑ (median)")]

    def scorers(self) -> dict[str, Any]:
        # baselines need no resolution-matched twin: a depth baseline does not depend on the resolution
        return {a: AlignedDepthMetric(alignment=a) for a in ALIGNMENTS}

    def score_image(self, scorers: dict[str, Any], pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        for alignment, m in scorers.items():
            m.update(torch.from_numpy(np.asarray(pred, dtype=np.float32)), torch.from_numpy(target))
            out.update({f"{alignment}/{k}": v for k, v in (m.last_errors or {}).items()})
        return out

    def final(self, scorers: dict[str, Any]) -> dict[str, Any]:
        return {a: {k: float(v) for k, v in m.compute().items()} for a, m in scorers.items()}

    def better(self, a: dict[str, float], b: dict[str, float]) -> bool:
        """Lower LSQ AbsRel of the image (an image with no valid pixel never wins)."""
        return a.get("lsq/abs_rel", np.inf) < b.get("lsq/abs_rel", np.inf)

    @staticmethod
    def caption(label: str, scores: dict[str, float]) -> str:
        if "lsq/abs_rel" not in scores:
            return f"{label}\n(no valid pixel)"
        return (f"{label} (x{scores['lsq/scale']:.3g}, LSQ)\nAbsRel {scores['lsq/abs_rel']:.3f}, "
                f"δ1 {scores['lsq/delta1']:.3f}, SILog {scores['lsq/silog']:.3f}")

    def panels(self, target: np.ndarray, shown: list[Shown]) -> list[Panel]:
        """All on the GT's 2nd-98th percentile scale, predictions times their LSQ scale, so they compare."""
        from taskadapt.viz import depth_to_rgb

        valid = np.isfinite(target)
        lo, hi = np.percentile(target[valid], [2, 98]) if valid.any() else (0.0, 1.0)
        grey = (128, 128, 128)
        out = [(f"ground truth, {lo:.2f}-{hi:.2f} m\n(grey = no measurement)",
                depth_to_rgb(target, lo, hi, invalid=grey))]
        for label, pred, scores in shown:
            aligned = pred * scores.get("lsq/scale", 1.0)
            out.append((self.caption(label, scores), depth_to_rgb(aligned, lo, hi, invalid=grey)))
        return out

    def settings(self) -> dict[str, Any]:
        return {"alignments": list(ALIGNMENTS), "aggregation": "mean over images", "min_depth": 1e-3,
                "silog": "sqrt(mean(g^2) - mean(g)^2), g = ln q - ln d, natural log, not x100"}

    @staticmethod
    def report_row(settings: dict[str, Any]) -> str:
        return ("| depth | per-image scale (least squares; median), then SILog (natural log, not x100), AbsRel, "
                "δ<1.25 on valid pixels, mean over images |")


#: task -> its protocol class (the order of the protocol lines in metrics.json and report.md)
PROTOCOLS: dict[str, type[RealProtocol]] = {p.task: p for p in (EdgeRealProtocol, DepthRealProtocol)}


def protocol_for(task: str) -> type[RealProtocol]:
    """The protocol class of ``task``; a task with none is a ConfigError."""
    if task not in PROTOCOLS:
        raise ConfigError(f"no real-photo protocol for task '{task}'; eval-real scores {', '.join(PROTOCOLS)}")
    return PROTOCOLS[task]


__all__ = ["PROTOCOLS", "DepthRealProtocol", "EdgeRealProtocol", "RealOptions", "RealProtocol", "at_input_size",
           "protocol_for"]
