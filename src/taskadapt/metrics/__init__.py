"""Dense-prediction metrics as ``torchmetrics.Metric`` subclasses with fixed-size "sum" states.

Every metric accumulates dataset-level sums (confusion matrices, error sums, histograms, per-threshold
counts), so results never depend on the batch size and DDP synchronisation is exact. Each class has
``primary`` (the metric used for Delta_m) and ``directions`` (metric name -> higher is better).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torchmetrics import Metric

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
    "MultiTaskMetrics",
    "NormalsMetric",
    "SaliencyMetric",
    "SegmentationMetric",
    "delta_m",
    "load_baseline",
    "save_baseline",
    "validate_baseline",
]


class MultiTaskMetrics(nn.Module):
    """A dict of task -> metric, updated from dicts of predictions and targets.

    Usage::

        m = MultiTaskMetrics({"semseg": SegmentationMetric(3), "depth": DepthMetric()})
        m.update(preds, targets)  # tasks absent from ``targets`` are skipped
        m.compute()               # {"semseg": {"mIoU": ..., ...}, "depth": {...}}, updated tasks only

    An ``nn.Module`` so that ``.to(device)`` moves every metric's states.
    """

    def __init__(self, metrics: Mapping[str, Metric]):
        super().__init__()
        self.metrics = nn.ModuleDict(dict(metrics))

    def __getitem__(self, task: str) -> Metric:
        return self.metrics[task]

    def __contains__(self, task: object) -> bool:
        return task in self.metrics

    def tasks(self) -> list[str]:
        return list(self.metrics.keys())

    def update(self, preds: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> None:
        for task, metric in self.metrics.items():
            if task not in targets:
                continue
            if task not in preds:
                raise KeyError(f"targets have task '{task}' but predictions do not (have: {sorted(preds)})")
            metric.update(preds[task], targets[task])

    def compute(self) -> dict[str, dict[str, torch.Tensor]]:
        """Results of every task that received at least one update."""
        return {task: m.compute() for task, m in self.metrics.items() if m.update_count > 0}

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()

    def primary(self) -> dict[str, str]:
        """task -> name of its primary metric."""
        return {task: m.primary for task, m in self.metrics.items()}
