"""Random scene geometry: a room, primitives resting on its floor, decals and a camera pose.

World frame: y up, the room is the box ``[0, W] x [0, H] x [0, D]`` (floor at y = 0). Primitives
stand on the floor (a sphere of radius r has its centre at y = r), their footprints stay inside the
walls and never overlap one another, and the camera stands in free floor space, so it is outside
every primitive. Everything here is plain Python floats from one :class:`random.Random` per scene.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from taskadapt.data.scenes.camera import CameraPose, look_pose

PRIMITIVE_KINDS = ("box", "sphere", "cylinder", "cone")
MAX_PRIMITIVES = 6
MIN_PRIMITIVES = 3
MAX_PAINTINGS = 3
#: free space kept between two footprints, between a footprint and a wall, around the camera (m)
FOOTPRINT_GAP = 0.12
WALL_MARGIN = 0.05
CAMERA_CLEARANCE = 0.45
MIN_CAMERA_CLEARANCE = 0.15  # objects closer than this to the camera are removed


@dataclass(frozen=True)
class Primitive:
    """One object on the floor. ``half`` are box half extents (x, z) or (r, r) for round kinds."""

    kind: str
    x: float
    z: float
    yaw: float
    half: tuple[float, float]
    height: float

    @property
    def footprint(self) -> float:
        """Radius of the circle that contains the footprint (overlap tests)."""
        return math.hypot(*self.half) if self.kind == "box" else self.half[0]


@dataclass(frozen=True)
class Painting:
    """A rectangle on wall ``wall`` (0: x=0, 1: x=W, 2: z=0, 3: z=D); ``u`` runs along the wall."""

    wall: int
    u0: float
    u1: float
    y0: float
    y1: float


@dataclass(frozen=True)
class SceneLayout:
    """The geometry of one scene (all lengths in metres)."""

    room: tuple[float, float, float]  # W, H, D
    primitives: tuple[Primitive, ...]
    rug: tuple[float, float, float, float] | None  # x0, x1, z0, z1
    paintings: tuple[Painting, ...]
    camera: CameraPose


def _sample_primitive(rng: random.Random) -> tuple[str, tuple[float, float], float]:
    kind = PRIMITIVE_KINDS[int(rng.random() * len(PRIMITIVE_KINDS))]
    if kind == "box":
        half = (rng.uniform(0.18, 0.6), rng.uniform(0.18, 0.6))
        return kind, half, rng.uniform(0.3, 1.35)
    if kind == "sphere":
        r = rng.uniform(0.2, 0.6)
        return kind, (r, r), 2.0 * r
    r = rng.uniform(0.15, 0.45) if kind == "cylinder" else rng.uniform(0.2, 0.5)
    return kind, (r, r), rng.uniform(0.3, 1.35)


def _fits(x: float, z: float, rad: float, placed: list[tuple[float, float, float]]) -> bool:
    return all(math.hypot(x - px, z - pz) >= rad + pr + FOOTPRINT_GAP for px, pz, pr in placed)


def _place_primitives(rng: random.Random, W: float, D: float) -> tuple[Primitive, ...]:
    n = MIN_PRIMITIVES + int(rng.random() * (MAX_PRIMITIVES - MIN_PRIMITIVES + 1))
    placed: list[tuple[float, float, float]] = []
    prims: list[Primitive] = []
    for _ in range(n):
        kind, half, height = _sample_primitive(rng)
        yaw = rng.uniform(0.0, math.pi) if kind == "box" else 0.0
        for attempt in range(40):
            if attempt and attempt % 10 == 0:  # crowded room: shrink the object and keep trying
                half = (0.8 * half[0], 0.8 * half[1])
                height = 2.0 * half[0] if kind == "sphere" else height
            rad = math.hypot(*half) if kind == "box" else half[0]
            lo = WALL_MARGIN + rad
            x, z = rng.uniform(lo, W - lo), rng.uniform(lo, D - lo)
            if _fits(x, z, rad, placed):
                placed.append((x, z, rad))
                prims.append(Primitive(kind, x, z, yaw, half, height))
                break
    return tuple(prims)


def _clearance(x: float, z: float, prims: tuple[Primitive, ...]) -> float:
    return min((math.hypot(x - p.x, z - p.z) - p.footprint for p in prims), default=math.inf)


def _sample_camera(
    rng: random.Random, W: float, H: float, D: float, prims: tuple[Primitive, ...]
) -> tuple[CameraPose, tuple[Primitive, ...]]:
    """A pose in free floor space, usually 0.6-2.6 m from a chosen object's footprint and looking
    roughly at it; returns the pose and the primitives (one is removed in the never-observed case
    that no spot clears them all by :data:`MIN_CAMERA_CLEARANCE`)."""
    margin = 0.35
    target = prims[int(rng.random() * len(prims))] if prims and rng.random() < 0.8 else None
    best, best_clear = None, -math.inf
    for attempt in range(60):
        if target is not None and attempt < 40:
            ang, dist = rng.uniform(-math.pi, math.pi), target.footprint + rng.uniform(0.6, 2.6)
            x, z = target.x + dist * math.sin(ang), target.z + dist * math.cos(ang)
            if not (margin <= x <= W - margin and margin <= z <= D - margin):
                continue
        else:
            x, z = rng.uniform(margin, W - margin), rng.uniform(margin, D - margin)
        clear = _clearance(x, z, prims)
        if clear >= CAMERA_CLEARANCE:
            best = (x, z)
            break
        if clear > best_clear:  # fallback: the freest spot seen
            best, best_clear = (x, z), clear
    if best is None:  # only when every ring sample fell outside the room: a uniform spot
        best = (rng.uniform(margin, W - margin), rng.uniform(margin, D - margin))
    x, z = best
    while prims and _clearance(x, z, prims) < MIN_CAMERA_CLEARANCE:  # never seen so far; a guarantee
        nearest = min(prims, key=lambda p: math.hypot(x - p.x, z - p.z) - p.footprint)
        prims = tuple(p for p in prims if p is not nearest)
        target = target if target in prims else None
    y = rng.uniform(1.0, min(1.8, H - 0.3))
    if target is not None:
        tx, ty, tz = target.x - x, 0.5 * target.height - y, target.z - z
        yaw = math.atan2(tx, tz) + math.radians(rng.uniform(-18.0, 18.0))
        pitch = math.atan2(ty, math.hypot(tx, tz)) + math.radians(rng.uniform(-6.0, 12.0))
    else:
        yaw = rng.uniform(-math.pi, math.pi)
        pitch = math.radians(rng.uniform(-25.0, 15.0))
    pitch = min(max(pitch, math.radians(-55.0)), math.radians(15.0))
    roll = math.radians(rng.uniform(-4.0, 4.0))
    return look_pose((x, y, z), yaw, pitch, roll), prims


def _sample_rug(rng: random.Random, W: float, D: float) -> tuple[float, float, float, float] | None:
    if rng.random() >= 0.8:
        return None
    w, d = rng.uniform(0.8, min(2.6, W - 0.6)), rng.uniform(0.6, min(2.0, D - 0.6))
    x0, z0 = rng.uniform(0.3, W - 0.3 - w), rng.uniform(0.3, D - 0.3 - d)
    return (x0, x0 + w, z0, z0 + d)


def _sample_paintings(rng: random.Random, W: float, H: float, D: float) -> tuple[Painting, ...]:
    out = []
    n = 1 + int(rng.random() * MAX_PAINTINGS) if rng.random() < 0.95 else 0
    for _ in range(n):
        wall = int(rng.random() * 4)
        length = D if wall < 2 else W
        w, h = rng.uniform(0.5, 1.5), rng.uniform(0.4, 1.0)
        u0 = rng.uniform(0.2, length - 0.2 - w)
        yc = rng.uniform(1.1 + 0.5 * h, min(2.1, H - 0.15 - 0.5 * h))
        out.append(Painting(wall, u0, u0 + w, yc - 0.5 * h, yc + 0.5 * h))
    return tuple(out)


def sample_layout(rng: random.Random) -> SceneLayout:
    """Draw one scene's geometry from ``rng`` (the scene's geometry stream)."""
    W, D, H = rng.uniform(3.0, 7.0), rng.uniform(3.0, 7.0), rng.uniform(2.4, 3.2)
    prims = _place_primitives(rng, W, D)
    rug = _sample_rug(rng, W, D)
    paintings = _sample_paintings(rng, W, H, D)
    camera, prims = _sample_camera(rng, W, H, D, prims)
    return SceneLayout(room=(W, H, D), primitives=prims, rug=rug, paintings=paintings, camera=camera)
