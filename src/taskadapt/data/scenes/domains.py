"""Appearance domains: named styles over the same geometry distribution and label definitions.

A :class:`Style` says which texture patterns and colours each class may take, how the scene is lit
and how the image is post-processed (fog, colour cast, posterisation, outlines, sensor noise).
:meth:`Style.sample` draws one scene's :class:`Appearance` from the scene's appearance stream; the
number of draws per material is fixed, so materials never shift when the geometry changes.

Domains (``DOMAINS``, a :class:`~taskadapt.registry.Registry`):

* ``studio``   neutral white ceiling light, indoor materials (wood, tiles, plaster, wallpaper...)
* ``dusk``     the same materials under a low warm light, bluish ambient and an orange cast
* ``fog``      studio-like lighting with distance-dependent haze
* ``toon``     flat colours, banded shading, posterised output and dark outlines on the boundaries
* ``pretrain`` its own textures (dots, rings, camouflage, diagonal stripes) and saturated random
  palettes independent of the class; meant for self-supervised pretraining
"""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import dataclass

from taskadapt.data.scenes import textures as tx
from taskadapt.data.scenes.classes import (
    BOX,
    CEILING,
    CONE,
    CYLINDER,
    FLOOR,
    PAINTING,
    PRIMITIVE_CLASSES,
    RUG,
    SPHERE,
    WALL,
)
from taskadapt.data.scenes.layout import MAX_PRIMITIVES, SceneLayout
from taskadapt.registry import Registry

Range = tuple[float, float]
RGB = tuple[float, float, float]


@dataclass(frozen=True)
class MaterialSpec:
    """A pattern kind with colour ranges (HSV) and how colour B relates to colour A.

    ``scheme``: "shade" (a darker tone of A), "contrast" (another hue), "grout" (a grey).
    ``aligned``: pattern direction is 0 or 90 degrees (boards, wallpaper) rather than any angle.
    """

    kind: int
    hue: Range = (0.0, 1.0)
    sat: Range = (0.3, 0.8)
    val: Range = (0.4, 0.9)
    scheme: str = "shade"
    freq: Range = (2.0, 5.0)
    extra: Range = (0.0, 0.3)
    aligned: bool = False


_ANY = (0.0, 1.0)
BASE_MATERIALS: dict[int, tuple[MaterialSpec, ...]] = {
    FLOOR: (
        MaterialSpec(tx.WOOD, (0.04, 0.11), (0.35, 0.75), (0.3, 0.7), "shade", (3.5, 7.0), aligned=True),
        MaterialSpec(tx.TILES, _ANY, (0.0, 0.25), (0.55, 0.9), "grout", (1.5, 4.0), (0.1, 0.3), True),
        MaterialSpec(tx.NOISE, _ANY, (0.1, 0.5), (0.3, 0.7), "shade", (3.0, 8.0)),
    ),
    WALL: (
        MaterialSpec(tx.PLAIN, _ANY, (0.03, 0.3), (0.7, 0.95), "shade", (1.0, 3.0), (0.05, 0.25)),
        MaterialSpec(tx.NOISE, _ANY, (0.03, 0.25), (0.7, 0.95), "shade", (2.0, 6.0)),
        MaterialSpec(tx.STRIPES, _ANY, (0.1, 0.4), (0.6, 0.9), "contrast", (3.0, 8.0), aligned=True),
    ),
    CEILING: (MaterialSpec(tx.PLAIN, _ANY, (0.0, 0.08), (0.8, 0.98), "shade", (1.0, 3.0), (0.0, 0.1)),),
    RUG: (MaterialSpec(tx.RUG, _ANY, (0.45, 0.9), (0.35, 0.8), "contrast", (4.0, 10.0)),),
    PAINTING: (MaterialSpec(tx.ART, _ANY, (0.5, 0.95), (0.45, 0.95), "contrast", (2.0, 5.0)),),
    BOX: (
        MaterialSpec(tx.WOOD, (0.05, 0.12), (0.4, 0.8), (0.35, 0.8), "shade", (4.0, 9.0), aligned=True),
        MaterialSpec(tx.PLAIN, _ANY, (0.3, 0.8), (0.35, 0.85), "shade", (1.5, 4.0), (0.1, 0.3)),
        MaterialSpec(tx.CHECKER, _ANY, (0.3, 0.8), (0.45, 0.9), "contrast", (3.0, 7.0)),
    ),
    SPHERE: (
        MaterialSpec(tx.PLAIN, _ANY, (0.5, 0.9), (0.5, 0.95), "shade", (2.0, 5.0), (0.05, 0.2)),
        MaterialSpec(tx.STRIPES, _ANY, (0.5, 0.9), (0.5, 0.95), "contrast", (4.0, 9.0)),
        MaterialSpec(tx.CHECKER, _ANY, (0.5, 0.9), (0.5, 0.95), "contrast", (4.0, 8.0)),
    ),
    CYLINDER: (
        MaterialSpec(tx.STRIPES, _ANY, (0.4, 0.9), (0.4, 0.9), "contrast", (4.0, 10.0), aligned=True),
        MaterialSpec(tx.PLAIN, _ANY, (0.4, 0.9), (0.4, 0.9), "shade", (2.0, 5.0), (0.05, 0.25)),
        MaterialSpec(tx.NOISE, _ANY, (0.3, 0.7), (0.35, 0.8), "shade", (4.0, 9.0)),
    ),
    CONE: (
        MaterialSpec(tx.PLAIN, _ANY, (0.5, 0.95), (0.5, 0.95), "shade", (2.0, 5.0), (0.05, 0.2)),
        MaterialSpec(tx.STRIPES, _ANY, (0.5, 0.95), (0.5, 0.95), "contrast", (5.0, 10.0), aligned=True),
        MaterialSpec(tx.CHECKER, _ANY, (0.5, 0.95), (0.5, 0.95), "contrast", (4.0, 8.0)),
    ),
}


def _flatten(spec: MaterialSpec) -> MaterialSpec:
    """Toon version of a material: textured kinds become flat colour; graphic kinds stay."""
    if spec.kind in (tx.WOOD, tx.NOISE, tx.TILES, tx.PLAIN):
        return MaterialSpec(tx.PLAIN, spec.hue, spec.sat, spec.val, spec.scheme, spec.freq, (0.0, 0.0))
    return spec


TOON_MATERIALS = {c: tuple(_flatten(s) for s in specs) for c, specs in BASE_MATERIALS.items()}
_PRETRAIN_SET = (
    MaterialSpec(tx.DOTS, _ANY, (0.5, 1.0), (0.35, 1.0), "contrast", (4.0, 9.0), (0.0, 1.0)),
    MaterialSpec(tx.RINGS, _ANY, (0.5, 1.0), (0.35, 1.0), "contrast", (3.0, 7.0), (0.0, 0.6)),
    MaterialSpec(tx.CAMO, _ANY, (0.4, 1.0), (0.3, 0.9), "contrast", (1.5, 3.5)),
    MaterialSpec(tx.STRIPES, _ANY, (0.5, 1.0), (0.35, 1.0), "contrast", (5.0, 12.0)),
)
PRETRAIN_MATERIALS = {c: _PRETRAIN_SET for c in BASE_MATERIALS}


@dataclass(frozen=True)
class Appearance:
    """One scene's appearance (Python floats): a material row per slot (see
    :data:`~taskadapt.data.scenes.textures.MATERIAL_FIELDS`), lighting and post-processing."""

    materials: tuple[tuple[float, ...], ...]
    light_pos: RGB
    light_rgb: RGB  # colour x intensity
    ambient_rgb: RGB
    fog_density: float
    fog_rgb: RGB
    cast: RGB
    noise_sigma: float
    exposure: float
    noise_seed: int


@dataclass(frozen=True)
class Style:
    """An appearance domain (see the module docstring)."""

    name: str
    description: str
    materials: dict[int, tuple[MaterialSpec, ...]]
    light_rgb: tuple[RGB, RGB] = ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    intensity: Range = (1.2, 1.8)
    ambient: tuple[RGB, RGB] = ((0.25, 0.25, 0.25), (0.4, 0.4, 0.4))
    low_light: bool = False  # light near head height (dusk) instead of near the ceiling
    fog_density: Range = (0.0, 0.0)
    fog_rgb: tuple[RGB, RGB] = ((0.75, 0.77, 0.8), (0.85, 0.87, 0.9))
    cast: tuple[RGB, RGB] = ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    noise_sigma: Range = (0.005, 0.02)
    exposure: Range = (0.9, 1.15)
    shade_bands: tuple[float, ...] = ()  # toon: quantise direct light to these levels
    posterize: int = 0  # toon: output levels per channel
    outline: float | None = None  # toon: grey level drawn on boundary pixels

    def sample(self, rng: random.Random, layout: SceneLayout, noise_seed: int) -> Appearance:
        """Draw the appearance of ``layout`` from its appearance stream ``rng``."""
        classes = [FLOOR, WALL, CEILING, RUG, PAINTING]
        kinds = [p.kind for p in layout.primitives]
        classes += [PRIMITIVE_CLASSES[k] for k in kinds] + [BOX] * (MAX_PRIMITIVES - len(kinds))
        materials = tuple(_sample_material(rng, self.materials[c]) for c in classes)
        W, H, D = layout.room
        if self.low_light:
            pos = (rng.uniform(0.2, W - 0.2), rng.uniform(1.6, min(2.2, H - 0.1)), rng.uniform(0.2, D - 0.2))
        else:
            pos = (
                rng.uniform(0.15 * W, 0.85 * W),
                H - rng.uniform(0.05, 0.3),
                rng.uniform(0.15 * D, 0.85 * D),
            )
        intensity = rng.uniform(*self.intensity)
        light = tuple(intensity * rng.uniform(lo, hi) for lo, hi in zip(*self.light_rgb, strict=True))
        ambient = _rgb_in(rng, self.ambient)
        fog_density = rng.uniform(*self.fog_density)
        fog_rgb = _rgb_in(rng, self.fog_rgb)
        cast = _rgb_in(rng, self.cast)
        return Appearance(
            materials=materials,
            light_pos=pos,
            light_rgb=light,
            ambient_rgb=ambient,
            fog_density=fog_density,
            fog_rgb=fog_rgb,
            cast=cast,
            noise_sigma=rng.uniform(*self.noise_sigma),
            exposure=rng.uniform(*self.exposure),
            noise_seed=noise_seed,
        )


def _rgb_in(rng: random.Random, bounds: tuple[RGB, RGB]) -> RGB:
    return tuple(rng.uniform(lo, hi) for lo, hi in zip(*bounds, strict=True))


def _hsv(h: float, s: float, v: float) -> RGB:
    return colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))


def _sample_material(rng: random.Random, specs: tuple[MaterialSpec, ...]) -> tuple[float, ...]:
    """One material row from 12 draws (always 12, whatever the spec)."""
    draws = [rng.random() for _ in range(12)]
    spec = specs[min(int(draws[0] * len(specs)), len(specs) - 1)]

    def lerp(r: Range, x: float) -> float:
        return r[0] + (r[1] - r[0]) * x

    h, s, v = lerp(spec.hue, draws[1]), lerp(spec.sat, draws[2]), lerp(spec.val, draws[3])
    a = _hsv(h, s, v)
    if spec.scheme == "contrast":
        b = _hsv(h + 0.25 + 0.5 * draws[4], s * (0.7 + 0.4 * draws[5]), v * (0.6 + 0.5 * draws[6]))
    elif spec.scheme == "grout":
        g = 0.2 + 0.7 * draws[4]
        b = (g, g, g)
    else:
        b = _hsv(h + 0.06 * (draws[4] - 0.5), s * (0.9 + 0.3 * draws[5]), v * (0.45 + 0.25 * draws[6]))
    angle = (0.5 * math.pi if draws[8] < 0.5 else 0.0) if spec.aligned else math.pi * draws[8]
    return (
        float(spec.kind),
        *a,
        *b,
        lerp(spec.freq, draws[7]),
        math.cos(angle),
        math.sin(angle),
        lerp(spec.extra, draws[9]),
        10.0 * draws[10],
        10.0 * draws[11],
    )


DOMAINS: Registry[Style] = Registry("scene domain")


def register_domain(style: Style) -> Style:
    """Register an appearance style under its own name (as ``@register_backbone`` does a model function)."""
    return DOMAINS.register(style.name, style)


register_domain(Style("studio", "neutral white ceiling light, indoor materials", BASE_MATERIALS))
register_domain(
    Style(
        "dusk",
        "low warm light, bluish ambient, orange colour cast",
        BASE_MATERIALS,
        light_rgb=((1.0, 0.55, 0.25), (1.0, 0.7, 0.4)),
        intensity=(0.9, 1.4),
        ambient=((0.06, 0.07, 0.12), (0.12, 0.12, 0.2)),
        low_light=True,
        cast=((1.0, 0.85, 0.7), (1.1, 0.95, 0.8)),
        noise_sigma=(0.02, 0.045),
        exposure=(0.8, 1.0),
    ),
)
register_domain(
    Style(
        "fog",
        "studio-like light with distance-dependent haze",
        BASE_MATERIALS,
        fog_density=(0.15, 0.4),
        ambient=((0.3, 0.3, 0.3), (0.45, 0.45, 0.45)),
    ),
)
register_domain(
    Style(
        "toon",
        "flat colours, banded shading, posterised, dark outlines on boundaries",
        TOON_MATERIALS,
        intensity=(0.75, 0.95),
        ambient=((0.3, 0.3, 0.3), (0.4, 0.4, 0.4)),
        noise_sigma=(0.0, 0.0),
        shade_bands=(0.15, 0.5),
        posterize=5,
        outline=0.06,
    ),
)
register_domain(
    Style(
        "pretrain",
        "own textures (dots, rings, camouflage, stripes), saturated class-independent palettes",
        PRETRAIN_MATERIALS,
        light_rgb=((0.85, 0.85, 0.85), (1.0, 1.0, 1.0)),
        intensity=(1.0, 1.9),
        noise_sigma=(0.005, 0.03),
    ),
)


def list_domains(pattern: str = "*") -> list[str]:
    """Names of the registered scene domains, sorted (shell-style ``pattern`` filter)."""
    return DOMAINS.names(pattern)
