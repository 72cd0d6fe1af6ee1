"""Label maps derived from the surfaces: camera-frame normals and 1-pixel boundaries.

Edge rule (also in ``meta.json``, see :data:`~taskadapt.data.scenes.classes.EDGE_RULE`): two
4-neighbours (right or bottom) are discontinuous when their classes differ, or when they see
different objects (room = one object; primitives never touch one another) and their depths differ
by more than ``EDGE_DEPTH_REL_THRESHOLD`` x the smaller depth. Of each discontinuous pair, only the
nearer pixel is marked (the left/top one on ties), so every discontinuity gives one pixel and
lines are one pixel thick, lying on the occluding surface. Within one object depth is continuous
(all primitives and the room are convex), so no depth test is needed there: this also avoids
false edges on planes seen at grazing angles, where neighbouring depths legitimately differ by a
lot.
"""

from __future__ import annotations

import torch

from taskadapt.data.scenes.classes import EDGE_DEPTH_REL_THRESHOLD

Tensor = torch.Tensor


def camera_normals(n: tuple[Tensor, Tensor, Tensor], right, up, forward) -> tuple[Tensor, Tensor, Tensor]:
    """World normals (3 x (B, N)) -> camera frame (x right, y up, z towards the camera = -forward)."""
    nx, ny, nz = n

    def dot(a) -> Tensor:
        out = nx * a[0]
        out += ny * a[1]
        out += nz * a[2]
        return out

    back = dot(forward).neg_()
    return dot(right), dot(up), back


def _discontinuous(c1: Tensor, c2: Tensor, o1: Tensor, o2: Tensor, d1: Tensor, d2: Tensor) -> Tensor:
    jump = (d1 - d2).abs_() > EDGE_DEPTH_REL_THRESHOLD * torch.minimum(d1, d2)
    return (c1 != c2) | ((o1 != o2) & jump)


def boundaries(cls: Tensor, obj: Tensor, depth: Tensor) -> Tensor:
    """(B, H, W) class, object id and depth maps -> (B, H, W) bool boundary map (rule above)."""
    edge = torch.zeros(cls.shape, dtype=torch.bool)
    # horizontal pairs (x, x + 1)
    d1, d2 = depth[:, :, :-1], depth[:, :, 1:]
    disc = _discontinuous(cls[:, :, :-1], cls[:, :, 1:], obj[:, :, :-1], obj[:, :, 1:], d1, d2)
    first = d1 <= d2
    edge[:, :, :-1] |= disc & first
    edge[:, :, 1:] |= disc & ~first
    # vertical pairs (y, y + 1)
    d1, d2 = depth[:, :-1], depth[:, 1:]
    disc = _discontinuous(cls[:, :-1], cls[:, 1:], obj[:, :-1], obj[:, 1:], d1, d2)
    first = d1 <= d2
    edge[:, :-1] |= disc & first
    edge[:, 1:] |= disc & ~first
    return edge
