"""Taskonomy reader: per-building folders of ``point_<p>_view_<v>_domain_<domain>.png`` files.

Two folder orders are recognised (both name files the same way):

* building-first, as the per-building tar files of taskonomy.stanford.edu unpack:
  ``<root>/<building>/<domain>/point_<p>_view_<v>_domain_<domain>.png``;
* domain-first, as the Omnidata downloader and dataloaders use:
  ``<root>/<domain>/<building>/point_<p>_view_<v>_domain_<domain>.png``.

Domains read: ``rgb``, ``segment_semantic``, ``depth_euclidean`` (or ``depth_zbuffer``), ``normal``,
``edge_texture``; ``point_info`` (JSON) only for ``depth="euclidean_to_z"``.

Splits are lists of buildings: pass ``buildings=[...]``, or put one building name per line in
``<root>/splits/<split>.txt`` (our convention; the official tiny/medium/full split CSVs can be
turned into such files). ``split="all"`` uses every building found.

Encodings and conversions:

* ``segment_semantic``: 0 = unlabelled -> 255; k = 1..17 -> k - 1 over 17 classes (background +
  16 COCO indoor classes, the Taskonomy release's ``coco_selected_classes.txt``).
* ``depth_euclidean``: uint16 in units of 1/512 m; 65535 (no geometry / too far) and 0 -> NaN. It
  is the distance along the viewing ray, NOT the z-depth of NYUD/Cityscapes. Our default keeps it
  as is (``depth="euclidean"``, our interpretation); ``depth="zbuffer"`` reads ``depth_zbuffer``
  (same encoding, z-depth); ``depth="euclidean_to_z"`` converts with the pinhole intrinsics from
  ``point_info``'s ``field_of_view_rads`` (square image, principal point at the centre):
  z = d / sqrt(1 + ((u - cx) / f)^2 + ((v - cy) / f)^2), f = (W / 2) / tan(fov / 2).
* ``normal``: uint8 RGB, n = 2v/255 - 1 in the 2D-3D-S / Omnidata camera frame (x right, y DOWN,
  z towards the camera; a wall facing the camera is (128, 128, 255)); we negate y to reach our
  x-right / y-up / z-towards-camera frame. Grey (128, 128, 128) pixels (no geometry) decode to a
  near-zero vector and become NaN.
* ``edge_texture``: 16-bit Canny magnitudes without non-maximum suppression. Binarised as
  ``value / 65535 > edge_threshold``; the default 0.04 (our interpretation) is half of the 0.08
  saturation level Taskonomy's own edge2d training config rescales these labels by.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from taskadapt.data.datasets.base import (
    MultiTaskDataset,
    float_map,
    normals_tensor,
    png16_depth,
    register_dataset,
    void_zero_label,
)
from taskadapt.data.datasets.files import (
    UnreadableFile,
    decode_png_normals,
    load_json,
    load_png,
    load_png16,
    load_png_2d,
    png_to_unit,
    read_lines,
)
from taskadapt.errors import ConfigError

#: Taskonomy segment_semantic classes (raw value k + 1 -> index k)
TASKONOMY_CLASSES = [
    "background", "bottle", "chair", "couch", "potted plant", "bed", "dining table", "toilet", "tv",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
]
DEPTH_MODES = ("euclidean", "zbuffer", "euclidean_to_z")
_DOMAINS = {"image": "rgb", "semseg": "segment_semantic", "normals": "normal", "edge": "edge_texture"}
_NAME = re.compile(r"^point_(\d+)_view_(\d+)_domain_rgb\.png$")


@register_dataset
class TaskonomyDataset(MultiTaskDataset):
    """Taskonomy (Zamir et al. 2018) indoor buildings, 512x512 views.

    Args:
        root: folder holding the buildings (either folder order, see the module docstring).
        split: name of ``<root>/splits/<split>.txt`` (one building per line), or ``all``; only a
            label when ``buildings`` is given.
        tasks: subset of ``semseg, depth, normals, edge``; None = those whose folders exist.
        transform: applied to each sample dict.
        buildings: explicit building names (overrides the split file).
        depth: ``euclidean`` (ray distance, default), ``zbuffer`` or ``euclidean_to_z``.
        edge_threshold: binarisation threshold for ``edge_texture`` as a fraction of full scale.
    """

    FORMAT = "taskonomy"
    TASKS = ("semseg", "depth", "normals", "edge")
    SOURCE = ("Taskonomy (Zamir et al. 2018), http://taskonomy.stanford.edu: per-building tar files "
              "<building>_<domain>.tar, or the Omnidata downloader (`omnitools.download rgb normal ... "
              "--components taskonomy`, EPFL-VILAB/omnidata)")
    LAYOUT = """
        <root>/
          <building>/rgb/point_<p>_view_<v>_domain_rgb.png                 RGB 512x512
          <building>/segment_semantic/..._domain_segment_semantic.png      uint8 0 = unlabelled, 1..17
          <building>/depth_euclidean/..._domain_depth_euclidean.png        uint16 1/512 m, 65535 = invalid
          <building>/normal/..._domain_normal.png                          uint8 RGB n = 2v/255 - 1
          <building>/edge_texture/..._domain_edge_texture.png              uint16 edge magnitude
          splits/<split>.txt                                               one building per line
        (or domain-first: <root>/<domain>/<building>/point_..._domain_<domain>.png)
    """
    SPLIT_LISTS = "splits"

    def _configure(
        self,
        buildings: Sequence[str] | str | None = None,
        depth: str = "euclidean",
        edge_threshold: float = 0.04,
    ) -> None:
        if depth not in DEPTH_MODES:
            raise ConfigError(f"taskonomy depth={depth!r} is not one of {', '.join(DEPTH_MODES)}")
        if not 0.0 <= float(edge_threshold) < 1.0:
            raise ConfigError(f"taskonomy edge_threshold must be in [0, 1), got {edge_threshold}")
        if isinstance(buildings, str):
            buildings = [b.strip() for b in buildings.split(",") if b.strip()]
        self._explicit_buildings = list(buildings) if buildings is not None else None
        self.depth_mode = depth
        self.edge_threshold = float(edge_threshold)

    # ------------------------------------------------------------------------------ layout

    @staticmethod
    def _domain_first(root: Path) -> bool:
        return (root / "rgb").is_dir()

    @classmethod
    def _all_buildings(cls, root: Path) -> list[str]:
        if cls._domain_first(root):
            return sorted(d.name for d in (root / "rgb").iterdir() if d.is_dir())
        if not root.is_dir():
            return []
        return sorted(d.name for d in root.iterdir() if (d / "rgb").is_dir())

    @classmethod
    def splits(cls, root: str | Path) -> list[str]:
        return sorted({*super().splits(root), "all"})

    def _split_source(self) -> Path | None:
        if self._explicit_buildings is not None or self.split == "all":
            return None
        return self._split_list()

    @cached_property
    def buildings(self) -> list[str]:
        """The buildings of this split."""
        if self._explicit_buildings is not None:
            return list(self._explicit_buildings)
        if self.split == "all":
            return self._all_buildings(self.root)
        return self.read_or_error(read_lines, self._split_list(), "write one building name per line")

    def _domain_dir(self, domain: str, building: str) -> Path:
        if self._domain_first(self.root):
            return self.root / domain / building
        return self.root / building / domain

    def _file(self, domain: str, sample_id: str, ext: str = "png") -> Path:
        building, view = sample_id.split("/", 1)
        return self._domain_dir(domain, building) / f"{view}_domain_{domain}.{ext}"

    def _depth_domain(self) -> str:
        return "depth_zbuffer" if self.depth_mode == "zbuffer" else "depth_euclidean"

    def _domain(self, task: str) -> str:
        return self._depth_domain() if task == "depth" else _DOMAINS[task]

    @cached_property
    def _checked_buildings(self) -> list[str]:
        """The split's buildings, after checking each has an ``rgb`` folder."""
        if not self.buildings:
            raise self.error(f"no buildings found for split '{self.split}' under {self.root}",
                             "check root, the split file, or pass buildings=[...]")
        for building in self.buildings:
            folder = self._domain_dir("rgb", building)
            if not folder.is_dir():
                raise self.error(f"building '{building}' of split '{self.split}' has no folder {folder}",
                                 "download that building or remove it from the split")
        return self.buildings

    def _task_dirs(self, task: str) -> list[Path]:
        return [self._domain_dir(self._domain(task), building) for building in self._checked_buildings]

    def _read_ids(self) -> list[str]:
        ids: list[str] = []
        for building in self._checked_buildings:
            views = []
            for p in self._domain_dir("rgb", building).iterdir():
                m = _NAME.match(p.name)
                if m:
                    views.append((int(m.group(1)), int(m.group(2))))
            ids.extend(f"{building}/point_{pt}_view_{vw}" for pt, vw in sorted(views))
        return ids

    def _class_names(self, task: str) -> list[str]:
        return list(TASKONOMY_CLASSES)

    def files(self, sample_id: str) -> dict[str, list[Path]]:
        out = {"image": [self._file("rgb", sample_id)]}
        for task in self.tasks:
            out[task] = [self._file(self._domain(task), sample_id)]
            if task == "depth" and self.depth_mode == "euclidean_to_z":
                out[task].append(self._file("point_info", sample_id, "json"))
        return out

    # ------------------------------------------------------------------------------ loading

    def _load_task(self, task: str, paths: list[Path]) -> torch.Tensor:
        path = paths[0]
        if task == "semseg":
            return void_zero_label(load_png_2d(path, multi_channel=True))
        if task == "depth":
            return float_map(self._load_depth(path, paths[1:]))
        if task == "normals":
            vec = decode_png_normals(load_png(path), path)
            vec[..., 1] *= -1.0  # stored y points down; ours points up
            return normals_tensor(vec)
        # edge
        unit = png_to_unit(load_png_2d(path))
        return float_map((unit > self.edge_threshold).astype(np.float32))

    def _load_depth(self, path: Path, extra: list[Path]) -> np.ndarray:
        depth = png16_depth(load_png16(path, "depth"), 512.0)
        if self.depth_mode != "euclidean_to_z":
            return depth
        info_path = extra[0]
        info = load_json(info_path)
        fov = info.get("field_of_view_rads") if isinstance(info, dict) else None
        if not isinstance(fov, int | float) or not 0 < fov < math.pi:
            raise UnreadableFile(info_path, "no valid 'field_of_view_rads' entry")
        h, w = depth.shape
        f = (w / 2.0) / math.tan(fov / 2.0)
        u = (np.arange(w, dtype=np.float64) + 0.5 - w / 2.0) / f
        v = (np.arange(h, dtype=np.float64) + 0.5 - h / 2.0) / f
        ray = np.sqrt(1.0 + u[None, :] ** 2 + v[:, None] ** 2)
        return (depth / ray).astype(np.float32)
