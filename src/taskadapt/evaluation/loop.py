"""Evaluate a model on a loader: per-task metrics at the labels' resolution, and the mean loss.

Predictions are made at the model's input size and upsampled to each label's own size before the
metric sees them (the field evaluates at the original resolution). Metrics are the DDP-summable
ones of :mod:`taskadapt.metrics`, so a sharded evaluation gives the single-process numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from taskadapt.losses import MultiTaskLoss
from taskadapt.tasks import get_task


def _to_size(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if pred.shape[-2:] == size:
        return pred
    return F.interpolate(pred, size=size, mode="bilinear", align_corners=False)


def make_metrics(tasks: Iterable[str], num_classes: Mapping[str, int], edge_exact: bool = True,
                 edge_tolerance: float | None = None, edge_thin_targets: bool = False) -> dict:
    """task -> a fresh metric; boundary tasks match at ``edge_tolerance`` (None: the metric's default),
    exactly or approximately."""
    return {task: get_task(task).make_metric(num_classes.get(task), boundary_tolerance=edge_tolerance,
                                             thin_boundary_targets=edge_thin_targets,
                                             exact=edge_exact) for task in tasks}


class OnDevice(torch.nn.Module):
    """Feeds the CPU batches of the eval loader to a model on any device and returns float32 CPU
    predictions, so the metrics (which keep their states on the CPU, next to the labels) work whatever
    the device."""

    def __init__(self, model: torch.nn.Module, device: torch.device | str):
        super().__init__()
        self.model, self.device = model, torch.device(device)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        preds = self.model(image.to(self.device, non_blocking=True))
        return {k: v.float().cpu() for k, v in preds.items()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Iterable[dict], tasks: list[str], num_classes: Mapping[str, int],
             loss_fn: MultiTaskLoss | None = None, edge_exact: bool = True, edge_tolerance: float | None = None,
             edge_thin_targets: bool = False,
             progress: bool = False, description: str = "evaluating") -> dict:
    """Returns ``{"metrics": {task: {name: float}}, "per_class": {task: {name: [float per class]}},
    "loss": float | None, "images": int}`` (``per_class``: the metrics' vector values, e.g. segmentation IoU)."""
    was_training = model.training
    model.eval()
    metrics = make_metrics(tasks, num_classes, edge_exact, edge_tolerance, edge_thin_targets)
    specs = {t: get_task(t) for t in tasks}
    loss_sum, loss_images, images = 0.0, 0, 0
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeRemainingColumn(), disable=not progress, transient=True)
    with bar:
        job = bar.add_task(description, total=len(loader) if hasattr(loader, "__len__") else None)
        device = next(model.parameters()).device
        for batch in loader:
            out = model(batch["image"].to(device))
            preds = {t: out[t].float().cpu() for t in tasks}  # a zero-shot model may predict more tasks
            images += batch["image"].shape[0]
            if loss_fn is not None and all(isinstance(batch.get(specs[t].label_key), torch.Tensor)
                                           for t in tasks if specs[t].label_key in batch):
                same_size = {t: _to_size(p, batch[specs[t].label_key].shape[-2:])
                             for t, p in preds.items() if specs[t].label_key in batch}
                if same_size:
                    n = batch["image"].shape[0]
                    loss_sum += float(loss_fn(same_size, batch).total) * n
                    loss_images += n
            for task, pred in preds.items():
                target = batch.get(specs[task].label_key)
                if target is None:
                    continue
                targets = target if isinstance(target, list) else list(target)
                for i, t in enumerate(targets):
                    p = specs[task].postprocess(_to_size(pred[i:i + 1], t.shape[-2:]))
                    metrics[task].update(p, t.unsqueeze(0))
            bar.advance(job)
    if dist.is_available() and dist.is_initialized():
        # each rank saw its shard: sum the loss and the counts; the metrics sync their states in compute()
        packed = torch.tensor([loss_sum, loss_images, images], dtype=torch.float64)
        dist.all_reduce(packed)
        loss_sum, loss_images, images = float(packed[0]), int(packed[1]), int(packed[2])
    results, per_class = {}, {}
    for task, metric in metrics.items():
        values = metric.compute()
        results[task] = {k: float(v) for k, v in values.items() if v.ndim == 0}
        vectors = {k: [float(x) for x in v] for k, v in values.items() if v.ndim == 1}  # e.g. IoU per class
        if vectors:
            per_class[task] = vectors
    model.train(was_training)
    return {"metrics": results, "per_class": per_class, "loss": loss_sum / loss_images if loss_images else None,
            "images": images}
