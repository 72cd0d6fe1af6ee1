"""Procedural textures, evaluated per pattern kind on the subset of pixels that use it.

A material (one row of the material table, see :data:`MATERIAL_FIELDS`) has a pattern ``kind``,
two colours A and B, a frequency, a direction (cos, sin), an ``extra`` parameter and an offset.
A pattern maps texture coordinates (u, v) to a mix ``m`` in [0, 1] (albedo = A + (B - A) m) and an
optional shade factor (seams, grout, frames). Noise is value noise on a per-sample 32 x 32
periodic lattice of uniform draws. Only floor/frac, + - * / and comparisons are used (no sin/exp),
which keeps results bit-identical however samples are batched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor

KIND_NAMES = ("plain", "stripes", "checker", "noise", "wood", "tiles", "dots", "rings", "camo", "art", "rug")
PLAIN, STRIPES, CHECKER, NOISE, WOOD, TILES, DOTS, RINGS, CAMO, ART, RUG = range(len(KIND_NAMES))
MATERIAL_FIELDS = ("kind", "ar", "ag", "ab", "br", "bg", "bb", "freq", "ca", "sa", "extra", "ou", "ov")
MF = {name: i for i, name in enumerate(MATERIAL_FIELDS)}
NOISE_RES = 32  # lattice cells per side of the periodic noise table


class Noise:
    """Value noise over per-sample lattices ``table`` (B, NOISE_RES**2) in [0, 1]."""

    def __init__(self, table: Tensor):
        self.flat = table.reshape(-1)

    def __call__(self, u: Tensor, v: Tensor, base: Tensor) -> Tensor:
        """Smooth noise at lattice coordinates (u, v), (S,) each; ``base`` = sample * NOISE_RES**2."""
        fu, fv = torch.floor(u), torch.floor(v)
        tu, tv = u - fu, v - fv
        tu = tu * tu * (3.0 - 2.0 * tu)  # smoothstep: C1 between cells
        tv = tv * tv * (3.0 - 2.0 * tv)
        mask = NOISE_RES - 1
        i0, j0 = fu.to(torch.int64) & mask, fv.to(torch.int64) & mask
        i1, j1 = (i0 + 1) & mask, (j0 + 1) & mask
        r0, r1 = base + j0 * NOISE_RES, base + j1 * NOISE_RES
        t = self.flat
        a = t[r0 + i0]
        a = a + (t[r0 + i1] - a) * tu
        b = t[r1 + i0]
        b = b + (t[r1 + i1] - b) * tu
        return a + (b - a) * tv


def _frac(x: Tensor) -> Tensor:
    return x - torch.floor(x)


def _tri(x: Tensor) -> Tensor:
    """Triangle wave of period 1 in [0, 1] (a cheap, exact stand-in for a sine)."""
    return 1.0 - (2.0 * _frac(x) - 1.0).abs()


Pattern = Callable[[Tensor, Tensor, dict, Noise, Tensor], tuple[Tensor, Tensor | None]]


def _plain(u, v, p, nz, base):
    return p["extra"] * nz(u * p["freq"] + p["ou"], v * p["freq"] + p["ov"], base), None


def _stripes(u, v, p, nz, base):
    w = (u * p["ca"] + v * p["sa"]) * p["freq"] + p["ou"]
    return (_frac(w) < 0.5).float(), None


def _checker(u, v, p, nz, base):
    a = torch.floor(u * p["freq"] + p["ou"]) + torch.floor(v * p["freq"] + p["ov"])
    return a - 2.0 * torch.floor(0.5 * a), None


def _noise(u, v, p, nz, base):
    f = p["freq"]
    m = 0.65 * nz(u * f + p["ou"], v * f + p["ov"], base)
    return m + 0.35 * nz(2.3 * f * u + p["ov"], 2.3 * f * v + p["ou"], base), None


def _wood(u, v, p, nz, base):
    along = u * p["ca"] + v * p["sa"]
    w = (v * p["ca"] - u * p["sa"]) * p["freq"] + p["ou"]
    plank = torch.floor(w)
    fr = w - plank
    grain = _tri(6.0 * fr + 2.5 * nz(1.5 * along + 7.0 * plank, 3.0 * fr + p["ov"], base))
    tone = nz(5.3 * plank + 0.5, p["ov"], base)
    shade = torch.where(fr < 0.04, 0.55, 1.0)  # dark seam between planks
    return 0.45 * grain + 0.45 * tone, shade


def _tiles(u, v, p, nz, base):
    fu, fv = _frac(u * p["freq"] + p["ou"]), _frac(v * p["freq"] + p["ov"])
    grout = (fu < 0.05) | (fv < 0.05)
    m = p["extra"] * nz(3.0 * u * p["freq"], 3.0 * v * p["freq"], base)
    return torch.where(grout, 1.0, m), None


def _dots(u, v, p, nz, base):
    fu, fv = _frac(u * p["freq"] + p["ou"]) - 0.5, _frac(v * p["freq"] + p["ov"]) - 0.5
    r = 0.2 + 0.15 * p["extra"]
    return (fu * fu + fv * fv < r * r).float(), None


def _rings(u, v, p, nz, base):
    du, dv = u - p["ou"] * 0.2, v - p["ov"] * 0.2
    r = torch.sqrt(du * du + dv * dv) * p["freq"] + p["extra"] * nz(2.0 * u, 2.0 * v, base)
    return (_frac(r) < 0.5).float(), None


def _camo(u, v, p, nz, base):
    n = nz(u * p["freq"] + p["ou"], v * p["freq"] + p["ov"], base)
    return torch.floor(n * 3.999) / 3.0, None


def _art(u, v, p, nz, base):
    """Paintings (u, v in 0..1 over the canvas): blotches in three tones inside a dark frame."""
    f = p["freq"]
    n = nz(u * f + p["ou"], v * f + p["ov"], base)
    n = n + 0.35 * (_frac((u * p["ca"] + v * p["sa"]) * 0.7 * f) < 0.5).float()
    m = torch.floor(n.clamp(0.0, 1.34) * 2.24) / 3.0
    frame = (u < 0.06) | (u > 0.94) | (v < 0.08) | (v > 0.92)
    return m, torch.where(frame, 0.22, 1.0)


def _rug(u, v, p, nz, base):
    """Rugs (u, v in 0..1 over the rug): a plain border around bands with a woven mottle."""
    border = torch.minimum(torch.minimum(u, 1.0 - u), torch.minimum(v, 1.0 - v)) < 0.09
    bands = (_frac(v * p["freq"] + p["ou"]) < 0.5).float() * 0.7
    m = bands + 0.3 * nz(u * 12.0, v * 12.0, base)
    return torch.where(border, 1.0, m), None


PATTERNS: dict[int, Pattern] = {
    PLAIN: _plain,
    STRIPES: _stripes,
    CHECKER: _checker,
    NOISE: _noise,
    WOOD: _wood,
    TILES: _tiles,
    DOTS: _dots,
    RINGS: _rings,
    CAMO: _camo,
    ART: _art,
    RUG: _rug,
}


def albedo(
    materials: Tensor, mat_col: Tensor, u: Tensor, v: Tensor, noise: Noise, pixels_per_sample: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Display-space albedo of every pixel.

    ``materials`` (len(MATERIAL_FIELDS), B * M) float32; ``mat_col`` (B * N,) int64 column of each
    pixel's material; ``u``, ``v`` (B * N,). Returns three (B * N,) tensors (r, g, b) in [0, 1].
    """
    kind = materials[MF["kind"]].index_select(0, mat_col)
    m = torch.zeros_like(u)
    shade = None
    for k in torch.unique(materials[MF["kind"]]).tolist():
        idx = (kind == k).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        cols = mat_col.index_select(0, idx)
        p = {name: materials[MF[name]].index_select(0, cols) for name in MATERIAL_FIELDS[7:]}
        base = torch.div(idx, pixels_per_sample, rounding_mode="floor") * (NOISE_RES * NOISE_RES)
        mk, sk = PATTERNS[int(k)](u.index_select(0, idx), v.index_select(0, idx), p, noise, base)
        m.index_copy_(0, idx, mk)
        if sk is not None:
            if shade is None:
                shade = torch.ones_like(u)
            shade.index_copy_(0, idx, sk)
    out = []
    for a_name, b_name in (("ar", "br"), ("ag", "bg"), ("ab", "bb")):
        a = materials[MF[a_name]].index_select(0, mat_col)
        c = a + (materials[MF[b_name]].index_select(0, mat_col) - a) * m
        out.append(c * shade if shade is not None else c)
    return tuple(out)
