"""SYNTHIA-RAND-CITYSCAPES reader: 9,400 synthetic 760x1280 frames with semantics and depth.

* ``semseg``: ``GT/LABELS/<id>.png`` is a 16-bit multi-channel PNG whose FIRST channel holds the
  SYNTHIA class id (0 void, 1 sky, 2 building, 3 road, 4 sidewalk, 5 fence, 6 vegetation, 7 pole,
  8 car, 9 traffic sign, 10 pedestrian, 11 bicycle, 12 motorcycle, 13 parking-slot, 14 road-work,
  15 traffic light, 16 terrain, 17 rider, 18 truck, 19 bus, 20 train, 21 wall, 22 lanemarking).
  Pillow keeps only the high byte of such files, so they are decoded by :mod:`.png16`. Ids map to
  Cityscapes train ids as in the UDA literature (AdaptSegNet/ADVENT/DACS/CorDA: 3->road, 4->sidewalk,
  2->building, 21->wall, 5->fence, 7->pole, 15->traffic light, 9->traffic sign, 6->vegetation,
  16->terrain, 1->sky, 10->person, 17->rider, 8->car, 18->truck, 19->bus, 20->train, 12->motorcycle,
  11->bicycle; void, parking-slot, road-work, lanemarking -> 255). ``num_classes=16`` (default)
  keeps the 16 classes shared with Cityscapes, in train-id order without terrain, truck and train
  (those SYNTHIA ids -> 255); ``num_classes=19`` returns the 19 Cityscapes train ids.
* ``depth``: ``Depth/Depth/<id>.png`` is a 16-bit PNG in centimetres (first channel if it has
  several): metres = value / 100. Confirmed from two public UDA readers (CorDA divides by 100 into
  metres; a GUDA reader documents the values as centimetres); the dataset README itself was not
  available to us. 0 and 65535 (the 655.35 m ceiling, e.g. sky) -> NaN (our interpretation).

Splits: SYNTHIA has no official split; ``all`` is every image in ``RGB/``; other splits are read
from ``<root>/splits/<split>.txt`` (one id per line, e.g. ``0000000``; our convention).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from taskadapt.data.datasets.base import MultiTaskDataset, Sample, float_map, image_tensor, int_label, lookup
from taskadapt.data.datasets.cityscapes import (
    CITYSCAPES_CLASSES,
    SYNTHIA16_CLASSES,
    _table,
    check_num_classes,
    trainid_to_16,
)
from taskadapt.data.datasets.files import UnreadableFile, load_png, load_rgb, read_lines
from taskadapt.data.datasets.nyud import as_2d

#: SYNTHIA class id -> Cityscapes train id
SYNTHIA_TO_TRAIN = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12,
                    8: 13, 18: 14, 19: 15, 20: 16, 12: 17, 11: 18}


def _first_channel(arr: np.ndarray) -> np.ndarray:
    return arr[..., 0] if arr.ndim == 3 else arr


class SynthiaDataset(MultiTaskDataset):
    """SYNTHIA-RAND-CITYSCAPES (Ros et al. 2016).

    Args:
        root: the ``RAND_CITYSCAPES`` folder (holding ``RGB/``, ``GT/LABELS/``, ``Depth/Depth/``).
        split: ``all`` or the name of a file in ``<root>/splits/``.
        tasks: subset of ``semseg, depth``; None = those whose folders exist.
        transform: applied to each sample dict.
        num_classes: 16 (default, the UDA protocol) or 19 (Cityscapes train ids).
    """

    FORMAT = "synthia"
    TASKS = ("semseg", "depth")
    SOURCE = ("SYNTHIA-RAND-CITYSCAPES (Ros et al. 2016), https://synthia-dataset.net (downloads, "
              "RAND_CITYSCAPES)")
    LAYOUT = """
        <root>/   (RAND_CITYSCAPES)
          RGB/<id>.png              RGB 760x1280, id = 7 digits (0000000 ...)
          GT/LABELS/<id>.png        16-bit PNG, class id in the first channel
          Depth/Depth/<id>.png      16-bit PNG, centimetres (first channel)
          splits/<split>.txt        optional, one id per line (split 'all' = every RGB image)
    """
    REQUIRED = ("RGB",)

    def __init__(
        self,
        root: str | Path,
        split: str,
        tasks: Sequence[str] | None = None,
        transform: Callable[[Sample], Sample] | None = None,
        num_classes: int = 16,
    ):
        self._n = check_num_classes("synthia", num_classes)
        mapping = dict(SYNTHIA_TO_TRAIN)
        if self._n == 16:
            to16 = trainid_to_16()
            mapping = {s: to16[t] for s, t in mapping.items() if t in to16}
        self._lut = _table(mapping, size=65536)
        super().__init__(root, split, tasks, transform)

    @classmethod
    def splits(cls, root: str | Path) -> list[str]:
        return sorted({p.stem for p in (Path(root) / "splits").glob("*.txt")} | {"all"})

    def _split_source(self) -> Path:
        return self.root / "RGB" if self.split == "all" else self.root / "splits" / f"{self.split}.txt"

    def _read_ids(self) -> list[str]:
        if self.split == "all":
            return sorted(p.stem for p in (self.root / "RGB").glob("*.png"))
        path = self._split_source()
        try:
            return [line.removesuffix(".png") for line in read_lines(path)]
        except UnreadableFile as err:
            raise self.error(f"{err.reason}: {path}", "re-create the split list") from None

    def _missing_for_task(self, task: str) -> Path | None:
        folder = self.root / ("GT/LABELS" if task == "semseg" else "Depth/Depth")
        return None if folder.is_dir() else folder

    def _class_names(self, task: str) -> list[str]:
        return list(SYNTHIA16_CLASSES if self._n == 16 else CITYSCAPES_CLASSES)

    def files(self, sample_id: str) -> dict[str, list[Path]]:
        out = {"image": [self.root / "RGB" / f"{sample_id}.png"]}
        if "semseg" in self.tasks:
            out["semseg"] = [self.root / "GT" / "LABELS" / f"{sample_id}.png"]
        if "depth" in self.tasks:
            out["depth"] = [self.root / "Depth" / "Depth" / f"{sample_id}.png"]
        return out

    def _load(self, sample_id: str) -> Sample:
        files = self.files(sample_id)
        sample: Sample = {"image": image_tensor(load_rgb(files["image"][0]))}
        if "semseg" in self.tasks:
            path = files["semseg"][0]
            sample["semseg"] = int_label(lookup(self._lut, as_2d(_first_channel(load_png(path)), path)))
        if "depth" in self.tasks:
            path = files["depth"][0]
            raw = as_2d(_first_channel(load_png(path)), path)
            if raw.dtype != np.uint16:
                raise UnreadableFile(path, f"depth must be a 16-bit PNG, got {raw.dtype}")
            depth = raw.astype(np.float32) / 100.0
            depth[(raw == 0) | (raw == 65535)] = np.nan
            sample["depth"] = float_map(depth)
        return sample
