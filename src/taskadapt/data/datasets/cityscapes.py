"""Cityscapes reader: fine semantic labels (19 train classes) and metric depth from stereo disparity.

* ``semseg``: ``gtFine/<split>/<city>/<stem>_gtFine_labelIds.png`` (uint8 label ids of the official
  ``labels.py``) mapped to the 19 train ids; every other id -> 255. With ``num_classes=16`` the map is
  the 16 classes shared with SYNTHIA (the UDA evaluation protocol, see :data:`SYNTHIA16_TRAINIDS`).
* ``depth``: ``disparity/<split>/<city>/<stem>_disparity.png`` (uint16 p) gives d = (p - 1) / 256 px
  for p > 0; ``camera/<split>/<city>/<stem>_camera.json`` gives ``extrinsic.baseline`` (m) and
  ``intrinsic.fx`` (px); depth = baseline * fx / d. p = 0 (no match) and p = 1 (d = 0) -> NaN.
  The disparity maps are SGM stereo estimates: noisy, with holes, not ground-truth depth.

Ids are ``<city>/<city>_<seq>_<frame>``; splits are the folders of ``leftImg8bit/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from taskadapt.data.datasets.base import MultiTaskDataset, float_map, int_label, lookup, register_dataset
from taskadapt.data.datasets.files import UnreadableFile, load_json, load_png16, load_png_2d
from taskadapt.errors import ConfigError

CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
]
#: official label id -> train id (cityscapesScripts ``labels.py``); all other ids are ignored
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                  25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
#: the 16 Cityscapes train ids SYNTHIA also labels (no terrain 9, truck 14, train 16), in train-id
#: order: 16-class index k is train id SYNTHIA16_TRAINIDS[k] (the UDA "SYNTHIA -> Cityscapes" protocol)
SYNTHIA16_TRAINIDS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18]
SYNTHIA16_CLASSES = [CITYSCAPES_CLASSES[t] for t in SYNTHIA16_TRAINIDS]


def _table(mapping: dict[int, int], size: int = 256) -> np.ndarray:
    table = np.full(size, 255, dtype=np.int64)
    for src, dst in mapping.items():
        table[src] = dst
    return table


def trainid_to_16() -> dict[int, int]:
    """Cityscapes train id -> 16-class index (train ids without a SYNTHIA counterpart are absent)."""
    return {t: k for k, t in enumerate(SYNTHIA16_TRAINIDS)}


def check_num_classes(fmt: str, num_classes: int) -> int:
    if num_classes not in (16, 19):
        raise ConfigError(f"{fmt} num_classes must be 19 (Cityscapes train ids) or 16 (the classes shared "
                          f"by SYNTHIA and Cityscapes), got {num_classes}")
    return int(num_classes)


def train_id_table(to_train: dict[int, int], num_classes: int, size: int = 256) -> np.ndarray:
    """(size,) int64 lookup: raw label -> Cityscapes train id (19) or 16-class index; others -> 255."""
    mapping = dict(to_train)
    if num_classes == 16:
        to16 = trainid_to_16()
        mapping = {raw: to16[t] for raw, t in mapping.items() if t in to16}
    return _table(mapping, size)


def train_id_classes(num_classes: int) -> list[str]:
    """The class names of the 19 Cityscapes train ids or of the 16 SYNTHIA-shared classes."""
    return list(CITYSCAPES_CLASSES if num_classes == 19 else SYNTHIA16_CLASSES)


@register_dataset
class CityscapesDataset(MultiTaskDataset):
    """Cityscapes (2,975 train / 500 val / 1,525 test images of 1024x2048).

    Args:
        root: the folder holding ``leftImg8bit/``, ``gtFine/``, ``disparity/``, ``camera/``.
        split: a folder of ``leftImg8bit/`` (train, val, test; test labels are withheld).
        tasks: subset of ``semseg, depth``; None = those whose folders exist.
        transform: applied to each sample dict.
        num_classes: 19 (default) or 16 (SYNTHIA-shared classes, for SYNTHIA -> Cityscapes).
    """

    FORMAT = "cityscapes"
    TASKS = ("semseg", "depth")
    SOURCE = ("https://www.cityscapes-dataset.com (registration): leftImg8bit_trainvaltest.zip, "
              "gtFine_trainvaltest.zip, disparity_trainvaltest.zip, camera_trainvaltest.zip")
    LAYOUT = """
        <root>/
          leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png    RGB
          gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     uint8 label ids
          disparity/<split>/<city>/<city>_<seq>_<frame>_disparity.png        uint16, d = (p - 1) / 256
          camera/<split>/<city>/<city>_<seq>_<frame>_camera.json             extrinsic.baseline, intrinsic.fx
    """
    REQUIRED = ("leftImg8bit",)

    def _configure(self, num_classes: int = 19) -> None:
        self._n = check_num_classes("cityscapes", num_classes)
        self._lut = train_id_table(LABEL_TO_TRAIN, self._n)

    @classmethod
    def splits(cls, root: str | Path) -> list[str]:
        folder = Path(root) / "leftImg8bit"
        return sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []

    def _split_source(self) -> Path:
        return self.root / "leftImg8bit" / self.split

    def _read_ids(self) -> list[str]:
        ids = []
        suffix = "_leftImg8bit.png"
        for city in sorted(d for d in self._split_source().iterdir() if d.is_dir()):
            stems = sorted(p.name[: -len(suffix)] for p in city.glob(f"*{suffix}"))
            ids.extend(f"{city.name}/{s}" for s in stems)
        return ids

    def _task_dirs(self, task: str) -> list[Path]:
        folders = ["gtFine"] if task == "semseg" else ["disparity", "camera"]
        return [self.root / folder / self.split for folder in folders]

    def _class_names(self, task: str) -> list[str]:
        return train_id_classes(self._n)

    def files(self, sample_id: str) -> dict[str, list[Path]]:
        city, stem = sample_id.split("/", 1)

        def f(folder: str, suffix: str) -> Path:
            return self.root / folder / self.split / city / f"{stem}_{suffix}"

        out = {"image": [f("leftImg8bit", "leftImg8bit.png")]}
        if "semseg" in self.tasks:
            out["semseg"] = [f("gtFine", "gtFine_labelIds.png")]
        if "depth" in self.tasks:
            out["depth"] = [f("disparity", "disparity.png"), f("camera", "camera.json")]
        return out

    def _load_task(self, task: str, paths: list[Path]) -> torch.Tensor:
        if task == "semseg":
            return int_label(lookup(self._lut, load_png_2d(paths[0])))
        return float_map(depth_from_disparity(*paths))


def depth_from_disparity(disparity_path: Path, camera_path: Path) -> np.ndarray:
    """(H, W) float32 metres from a Cityscapes disparity PNG and camera JSON; invalid -> NaN."""
    p = load_png16(disparity_path, "disparity")
    cam = load_json(camera_path)
    try:
        baseline = float(cam["extrinsic"]["baseline"])
        fx = float(cam["intrinsic"]["fx"])
    except (KeyError, TypeError, ValueError):
        raise UnreadableFile(camera_path, "needs numeric extrinsic.baseline and intrinsic.fx") from None
    d = (p.astype(np.float64) - 1.0) / 256.0
    valid = p > 1
    depth = np.full(p.shape, np.nan, dtype=np.float64)
    depth[valid] = baseline * fx / d[valid]
    return depth.astype(np.float32)
