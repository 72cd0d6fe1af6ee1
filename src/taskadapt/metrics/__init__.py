"""Dense-prediction metrics as ``torchmetrics.Metric`` subclasses with fixed-size "sum" states.

Every metric accumulates dataset-level sums (confusion matrices, error sums, histograms, per-threshold
counts), so results never depend on the batch size and DDP synchronisation is exact. Each class has
``primary`` (the metric used for Delta_m and model selection), ``directions`` (metric name -> higher
is better) and ``shown`` (what a summary table shows, primary first); the task specs of
:mod:`taskadapt.tasks` read these, they never copy them.

Nothing here imports :mod:`taskadapt.tasks` (the tasks import this package lazily), so the import
graph stays acyclic.
"""

from __future__ import annotations

from taskadapt.metrics.delta_m import DeltaM, delta_m, load_baseline, save_baseline, validate_baseline
from taskadapt.metrics.depth import DepthMetric
from taskadapt.metrics.depth_aligned import AlignedDepthMetric
from taskadapt.metrics.edges import EdgeMetric, MultiAnnotatorEdgeMetric
from taskadapt.metrics.normals import NormalsMetric
from taskadapt.metrics.saliency import SaliencyMetric
from taskadapt.metrics.segmentation import SegmentationMetric

__all__ = [
    "AlignedDepthMetric",
    "DeltaM",
    "DepthMetric",
    "EdgeMetric",
    "MultiAnnotatorEdgeMetric",
    "NormalsMetric",
    "SaliencyMetric",
    "SegmentationMetric",
    "delta_m",
    "load_baseline",
    "save_baseline",
    "validate_baseline",
]
