"""Procedural multitask indoor scenes: taskadapt's embedded default dataset.

Rooms with a floor, walls, a ceiling, a rug and paintings, and 3-6 primitives (boxes, spheres,
cylinders, cones) resting on the floor, seen by a pinhole camera from random poses inside the room;
rendered by analytic ray casting in vectorised eager torch (CPU, float32) with exact, mutually
consistent labels: semantic segmentation (:data:`CLASS_NAMES`), z-depth in metres, camera-frame
unit normals and 1-pixel boundaries. Appearance comes in named domains (:func:`list_domains`)
over one geometry distribution: the same (seed, split, index) has the same geometry and labels in
every domain.

>>> from taskadapt.data.scenes import render_scenes
>>> batch = render_scenes("studio", "train", range(4), size=64)
>>> batch["image"].shape, batch["semseg"].shape
(torch.Size([4, 3, 64, 64]), torch.Size([4, 64, 64]))
"""

from __future__ import annotations

from taskadapt.data.scenes.classes import CLASS_NAMES, EDGE_DEPTH_REL_THRESHOLD
from taskadapt.data.scenes.domains import DOMAINS, list_domains
from taskadapt.data.scenes.render import GENERATOR_VERSION, SPLITS, render_scenes
from taskadapt.data.scenes.writer import write_scenes

__all__ = [
    "CLASS_NAMES",
    "DOMAINS",
    "EDGE_DEPTH_REL_THRESHOLD",
    "GENERATOR_VERSION",
    "SPLITS",
    "list_domains",
    "render_scenes",
    "write_scenes",
]
