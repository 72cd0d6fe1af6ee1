"""Analytic ray casting against the room and the primitives, vectorised over (B, N) rays.

All rays of a sample share one origin (the camera, or the light for shadow rays), given as (B, 1)
tensors; directions are (B, N). Primitives are evaluated slot by slot (a Python loop over at most
:data:`~taskadapt.data.scenes.layout.MAX_PRIMITIVES` slots, each a handful of (B, N) elementwise
ops), keeping a running nearest hit. Round primitives share one quadric kernel: in the primitive's
frame (origin at its footprint centre on the floor) the lateral surface is
``x^2 + z^2 + s (y - c)^2 = q`` clipped to ``0 <= y <= ymax``:

* sphere of radius r:   s = 1,          c = r, q = r^2, ymax = 2r
* cylinder (r, h):      s = 0,          c = 0, q = r^2, ymax = h, plus a top cap disk of radius r
* cone (r, h):          s = -(r/h)^2,   c = h, q = 0,   ymax = h (apex at the top)

Boxes use the slab method in their yawed frame. Bottom faces are never visible (everything is
above the floor), so they are not intersected. Only elementwise IEEE-exact ops (+ - * / sqrt, min,
max, comparisons) are used: results are bit-identical however samples are batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor

#: minimum ray parameter of a valid hit (rays start at the camera / light, never on a surface)
T_EPS = 1e-4


@dataclass
class BoxSlot:
    """One box per sample, all (B, 1): footprint centre, yaw cos/sin, half extents, height."""

    cx: Tensor
    cz: Tensor
    cos: Tensor
    sin: Tensor
    hx: Tensor
    hz: Tensor
    h: Tensor


@dataclass
class QuadricSlot:
    """One round primitive per sample, all (B, 1); ``rcap2`` = squared top-cap radius (0: no cap)."""

    cx: Tensor
    cz: Tensor
    s: Tensor
    c: Tensor
    q: Tensor
    ymax: Tensor
    rcap2: Tensor
    has_cap: bool  # any sample of the batch has a cap in this slot (else the cap test is skipped)


@dataclass
class Rays:
    """Origins (B, 1) and directions (B, N); ``dxz2 = dx^2 + dz^2`` and ``dy2`` are cached."""

    ox: Tensor
    oy: Tensor
    oz: Tensor
    dx: Tensor
    dy: Tensor
    dz: Tensor

    def __post_init__(self) -> None:
        self.dxz2 = self.dx * self.dx
        self.dxz2 += self.dz * self.dz
        self.dy2 = self.dy * self.dy
        self.inv_dy = 1.0 / self.dy
        self.t_floor = -self.oy * self.inv_dy  # y = 0 plane, shared by every box slab test


def room_exit(rays: Rays, W: Tensor, H: Tensor, D: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Ray parameters (B, N) at which rays from inside leave the room box, per axis (x, y, z).

    Distances to the wall the ray moves towards divided by |d|: a zero component gives +inf.
    """
    tx = torch.where(rays.dx > 0, W - rays.ox, rays.ox).div_(rays.dx.abs())
    ty = torch.where(rays.dy > 0, H - rays.oy, rays.oy).div_(rays.dy.abs())
    tz = torch.where(rays.dz > 0, D - rays.oz, rays.oz).div_(rays.dz.abs())
    return tx, ty, tz


def box_t(rays: Rays, b: BoxSlot) -> Tensor:
    """(B, N) entry parameter of each ray into box ``b`` (inf when missed)."""
    ex, ez = rays.ox - b.cx, rays.oz - b.cz
    oxl, ozl = b.cos * ex + b.sin * ez, b.cos * ez - b.sin * ex
    dxl = b.cos * rays.dx
    dxl += b.sin * rays.dz
    dzl = b.cos * rays.dz
    dzl -= b.sin * rays.dx
    ix, iz = dxl.reciprocal_(), dzl.reciprocal_()
    t1, t2 = (-b.hx - oxl) * ix, (b.hx - oxl) * ix
    tnear, tfar = torch.minimum(t1, t2), torch.maximum(t1, t2)
    t1, t2 = (-b.hz - ozl) * iz, (b.hz - ozl) * iz
    tnear = torch.maximum(tnear, torch.minimum(t1, t2))
    tfar = torch.minimum(tfar, torch.maximum(t1, t2))
    t1, t2 = rays.t_floor, (b.h - rays.oy) * rays.inv_dy
    tnear = torch.maximum(tnear, torch.minimum(t1, t2))
    tfar = torch.minimum(tfar, torch.maximum(t1, t2))
    hit = (tnear <= tfar) & (tnear > T_EPS)
    return tnear.masked_fill_(~hit, torch.inf)


def quadric_t(rays: Rays, p: QuadricSlot) -> tuple[Tensor, Tensor | None]:
    """(B, N) nearest hit parameter on round primitive ``p`` and a cap-hit mask (None: no caps)."""
    oxl, ozl, oyc = rays.ox - p.cx, rays.oz - p.cz, rays.oy - p.c
    a = p.s * rays.dy2
    a += rays.dxz2
    hb = oxl * rays.dx
    hb += ozl * rays.dz
    hb += (p.s * oyc) * rays.dy
    c = oxl * oxl + ozl * ozl + p.s * oyc * oyc - p.q
    disc = hb * hb
    disc -= a * c
    miss = disc < 0
    sq = disc.clamp_min_(0.0).sqrt_()  # clamp first: sqrt of negatives is ~20x slower on CPU (NaN path)
    hb.neg_()
    r1 = (hb - sq).div_(a)
    r2 = hb.add_(sq).div_(a)
    tlo, thi = torch.minimum(r1, r2), torch.maximum(r1, r2)
    t = torch.full_like(tlo, torch.inf)
    for root in (thi, tlo):  # the nearer valid root wins: evaluate it last
        y = rays.oy + root * rays.dy
        ok = (root > T_EPS) & (y >= 0) & (y <= p.ymax)
        t = torch.where(ok, root, t)
    t.masked_fill_(miss, torch.inf)
    if not p.has_cap:
        return t, None
    tc = (p.ymax - rays.oy) * rays.inv_dy
    xc = oxl + tc * rays.dx
    zc = ozl + tc * rays.dz
    rr = xc * xc
    rr += zc * zc
    cap = (rr < p.rcap2) & (tc > T_EPS) & (tc < t)  # strict: rcap2 = 0 never hits
    return torch.where(cap, tc, t), cap


def nearest_hit(
    rays: Rays, t_room: Tensor, boxes: list[BoxSlot], quadrics: list[QuadricSlot]
) -> tuple[Tensor, Tensor, Tensor]:
    """Nearest surface per ray.

    Returns ``t`` (B, N), ``slot`` (B, N) int8 (-1 = room, boxes ``0..len(boxes)-1`` then quadrics),
    ``cap`` (B, N) bool (the hit is a cylinder's top cap). Ties keep the earlier slot.
    """
    t = t_room.clone()
    slot = torch.full(t.shape, -1, dtype=torch.int8)
    cap = torch.zeros(t.shape, dtype=torch.bool)
    for k, b in enumerate(boxes):
        tk = box_t(rays, b)
        closer = tk < t
        t = torch.where(closer, tk, t)
        slot.masked_fill_(closer, k)
    for j, q in enumerate(quadrics):
        tk, capk = quadric_t(rays, q)
        closer = tk < t
        t = torch.where(closer, tk, t)
        slot.masked_fill_(closer, len(boxes) + j)
        if capk is not None:
            cap = torch.where(closer, capk, cap)
        else:
            cap.masked_fill_(closer, False)
    return t, slot, cap


def occluded(rays: Rays, boxes: list[BoxSlot], quadrics: list[QuadricSlot], limit: float) -> Tensor:
    """(B, N) bool: some primitive is hit with ``t < limit`` (shadow rays: light -> surface point)."""
    best = torch.full(rays.dx.shape, torch.inf)
    for b in boxes:
        best = torch.minimum(best, box_t(rays, b))
    for q in quadrics:
        best = torch.minimum(best, quadric_t(rays, q)[0])
    return best < limit
