"""Input checks shared by the one-channel metrics (depth, saliency, edge)."""

from __future__ import annotations

import torch


def as_bhw(x: torch.Tensor, task: str, name: str) -> torch.Tensor:
    """(B, 1, H, W) or (B, H, W) -> (B, H, W); ``task`` and ``name`` ("preds"/"target") name it in errors."""
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 3:
        return x
    raise ValueError(f"{task} {name} must be (B, 1, H, W) or (B, H, W), got shape {tuple(x.shape)}")


def bhw_pair(preds: torch.Tensor, target: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``preds`` and ``target`` of a one-channel task as (B, H, W) each; ValueError unless same shape."""
    preds = as_bhw(preds, task, "preds")
    target = as_bhw(target, task, "target")
    if preds.shape != target.shape:
        raise ValueError(f"{task} preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
    return preds, target
