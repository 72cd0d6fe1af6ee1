"""Deferred surface attributes: once the nearest hit of every pixel is known, compute its class,
object id, material, world normal, hit point and texture coordinates.

Room pixels are handled on full (B, N) tensors (cheap, axis-aligned); primitive pixels on the
flat subset of pixels whose nearest slot is a primitive, reading that slot's row of the batch
table. Texture coordinates are a box projection in the surface's local frame (world for the room,
the yawed object frame for primitives): the two coordinates orthogonal to the dominant normal
axis; rugs and paintings use coordinates normalised to their rectangle (0..1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from taskadapt.data.scenes.batch import FIELD, SceneBatch
from taskadapt.data.scenes.classes import CEILING, FLOOR, PAINTING, RUG, WALL
from taskadapt.data.scenes.raycast import Rays

Tensor = torch.Tensor

#: materials 0..4 are the room classes; primitive k of a scene uses material FIRST_PRIM_MATERIAL + k
FIRST_PRIM_MATERIAL = 5


@dataclass
class Surfaces:
    """Per-pixel attributes, all (B, N): ``cls`` int64, ``obj`` int64 (0 = room, 1 + primitive
    index), ``mat`` int64 material slot, world normal ``n`` and hit point ``p`` (3-tuples),
    texture coordinates ``u``, ``v``."""

    cls: Tensor
    obj: Tensor
    mat: Tensor
    n: tuple[Tensor, Tensor, Tensor]
    p: tuple[Tensor, Tensor, Tensor]
    u: Tensor
    v: Tensor


def _room(batch: SceneBatch, rays: Rays, p, tx: Tensor, ty: Tensor, tz: Tensor):
    """Class, normal and texture coordinates as if every pixel saw the room (B, N)."""
    px, py, pz = p
    ax0 = (tx <= ty) & (tx <= tz)
    ax1 = ~ax0 & (ty <= tz)
    ax2 = ~(ax0 | ax1)
    pos_x, pos_y, pos_z = rays.dx > 0, rays.dy > 0, rays.dz > 0
    one = torch.ones((), dtype=px.dtype)
    zero = torch.zeros((), dtype=px.dtype)
    # the inward normal of the face the ray leaves through: minus the sign of d on that axis
    nx = torch.where(ax0, torch.where(pos_x, -one, one), zero)
    ny = torch.where(ax1, torch.where(pos_y, -one, one), zero)
    nz = torch.where(ax2, torch.where(pos_z, -one, one), zero)
    cls = torch.full(px.shape, WALL, dtype=torch.int64)
    floor = ax1 & ~pos_y
    cls.masked_fill_(floor, FLOOR)
    cls.masked_fill_(ax1 & pos_y, CEILING)
    u = torch.where(ax0, pz, px)  # along the wall for walls, x on floor and ceiling
    v = torch.where(ax1, pz, py)
    x0, x1, z0, z1 = batch.rug.unbind(1)
    x0, x1, z0, z1 = (c.view(-1, 1) for c in (x0, x1, z0, z1))
    rug = floor & (px >= x0) & (px <= x1) & (pz >= z0) & (pz <= z1)
    cls.masked_fill_(rug, RUG)
    u = torch.where(rug, (px - x0) / (x1 - x0), u)
    v = torch.where(rug, (pz - z0) / (z1 - z0), v)
    wall_id = torch.where(ax0, pos_x.to(torch.int64), pos_z.to(torch.int64) + 2).masked_fill_(ax1, -1)
    for k in reversed(range(batch.paintings.shape[1])):  # the first painting wins overlaps
        w, u0, u1, y0, y1 = (c.view(-1, 1) for c in batch.paintings[:, k].unbind(1))
        inside = (wall_id == w.to(torch.int64)) & (u >= u0) & (u <= u1) & (py >= y0) & (py <= y1)
        cls.masked_fill_(inside, PAINTING)
        u = torch.where(inside, (u - u0) / (u1 - u0), u)
        v = torch.where(inside, (py - y0) / (y1 - y0), v)
    return cls, (nx, ny, nz), u, v


def _primitives(batch: SceneBatch, idx: Tensor, slot: Tensor, cap: Tensor, p, d, N: int):
    """Attributes of the primitive pixels ``idx`` (flat indices into B * N)."""
    P = batch.num_slots
    col = torch.div(idx, N, rounding_mode="floor") * P + slot.to(torch.int64)
    f = batch.table.index_select(1, col)
    g = {name: f[i] for name, i in FIELD.items()}
    px, py, pz = p
    dx, dy, dz = d
    c, s = g["cos"], g["sin"]
    ex, ez = px - g["cx"], pz - g["cz"]
    xl, zl = c * ex + s * ez, c * ez - s * ex
    yl = py
    dxl, dzl = c * dx + s * dz, c * dz - s * dx
    # box: the face whose normalised coordinate is largest, among faces that face the ray
    qx, qz = xl / g["hx"], zl / g["hz"]
    qy = 2.0 * yl / g["h"] - 1.0
    neg = torch.full_like(qx, -1.0)
    sx = torch.where(qx * dxl < 0, qx.abs(), neg)
    sy = torch.where(qy * dy < 0, qy.abs(), neg)
    sz = torch.where(qz * dzl < 0, qz.abs(), neg)
    bx = (sx >= sy) & (sx >= sz)
    by = ~bx & (sy >= sz)
    bz = ~(bx | by)
    one, zero = torch.ones(()), torch.zeros(())
    nbx = torch.where(bx, torch.where(qx > 0, one, -one), zero)
    nby = torch.where(by, torch.where(qy > 0, one, -one), zero)
    nbz = torch.where(bz, torch.where(qz > 0, one, -one), zero)
    # round primitives: gradient of x^2 + z^2 + s (y - c)^2; cylinder caps point up
    gx, gy, gz = xl, g["s"] * (yl - g["c"]), zl
    inv = 1.0 / torch.sqrt((gx * gx + gy * gy + gz * gz).clamp_min_(1e-20))  # cone apex: no NaN
    gx, gy, gz = gx * inv, gy * inv, gz * inv
    gx = gx.masked_fill_(cap, 0.0)
    gz = gz.masked_fill_(cap, 0.0)
    gy = gy.masked_fill_(cap, 1.0)
    quad = g["is_quad"] > 0.5
    nlx, nly, nlz = torch.where(quad, gx, nbx), torch.where(quad, gy, nby), torch.where(quad, gz, nbz)
    nwx, nwz = c * nlx - s * nlz, s * nlx + c * nlz
    ax, az = nlx.abs(), nlz.abs()
    ay = nly.abs()
    dom_x = (ax >= ay) & (ax >= az)
    dom_y = ~dom_x & (ay >= az)
    u = torch.where(dom_x, zl, xl)
    v = torch.where(dom_y, zl, yl)
    local = g["local"].to(torch.int64)
    return g["cls"].to(torch.int64), local, (nwx, nly, nwz), u, v


def surfaces(batch: SceneBatch, rays: Rays, t: Tensor, slot: Tensor, cap: Tensor, t_axes) -> Surfaces:
    """Assemble :class:`Surfaces` from the nearest hits (``t``, ``slot``, ``cap``; all (B, N))."""
    N = t.shape[1]
    p = (rays.ox + t * rays.dx, rays.oy + t * rays.dy, rays.oz + t * rays.dz)
    cls, n, u, v = _room(batch, rays, p, *t_axes)
    obj = torch.zeros_like(cls)
    mat = cls.clone()  # room materials are indexed by class
    idx = (slot >= 0).view(-1).nonzero().squeeze(1)
    if idx.numel():

        def sub(x: Tensor) -> Tensor:
            return x.reshape(-1).index_select(0, idx)

        pcls, local, pn, pu, pv = _primitives(
            batch,
            idx,
            sub(slot),
            sub(cap),
            tuple(sub(c) for c in p),
            (sub(rays.dx), sub(rays.dy), sub(rays.dz)),
            N,
        )
        # view(-1) (not reshape) so that a non-contiguous destination fails loudly instead of
        # silently writing into a copy
        targets = ((cls, pcls), (obj, local + 1), (mat, local + FIRST_PRIM_MATERIAL), (u, pu), (v, pv))
        for dst, src in (*targets, *zip(n, pn, strict=True)):
            dst.view(-1).index_copy_(0, idx, src)
    return Surfaces(cls=cls, obj=obj, mat=mat, n=n, p=p, u=u, v=v)
