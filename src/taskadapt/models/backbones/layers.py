"""Small pieces the backbone families share (timm's parameter names)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from taskadapt.errors import ConfigError


def to_pair(x: int | Sequence[int]) -> tuple[int, int]:
    """``7 -> (7, 7)``; ``(h, w) -> (h, w)``."""
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def per_stage(value, num_stages: int, what: str, family: str) -> tuple:
    """A scalar repeated for every stage, or a sequence with exactly one entry per stage."""
    if isinstance(value, (int, float)):
        return (value,) * num_stages
    value = tuple(value)
    if len(value) != num_stages:
        raise ConfigError(
            f"{family}: {what} has {len(value)} entries but depths has {num_stages} stages; "
            f"give one {what} value per stage (or a single number for all)"
        )
    return value


class Mlp(nn.Module):
    """Transformer MLP ``fc2(GELU(fc1(x)))`` (exact GELU). (..., C) -> (..., C)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
