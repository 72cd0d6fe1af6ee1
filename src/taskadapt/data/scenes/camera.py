"""Pinhole camera: fixed intrinsics, look-at poses and per-pixel ray directions.

Conventions (also written into ``meta.json``): the camera frame is x right, y up, z towards the
viewer (the camera looks along -z); pixel (row v, column u) has its centre at integer pixel
coordinates; ``K = [[f, 0, c], [0, f, c], [0, 0, 1]]`` with ``c = (size - 1) / 2``. Rays are built
with a camera-frame z component of -1, so the ray parameter ``t`` of a hit *is* its z-depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: horizontal (= vertical, square images) field of view, like a Kinect's ~60 degrees
HFOV_DEG = 62.0


def focal_length(size: int) -> float:
    """Focal length in pixels for a ``size`` x ``size`` image."""
    return (size / 2.0) / math.tan(math.radians(HFOV_DEG) / 2.0)


def intrinsics(size: int) -> torch.Tensor:
    """(3, 3) float32 camera matrix for a ``size`` x ``size`` image."""
    f, c = focal_length(size), (size - 1) / 2.0
    return torch.tensor([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]], dtype=torch.float32)


def pixel_rays(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-frame ray slopes ``(x, y)``, each (size * size,) float32, row-major pixel order.

    The camera-frame ray of pixel (v, u) is ``(x, y, -1)``.
    """
    f, c = focal_length(size), (size - 1) / 2.0
    coords = (torch.arange(size, dtype=torch.float64) - c) / f
    ys = (-coords).repeat_interleave(size)  # rows: image v grows downwards, camera y upwards
    xs = coords.repeat(size)
    return xs.float(), ys.float()


@dataclass(frozen=True)
class CameraPose:
    """World position and orthonormal axes (right, up, back) of a camera, as Python floats."""

    position: tuple[float, float, float]
    right: tuple[float, float, float]
    up: tuple[float, float, float]
    back: tuple[float, float, float]

    @property
    def forward(self) -> tuple[float, float, float]:
        return (-self.back[0], -self.back[1], -self.back[2])

    def cam_to_world(self) -> list[list[float]]:
        """4 x 4 row-major matrix whose columns are right, up, back, position."""
        r, u, b, p = self.right, self.up, self.back, self.position
        return [[r[i], u[i], b[i], p[i]] for i in range(3)] + [[0.0, 0.0, 0.0, 1.0]]


def look_pose(position: tuple[float, float, float], yaw: float, pitch: float, roll: float) -> CameraPose:
    """Camera at ``position`` looking along yaw/pitch (radians; yaw 0 = +z, pitch > 0 = up), rolled.

    Built in float64 Python math per sample, so a pose never depends on how samples are batched.
    """
    cp = math.cos(pitch)
    fwd = (cp * math.sin(yaw), math.sin(pitch), cp * math.cos(yaw))
    # right = fwd x world_up, normalised (world up = +y); |pitch| < 90 deg keeps it well defined
    rx, rz = -fwd[2], fwd[0]
    n = math.hypot(rx, rz)
    right = (rx / n, 0.0, rz / n)
    up = (
        right[1] * fwd[2] - right[2] * fwd[1],
        right[2] * fwd[0] - right[0] * fwd[2],
        right[0] * fwd[1] - right[1] * fwd[0],
    )
    cr, sr = math.cos(roll), math.sin(roll)
    right_r = tuple(cr * right[i] + sr * up[i] for i in range(3))
    up_r = tuple(-sr * right[i] + cr * up[i] for i in range(3))
    back = (-fwd[0], -fwd[1], -fwd[2])
    return CameraPose(position=tuple(position), right=right_r, up=up_r, back=back)
