"""``render_scenes``: geometry + appearance -> image and the four exactly consistent labels.

Pipeline for a chunk of at most :data:`MAX_CHUNK` scenes (all tensors float32 on the CPU):

1. per scene, draw the layout from its geometry stream and the appearance from its domain stream;
2. cast one camera ray per pixel (ray z component -1 in the camera frame, so ``t`` = z-depth);
3. nearest hit among the room and the primitives; deferred class / normal / texture coordinates;
4. labels: depth = t, camera-frame normals, 1-pixel boundaries;
5. shadow rays from the light to every hit point (same intersection code), textures, shading.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import torch

from taskadapt.data.scenes import raycast
from taskadapt.data.scenes.batch import SceneBatch
from taskadapt.data.scenes.camera import intrinsics, pixel_rays
from taskadapt.data.scenes.domains import DOMAINS, Style
from taskadapt.data.scenes.labels import boundaries, camera_normals
from taskadapt.data.scenes.layout import MAX_PAINTINGS, MAX_PRIMITIVES, sample_layout
from taskadapt.data.scenes.seeding import appearance_seed, geometry_seed, python_rng
from taskadapt.data.scenes.shading import AppearanceBatch, direct_light, shade
from taskadapt.data.scenes.surfaces import FIRST_PRIM_MATERIAL, surfaces
from taskadapt.data.scenes.textures import albedo
from taskadapt.errors import ConfigError

#: bump when the same (seed, domain, split, index) would render differently
GENERATOR_VERSION = "1.0"
SPLITS = ("train", "val", "test")
MIN_SIZE = 16
#: the largest side rendered: one 1024 px scene per chunk keeps the ray caster's tensors near 1 GB
MAX_SIZE = 1024
#: scenes per internal chunk: larger calls become memory-bound (measured), so they are split; big
#: images get fewer scenes per chunk (peak memory is ~0.5 GB for 64 x 128 x 128 px)
MAX_CHUNK = 64
MAX_CHUNK_PIXELS = 64 * 128 * 128
#: shadow rays stop this fraction short of the surface point, so a surface does not shadow itself
SHADOW_STOP = 1.0 - 1e-3
NUM_MATERIALS = FIRST_PRIM_MATERIAL + MAX_PRIMITIVES  # rows per scene in the material table


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"unknown scene split {split!r}; use one of: {', '.join(SPLITS)}")
    return split


def check_size(size: int) -> int:
    message = f"scene image size must be an integer in [{MIN_SIZE}, {MAX_SIZE}] (e.g. 128)"
    value = as_index(size, message)
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise ConfigError(f"{message}, got {size!r}")
    return value


def chunk_size(size: int) -> int:
    """Scenes per internal chunk: at most MAX_CHUNK, and at most MAX_CHUNK_PIXELS pixels."""
    return max(1, min(MAX_CHUNK, MAX_CHUNK_PIXELS // (size * size)))


def as_index(value, message: str) -> int:
    """``value`` as a Python int (ints, numpy integers, integer 0-d tensors), else ConfigError."""
    if isinstance(value, bool):
        raise ConfigError(f"{message}, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ConfigError(f"{message}, got {value!r}") from None


@functools.lru_cache(maxsize=8)
def _pixel_rays(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return pixel_rays(size)


def _render_chunk(style: Style, split: str, indices: Sequence[int], size: int, seed: int) -> dict:
    B, N = len(indices), size * size
    layouts, apps = [], []
    for i in indices:
        layout = sample_layout(python_rng(geometry_seed(seed, split, i)))
        a_seed = appearance_seed(seed, style.name, split, i)
        layouts.append(layout)
        apps.append(style.sample(python_rng(a_seed), layout, noise_seed=a_seed ^ 0x5EED))
    batch = SceneBatch.from_layouts(layouts, MAX_PAINTINGS)
    xs, ys = _pixel_rays(size)
    xs, ys = xs.view(1, N), ys.view(1, N)
    d = []
    for i in range(3):  # world direction = x * right + y * up + forward (elementwise: no BLAS)
        di = xs * batch.right[i]
        di += ys * batch.up[i]
        di += batch.forward[i]
        d.append(di)
    rays = raycast.Rays(*batch.origin, *d)
    t_axes = raycast.room_exit(rays, *batch.room)
    t_room = torch.minimum(torch.minimum(t_axes[0], t_axes[1]), t_axes[2])
    t, slot, cap = raycast.nearest_hit(rays, t_room, batch.boxes, batch.quadrics)
    surf = surfaces(batch, rays, t, slot, cap, t_axes)

    H = W = size
    depth = t.view(B, 1, H, W)
    normals = torch.stack(camera_normals(surf.n, batch.right, batch.up, batch.forward), dim=1)
    edge = boundaries(surf.cls.view(B, H, W), surf.obj.view(B, H, W), t.view(B, H, W))

    app = AppearanceBatch.from_appearances(apps, N, sensor_noise=style.noise_sigma[1] > 0)
    direct = direct_light(app, surf.p, surf.n)
    light = app.light
    shadow_rays = raycast.Rays(*light, *(surf.p[i] - light[i] for i in range(3)))
    shadowed = raycast.occluded(shadow_rays, batch.boxes, batch.quadrics, SHADOW_STOP)
    direct = direct.masked_fill_(shadowed, 0.0)
    mat_col = (torch.arange(B).view(B, 1) * NUM_MATERIALS + surf.mat).view(-1)
    alb = albedo(app.materials, mat_col, surf.u.reshape(-1), surf.v.reshape(-1), app.noise, N)
    ray_len = t * torch.sqrt(rays.dxz2 + rays.dy2)
    image = shade(style, app, tuple(c.view(B, N) for c in alb), direct, ray_len, edge.view(B, N))
    return {
        "image": image.view(B, 3, H, W),
        "semseg": surf.cls.view(B, H, W),
        "depth": depth,
        "normals": normals.view(B, 3, H, W),
        "edge": edge.view(B, 1, H, W).float(),
        "intrinsics": intrinsics(size).expand(B, 3, 3).clone(),
        "cam_to_world": batch.cam_to_world,
    }


def render_scenes(
    domain: str,
    split: str,
    indices: Sequence[int],
    size: int = 128,
    seed: int = 0,
    return_cameras: bool = False,
) -> dict[str, torch.Tensor]:
    """Render scenes ``indices`` of ``split`` in appearance ``domain``.

    Returns ``image`` (B, 3, H, W) float32 in [0, 1]; ``semseg`` (B, H, W) int64 in
    ``[0, len(CLASS_NAMES))``; ``depth`` (B, 1, H, W) float32 z-depth in metres (> 0 everywhere);
    ``normals`` (B, 3, H, W) unit vectors in the camera frame (x right, y up, z towards the camera);
    ``edge`` (B, 1, H, W) float32 in {0, 1}. With ``return_cameras`` also ``intrinsics`` (B, 3, 3)
    and ``cam_to_world`` (B, 4, 4) (world: y up, floor at y = 0). H = W = ``size``.

    A sample depends only on (seed, domain, split, index), never on the batching; geometry (and
    therefore every label) depends only on (seed, split, index), shared by all domains.
    """
    style = DOMAINS.get(domain)
    check_split(split)
    size = check_size(size)
    idx = [as_index(i, "scene indices must be non-negative integers") for i in indices]
    if any(i < 0 for i in idx):
        raise ConfigError(f"scene indices must be non-negative integers, got {[i for i in idx if i < 0][:3]}")
    seed = as_index(seed, "scene seed must be an integer")
    keys = ("image", "semseg", "depth", "normals", "edge")
    keys += ("intrinsics", "cam_to_world") if return_cameras else ()
    if not idx:
        H = size
        empty = {
            "image": (3, H, H),
            "depth": (1, H, H),
            "normals": (3, H, H),
            "edge": (1, H, H),
            "intrinsics": (3, 3),
            "cam_to_world": (4, 4),
        }
        out = {k: torch.zeros((0, *empty[k])) for k in keys if k != "semseg"}
        out["semseg"] = torch.zeros((0, H, H), dtype=torch.int64)
        return {k: out[k] for k in keys}
    chunk = chunk_size(size)
    parts = [_render_chunk(style, split, idx[i : i + chunk], size, seed) for i in range(0, len(idx), chunk)]
    if len(parts) == 1:
        return {k: parts[0][k] for k in keys}
    return {k: torch.cat([p[k] for p in parts]) for k in keys}
