"""Multitask loss: the weighted sum of the tasks' own losses (kept apart from the architecture).

Each task's loss, with its ignore handling, lives in its :mod:`taskadapt.tasks` spec; this module
only weights and sums them and records which tasks had labels in the batch (TROA needs both).
Default weights follow the field's NYUD setting (method.md §7): semseg 1, depth 1, normals 10,
edge 50; PASCAL's parts 2 and saliency 5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from taskadapt.data.sample import valid_mask
from taskadapt.tasks import get_task


@dataclass
class LossOutput:
    """``total`` (scalar), ``per_task`` {task: scalar (detached)}, ``weights`` (T,) as used,
    ``present`` (T,) bool: the task had at least one labelled pixel in the batch."""

    total: torch.Tensor
    per_task: dict[str, torch.Tensor]
    weights: torch.Tensor
    present: torch.Tensor


class MultiTaskLoss(nn.Module):
    """``sum_t lambda_t L_t`` over the tasks whose labels are in the batch."""

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None):
        super().__init__()
        self.tasks = list(tasks)
        self.specs = {t: get_task(t) for t in self.tasks}
        weights = dict(weights or {})
        self.weights = {t: float(weights.get(t, self.specs[t].default_loss_weight)) for t in self.tasks}

    def forward(self, preds: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> LossOutput:
        """preds: {task: (B, C_t, H, W) raw outputs}; batch: sample dict batch with label keys."""
        ref = next(iter(preds.values()))
        total = ref.new_zeros(())
        per_task: dict[str, torch.Tensor] = {}
        present = []
        for task in self.tasks:
            spec = self.specs[task]
            target = batch.get(spec.label_key)
            has = target is not None and bool(valid_mask(spec.label_key, target).any())
            present.append(has)
            if not has:
                continue
            loss = spec.loss(preds[task], target)
            per_task[task] = loss.detach()
            total = total + self.weights[task] * loss
        weights = torch.tensor([self.weights[t] for t in self.tasks], device=ref.device)
        return LossOutput(total, per_task, weights, torch.tensor(present, device=ref.device))
