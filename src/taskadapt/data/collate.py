"""Batching sample dicts (training and evaluation loaders alike)."""

from __future__ import annotations

import torch


def collate(samples: list[dict]) -> dict:
    """Stack tensors; keep ``meta`` as a list of dicts. Labels whose sizes differ between samples
    (evaluation at the original resolution of a variable-size dataset) stay lists of tensors."""
    out: dict = {"meta": [s.get("meta", {}) for s in samples]}
    for key in samples[0]:
        if key == "meta":
            continue
        values = [s[key] for s in samples]
        same = all(v.shape == values[0].shape for v in values)
        out[key] = torch.stack(values) if same else values
    return out
