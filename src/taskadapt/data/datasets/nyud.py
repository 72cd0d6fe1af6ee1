"""NYUD-v2 multitask reader: the ``NYUD_MT`` and ``NYUDv2`` layouts.

One reader covers both folder flavours with the same tree, choosing each file's encoding by its
extension (so a mixed folder also works):

* ``NYUD_MT`` (MTL-PyTorch / ATRC-HEAD / MTLoRA): images ``.jpg`` (480x640), depth/normals/edge ``.npy``;
* ``NYUDv2`` (ATRC / InvPT / TaskPrompter): images ``.png`` (425x560), normals ``.png`` (n = 2v/255 - 1),
  edge ``.png`` (0/255).

The procedural scenes use the same tree; their reader (:mod:`.scenes`) extends this one.

Conventions (as the field's loaders): semseg 0 -> 255, other values shifted by -1 (NYU-40 -> 0..39);
depth 0 -> NaN; normals with (near-)zero norm -> NaN; edge kept as {0, 1}. Normals are returned in the
frame they are stored in: we have not verified that the distributed NYUD normals use exactly the
x-right / y-up / z-towards-camera frame of :mod:`taskadapt.data.sample`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from taskadapt.data.datasets.base import MultiTaskDataset, float_map, normals_tensor, register_dataset, void_zero_label
from taskadapt.data.datasets.files import (
    as_2d,
    as_hwc3,
    decode_png_normals,
    first_existing,
    load_npy,
    load_png,
    load_png_2d,
    png_to_unit,
)

#: the 40 NYU-v2 classes of Gupta et al. (2013), in label order (raw label k + 1 -> index k)
NYU40_CLASSES = [
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
]

_DIRS = {"image": "images", "semseg": "segmentation", "depth": "depth", "normals": "normals", "edge": "edge"}
_EXTS = {"image": (".jpg", ".png"), "semseg": (".png",), "depth": (".npy",),
         "normals": (".npy", ".png"), "edge": (".npy", ".png")}


@register_dataset
class NYUDDataset(MultiTaskDataset):
    """NYUD-v2 (795 train / 654 val images, 40 classes).

    Args:
        root: the ``NYUD_MT`` / ``NYUDv2`` folder.
        split: a file name in ``gt_sets/`` (``train``, ``val``, ``test`` if present).
        tasks: subset of ``semseg, depth, normals, edge``; None = those whose folder exists.
        transform: applied to each sample dict.
    """

    FORMAT = "nyud"
    EDGE_THIN_TARGETS = True  # NYUD's edge maps (from segment boundaries) are 2-3 px wide
    TASKS = ("semseg", "depth", "normals", "edge")
    SOURCE = ("NYUD_MT.tgz (MTL-PyTorch / ATRC-HEAD / MTLoRA; Google Drive id "
              "14EAEMXmd3zs2hIMY63UhHPSFPDAkiTzw) or NYUDv2.tar.gz (ATRC / InvPT), both derived from "
              "the labelled NYU Depth v2 set (Silberman et al. 2012)")
    LAYOUT = """
        <root>/
          gt_sets/<split>.txt        one id per line (train, val, optionally test)
          images/<id>.jpg|.png       RGB
          segmentation/<id>.png      uint8: 0 = void, 1..K = classes (NYU-40: K = 40)
          depth/<id>.npy             float (H, W) metres, 0 = invalid
          normals/<id>.npy|.png      npy (H, W, 3) in [-1, 1], all-zero = invalid; png n = 2v/255 - 1
          edge/<id>.npy|.png         {0, 1} (png: 0/255)
    """
    REQUIRED = ("gt_sets", "images")
    SPLIT_LISTS = "gt_sets"

    def _task_dirs(self, task: str) -> list[Path]:
        return [self.root / _DIRS[task]]

    def _class_names(self, task: str) -> list[str]:
        return list(NYU40_CLASSES)

    def _path(self, key: str, sample_id: str) -> Path:
        folder = self.root / _DIRS[key]
        return first_existing(*(folder / f"{sample_id}{ext}" for ext in _EXTS[key]))

    def files(self, sample_id: str) -> dict[str, list[Path]]:
        return {key: [self._path(key, sample_id)] for key in ("image", *self.tasks)}

    def _load_task(self, task: str, paths: list[Path]) -> torch.Tensor:
        path = paths[0]
        if task == "semseg":
            return void_zero_label(load_png_2d(path))
        if task == "depth":
            depth = as_2d(load_npy(path), path).astype(np.float32)
            return float_map(np.where(depth == 0, np.float32(np.nan), depth))
        if task == "normals":
            if path.suffix == ".png":
                vec = decode_png_normals(load_png(path), path)
            else:
                vec = as_hwc3(load_npy(path), path).astype(np.float32)
            return normals_tensor(vec)
        # edge
        if path.suffix == ".png":
            return float_map(png_to_unit(load_png_2d(path)))
        return float_map(as_2d(load_npy(path), path).astype(np.float32))
