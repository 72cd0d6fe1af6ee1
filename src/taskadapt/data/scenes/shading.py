"""From albedo and geometry to the final image: lighting, shadows, fog, colour cast, sensor noise,
toon banding/posterisation/outlines.

Lighting is Lambertian from one point light with a soft distance falloff ``1 / (1 + d^2 / 16)``
plus an ambient term, computed in an approximately linear space (albedo squared, output square
rooted: gamma 2 keeps every op exact, unlike ``pow``). Fog blends towards a fog colour with the
transmittance ``(1 + k s / 8)^-8`` (an exp(-k s) stand-in made of exact ops) of the distance s
along the ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from taskadapt.data.scenes.domains import Appearance, Style
from taskadapt.data.scenes.seeding import torch_rng
from taskadapt.data.scenes.textures import NOISE_RES, Noise

Tensor = torch.Tensor
FALLOFF_M2 = 16.0  # squared distance (m^2) at which the light is at half strength


@dataclass
class AppearanceBatch:
    """Appearance of B scenes as tensors: material table (F, B * M), noise lattices, per-sample
    lighting/post parameters (B, 1) and, if the style has sensor noise, uniform draws (B, 2, 3, N)."""

    materials: Tensor
    noise: Noise
    light: tuple[Tensor, Tensor, Tensor]
    light_rgb: tuple[Tensor, Tensor, Tensor]
    ambient: tuple[Tensor, Tensor, Tensor]
    fog_density: Tensor
    fog_rgb: tuple[Tensor, Tensor, Tensor]
    cast: tuple[Tensor, Tensor, Tensor]
    sigma: Tensor
    exposure: Tensor
    sensor: Tensor | None

    @classmethod
    def from_appearances(cls, apps: list[Appearance], num_pixels: int, sensor_noise: bool) -> AppearanceBatch:
        B = len(apps)

        def col(vals) -> Tensor:
            return torch.tensor(vals, dtype=torch.float64).float().view(B, 1)

        def rgb(name: str) -> tuple[Tensor, Tensor, Tensor]:
            return tuple(col([getattr(a, name)[i] for a in apps]) for i in range(3))

        mats = torch.tensor([a.materials for a in apps], dtype=torch.float64).float()  # (B, M, F)
        mats = mats.permute(2, 0, 1).reshape(mats.shape[2], -1).contiguous()
        tables, draws = [], []
        for a in apps:  # per-sample generators: draws never depend on batching
            g = torch_rng(a.noise_seed)
            tables.append(torch.rand(NOISE_RES * NOISE_RES, generator=g))
            if sensor_noise:
                draws.append(torch.rand(2, 3, num_pixels, generator=g))
        return cls(
            materials=mats,
            noise=Noise(torch.stack(tables)),
            light=rgb("light_pos"),
            light_rgb=rgb("light_rgb"),
            ambient=rgb("ambient_rgb"),
            fog_density=col([a.fog_density for a in apps]),
            fog_rgb=rgb("fog_rgb"),
            cast=rgb("cast"),
            sigma=col([a.noise_sigma for a in apps]),
            exposure=col([a.exposure for a in apps]),
            sensor=torch.stack(draws) if sensor_noise else None,
        )


def direct_light(app: AppearanceBatch, p, n) -> Tensor:
    """Unshadowed Lambert term with distance falloff (B, N) at points ``p`` with normals ``n``."""
    lx, ly, lz = (app.light[i] - p[i] for i in range(3))
    dist2 = lx * lx
    dist2 += ly * ly
    dist2 += lz * lz
    ndl = n[0] * lx
    ndl += n[1] * ly
    ndl += n[2] * lz
    ndl.clamp_min_(0.0).div_(torch.sqrt(dist2))
    return ndl.div_(1.0 + dist2 / FALLOFF_M2)


def shade(
    style: Style, app: AppearanceBatch, albedo, direct: Tensor, ray_length: Tensor, edge: Tensor
) -> Tensor:
    """Final image (B, 3, N) in [0, 1].

    ``albedo`` 3 x (B, N) display-space colours; ``direct`` (B, N) shadowed direct-light factor;
    ``ray_length`` (B, N) distance camera -> surface (m); ``edge`` (B, N) bool boundaries.
    """
    if style.shade_bands:  # toon: a few flat light levels instead of a smooth gradient
        lo, hi = style.shade_bands
        direct = torch.where(direct > hi, 1.0, torch.where(direct > lo, 0.6, 0.15))
    if style.fog_density[1] > 0:
        y = 1.0 + app.fog_density * ray_length / 8.0
        y = y * y
        y = y * y
        trans = 1.0 / (y * y)
    out = []
    for c in range(3):
        a = albedo[c] * albedo[c]
        x = a * (app.ambient[c] + app.light_rgb[c] * direct)
        x = torch.sqrt(x * app.exposure)
        if style.fog_density[1] > 0:
            x = x * trans + app.fog_rgb[c] * (1.0 - trans)
        x = x * app.cast[c]
        if app.sensor is not None:
            # triangular noise with standard deviation sigma: (u1 - u2) has variance 1/6
            x = x + (app.sensor[:, 0, c] - app.sensor[:, 1, c]) * (app.sigma * math.sqrt(6.0))
        x = x.clamp_(0.0, 1.0)
        if style.posterize:
            x = torch.floor(x * style.posterize + 0.5) / style.posterize
        if style.outline is not None:
            x = x.masked_fill_(edge, style.outline)
        out.append(x)
    return torch.stack(out, dim=1)
