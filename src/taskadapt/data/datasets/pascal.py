"""PASCAL-Context multitask reader (the ``PASCAL_MT`` / ``PASCALContext`` layout of the MTL literature).

Tasks and how each is derived (field conventions unless marked "our interpretation"):

* ``semseg`` -- ``semseg/VOC12/<id>.png`` if present, else ``semseg/pascal-context/<id>.png``
  (uint8, 21 classes incl. background, 255 = ignore), used as is.
* ``parts`` -- from ``human_parts/<id>.mat`` (PASCAL-Part): every *person* object (class 15) that has
  part annotations paints its parts with 6 groups (head, torso, upper arms, lower arms + hands,
  upper legs, lower legs + feet); everything else is background 0. Images without any person with
  parts are entirely 255 (ignored), as ``AddIgnoreRegions`` does in the peers.
* ``saliency`` -- ``sal_distill/<id>.png / 255 > 0.5`` as float {0, 1}.
* ``normals`` -- ``normals_distill/<id>.png`` decoded as n = 2v/255 - 1 (distilled by ASTMT from a
  NYUD-trained teacher, kept in the frame it is stored in), kept only on pixels whose PASCAL-Context
  ``LabelMap`` class is in ``normals_valid_ids``; all other pixels are NaN.
* ``edge`` -- boundaries of the ``LabelMap`` partition in ``pascal-context/trainval/<id>.mat``:
  ``|Laplacian(LabelMap)| > 0`` thinned to one pixel (see :mod:`taskadapt.morphology`), float {0, 1}.

``normals_valid_ids`` (our interpretation). The benchmark masks normals to 169 "NYU-compatible"
PASCAL-Context classes, computed by the peers from two class-name JSON files that ship with their
code under CC BY-NC; we do not redistribute those files or an id list derived from them. Our
default (``None``) keeps the distilled normals on every *labelled* pixel (``LabelMap != 0``), which
is a superset of the benchmark mask: numbers are therefore not directly comparable to papers. To
reproduce the benchmark mask pass the 169 ids (a sequence of ints, or a path to a JSON list / a
text file of whitespace- or comma-separated ints).

The peers write a JSON cache of which images contain persons into ``ImageSets/Parts``; we never
write into the dataset folder: part labels are computed from the ``.mat`` file when a sample is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taskadapt.data.datasets.base import (
    MultiTaskDataset,
    Sample,
    float_map,
    image_tensor,
    int_label,
    normals_tensor,
    register_dataset,
)
from taskadapt.data.datasets.files import (
    UnreadableFile,
    as_2d,
    decode_png_normals,
    first_existing,
    load_mat,
    load_png,
    load_png_2d,
    load_rgb,
)
from taskadapt.errors import ConfigError
from taskadapt.morphology import edges_from_labels

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]
PART_CLASSES = ["background", "head", "torso", "upper arms", "lower arms", "upper legs", "lower legs"]
#: PASCAL-Part person part names -> the 6 groups used by the MTL literature (0 = background)
PART_GROUPS = {
    **dict.fromkeys(["hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear", "rebrow",
                     "reye"], 1),
    "neck": 2, "torso": 2,
    "luarm": 3, "ruarm": 3,
    "llarm": 4, "rlarm": 4, "lhand": 4, "rhand": 4,
    "luleg": 5, "ruleg": 5,
    "llleg": 6, "rlleg": 6, "lfoot": 6, "rfoot": 6,
}
PERSON_CLASS = 15


def _field(record: Any, name: str, position: int) -> Any:
    """A MATLAB struct field by name (scipy record arrays), falling back to its position."""
    names = getattr(getattr(record, "dtype", None), "names", None)
    return record[name] if names and name in names else record[position]


def _scalar(value: Any) -> Any:
    return np.asarray(value).ravel()[0]


def parse_human_parts(mat: dict[str, Any], path: Path) -> np.ndarray | None:
    """PASCAL-Part ``anno`` struct -> (H, W) int64 part-group map, or None if no person has parts.

    Layout: ``anno.objects[k]`` has ``class``, ``class_ind`` (15 = person), ``mask`` and ``parts``
    (struct array of ``part_name``, ``mask``; empty when the object has no part annotation).
    """
    if "anno" not in mat:
        raise UnreadableFile(path, "no 'anno' variable (not a PASCAL-Part annotation)")
    try:
        record = np.asarray(mat["anno"]).ravel()[0]
        objects = np.asarray(_field(record, "objects", 1)).ravel()
        target: np.ndarray | None = None
        for obj in objects:
            parts = np.asarray(_field(obj, "parts", 3))
            if int(_scalar(_field(obj, "class_ind", 1))) != PERSON_CLASS or parts.size == 0:
                continue
            if target is None:
                target = np.zeros(np.asarray(_field(obj, "mask", 2)).shape, dtype=np.int64)
            for part in parts.ravel():
                name = str(_scalar(_field(part, "part_name", 0)))
                if name not in PART_GROUPS:
                    raise UnreadableFile(path, f"unknown person part name {name!r}")
                target[np.asarray(_field(part, "mask", 1)).astype(bool)] = PART_GROUPS[name]
        return target
    except UnreadableFile:
        raise
    except Exception as err:  # malformed struct: wrong nesting, mask shapes, ...
        raise UnreadableFile(path, f"malformed PASCAL-Part struct ({type(err).__name__}: {err})") from None


def parse_id_list(value: Sequence[int] | str | Path | None) -> frozenset[int] | None:
    """``normals_valid_ids`` from ints, a JSON list file, or a text file of ints; None stays None."""
    if value is None:
        return None
    if isinstance(value, str | Path):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"normals_valid_ids file {path} does not exist; pass a list of "
                              "PASCAL-Context class ids or a file holding them")
        text = path.read_text(encoding="utf-8")
        try:
            items: Iterable[Any] = json.loads(text)
        except json.JSONDecodeError:
            items = [t for t in re.split(r"[\s,]+", text) if t]
    else:
        items = value
    try:
        ids = frozenset(int(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(f"normals_valid_ids must be integers (PASCAL-Context class ids), got {value!r}") \
            from None
    return ids


@register_dataset
class PascalContextDataset(MultiTaskDataset):
    """PASCAL-Context multitask (4,998 train / 5,105 val images).

    Args:
        root: the ``PASCAL_MT`` (or ``PASCALContext``) folder.
        split: a file in ``ImageSets/Context/`` (``train``, ``val``).
        tasks: subset of ``semseg, parts, saliency, normals, edge``; None = all whose files exist.
        transform: applied to each sample dict.
        normals_valid_ids: PASCAL-Context class ids whose pixels keep normal labels; None = every
            labelled pixel (see the module docstring for why, and how to get the benchmark's 169).
    """

    FORMAT = "pascal"
    EDGE_TOLERANCE = 0.0075  # the benchmark's maxDist (metrics-and-datasets §4.6)
    TASKS = ("semseg", "parts", "saliency", "normals", "edge")
    SOURCE = ("PASCAL_MT.tgz (ETH Zurich CVL, released with ASTMT / Multi-Task-Learning-PyTorch; the same "
              "tree ships as PASCALContext.tar.gz with ATRC / InvPT): PASCAL VOC 2010 images, "
              "PASCAL-Context labels (Mottaghi et al. 2014), PASCAL-Part (Chen et al. 2014) and "
              "ASTMT's distilled saliency and normals")
    LAYOUT = """
        <root>/
          JPEGImages/<id>.jpg                    e.g. 2008_000002.jpg
          ImageSets/Context/<split>.txt          one id per line (train, val)
          semseg/VOC12/<id>.png                  uint8 0..20, 255 = ignore (looked up first)
          semseg/pascal-context/<id>.png         uint8 0..20, 255 = ignore (fallback)
          human_parts/<id>.mat                   PASCAL-Part 'anno' struct
          sal_distill/<id>.png                   uint8 grey, salient = v/255 > 0.5
          normals_distill/<id>.png               uint8 RGB, n = 2v/255 - 1
          pascal-context/trainval/<id>.mat       'LabelMap' (H, W), 459-class PASCAL-Context labels
    """
    REQUIRED = ("JPEGImages", "ImageSets/Context")
    SPLIT_LISTS = "ImageSets/Context"

    def _configure(self, normals_valid_ids: Sequence[int] | str | Path | None = None) -> None:
        self.normals_valid_ids = parse_id_list(normals_valid_ids)

    def _task_dirs(self, task: str) -> list[Path]:
        return {
            "semseg": [self.root / "semseg"],
            "parts": [self.root / "human_parts"],
            "saliency": [self.root / "sal_distill"],
            "normals": [self.root / "normals_distill", self.root / "pascal-context" / "trainval"],
            "edge": [self.root / "pascal-context" / "trainval"],
        }[task]

    def _class_names(self, task: str) -> list[str]:
        return list(VOC_CLASSES if task == "semseg" else PART_CLASSES)

    def _labelmap_path(self, sample_id: str) -> Path:
        return self.root / "pascal-context" / "trainval" / f"{sample_id}.mat"

    def files(self, sample_id: str) -> dict[str, list[Path]]:
        r = self.root
        paths = {
            "image": [r / "JPEGImages" / f"{sample_id}.jpg"],
            "semseg": [first_existing(r / "semseg" / "VOC12" / f"{sample_id}.png",
                                      r / "semseg" / "pascal-context" / f"{sample_id}.png")],
            "parts": [r / "human_parts" / f"{sample_id}.mat"],
            "saliency": [r / "sal_distill" / f"{sample_id}.png"],
            "normals": [r / "normals_distill" / f"{sample_id}.png", self._labelmap_path(sample_id)],
            "edge": [self._labelmap_path(sample_id)],
        }
        return {k: v for k, v in paths.items() if k == "image" or k in self.tasks}

    def _load_labelmap(self, sample_id: str) -> np.ndarray:
        path = self._labelmap_path(sample_id)
        mat = load_mat(path, ["LabelMap"])
        if "LabelMap" not in mat:
            raise UnreadableFile(path, "no 'LabelMap' variable")
        return as_2d(np.asarray(mat["LabelMap"]), path).astype(np.int64)

    def _load(self, sample_id: str) -> Sample:
        # not the base's per-task _load_task: normals and edge share one LabelMap read, and parts
        # needs the image size
        files = self.files(sample_id)
        rgb = load_rgb(files["image"][0])
        h, w = rgb.shape[:2]
        sample: Sample = {"image": image_tensor(rgb)}
        labelmap: np.ndarray | None = None
        for task in self.tasks:
            path = files[task][0]
            if task == "semseg":
                sample[task] = int_label(load_png_2d(path))
            elif task == "parts":
                target = parse_human_parts(load_mat(path, ["anno"]), path)
                sample[task] = int_label(np.full((h, w), 255, dtype=np.int64) if target is None else target)
            elif task == "saliency":
                salient = load_png_2d(path, multi_channel=True).astype(np.float32) / 255.0 > 0.5
                sample[task] = float_map(salient.astype(np.float32))
            elif task == "normals":
                vec = decode_png_normals(load_png(path), path)
                labelmap = self._load_labelmap(sample_id) if labelmap is None else labelmap
                if labelmap.shape != vec.shape[:2]:
                    raise UnreadableFile(files[task][1], f"LabelMap shape {labelmap.shape} differs from the "
                                                         f"normals' {vec.shape[:2]}")
                keep = labelmap != 0 if self.normals_valid_ids is None else np.isin(
                    labelmap, np.fromiter(self.normals_valid_ids, dtype=np.int64))
                sample[task] = normals_tensor(np.where(keep[..., None], vec, np.float32(0.0)))
            else:  # edge
                labelmap = self._load_labelmap(sample_id) if labelmap is None else labelmap
                sample[task] = float_map(edges_from_labels(labelmap))
        return sample
