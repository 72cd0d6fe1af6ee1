"""Pretraining data: a ring-buffer pool of procedural scenes of the ``pretrain`` appearance domain
(rendered on the fly, partly re-rendered every step), batched random resized crops with horizontal
flips, and the normalisation to the backbone's input range. No downstream label and no demo scene
(seed 0) ever enters it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from taskadapt.models.backbones.vit import VisionTransformer

DOMAIN = "pretrain"
SPLIT = "train"


class ScenePool:
    """A ring buffer of ``pool_size`` rendered scenes; :meth:`refresh` replaces the oldest ``count``
    with never-seen scenes (consecutive indices of ``split`` under ``seed``). Images (P, 3, S, S)."""

    def __init__(self, pool_size: int, size: int = 64, seed: int = 1000, domain: str = DOMAIN):
        from taskadapt.data.scenes import render_scenes

        self._render = render_scenes
        self.size, self.seed, self.domain = size, seed, domain
        self.next_index = 0
        self.slot = 0
        self.images = self._next(pool_size)

    def _next(self, count: int) -> torch.Tensor:
        indices = range(self.next_index, self.next_index + count)
        self.next_index += count
        return self._render(self.domain, SPLIT, indices, size=self.size, seed=self.seed)["image"]

    def refresh(self, count: int) -> None:
        if count <= 0:
            return
        fresh = self._next(count)
        slots = (torch.arange(count) + self.slot) % len(self.images)
        self.images[slots] = fresh
        self.slot = int(slots[-1] + 1) % len(self.images)

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        return self.images[torch.randint(len(self.images), (batch,), generator=generator)]


def augment(
    images: torch.Tensor, generator: torch.Generator, min_area: float = 0.4, max_ratio: float = 4 / 3
) -> torch.Tensor:
    """Random resized crop (area fraction in [min_area, 1], aspect ratio in [1/max_ratio, max_ratio])
    and horizontal flip, resampled bilinearly to the input size: (B, 3, H, W) -> (B, 3, H, W). One
    affine grid for the whole batch, no per-image loop."""
    B = images.shape[0]
    u = torch.rand(B, 4, generator=generator)
    area = min_area + (1.0 - min_area) * u[:, 0]
    log_ratio = (u[:, 1] * 2 - 1) * math.log(max_ratio)
    sx = (area * log_ratio.exp()).sqrt().clamp(max=1.0)  # crop width / image width
    sy = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    tx = (u[:, 2] * 2 - 1) * (1 - sx)  # centre, in [-1, 1] grid units, crop inside the image
    ty = (u[:, 3] * 2 - 1) * (1 - sy)
    flip = torch.where(torch.rand(B, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def normalize(images: torch.Tensor, backbone: VisionTransformer) -> torch.Tensor:
    """[0, 1] images -> the input range the backbone expects."""
    mean = torch.tensor(backbone.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
