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

from pathlib import Path

import torch

from taskadapt.data.datasets.base import MultiTaskDataset, float_map, int_label, lookup, png16_depth, register_dataset
from taskadapt.data.datasets.cityscapes import check_num_classes, train_id_classes, train_id_table
from taskadapt.data.datasets.files import load_png16, load_png_2d, read_lines

#: SYNTHIA class id -> Cityscapes train id
SYNTHIA_TO_TRAIN = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12,
                    8: 13, 18: 14, 19: 15, 20: 16, 12: 17, 11: 18}


@register_dataset
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
    SPLIT_LISTS = "splits"

    def _configure(self, num_classes: int = 16) -> None:
        self._n = check_num_classes("synthia", num_classes)
        self._lut = train_id_table(SYNTHIA_TO_TRAIN, self._n, size=65536)

    @classmethod
    def splits(cls, root: str | Path) -> list[str]:
        return sorted({*super().splits(root), "all"})

    def _split_source(self) -> Path:
        return self.root / "RGB" if self.split == "all" else self._split_list()

    def _read_ids(self) -> list[str]:
        if self.split == "all":
            return sorted(p.stem for p in (self.root / "RGB").glob("*.png"))
        lines = self.read_or_error(read_lines, self._split_list(), "re-create the split list")
        return [line.removesuffix(".png") for line in lines]

    def _task_dirs(self, task: str) -> list[Path]:
        return [self.root / ("GT/LABELS" if task == "semseg" else "Depth/Depth")]

    def _class_names(self, task: str) -> list[str]:
        return train_id_classes(self._n)

    def files(self, sample_id: str) -> dict[str, list[Path]]:
        out = {"image": [self.root / "RGB" / f"{sample_id}.png"]}
        if "semseg" in self.tasks:
            out["semseg"] = [self.root / "GT" / "LABELS" / f"{sample_id}.png"]
        if "depth" in self.tasks:
            out["depth"] = [self.root / "Depth" / "Depth" / f"{sample_id}.png"]
        return out

    def _load_task(self, task: str, paths: list[Path]) -> torch.Tensor:
        if task == "semseg":
            return int_label(lookup(self._lut, load_png_2d(paths[0], multi_channel=True)))
        raw = load_png16(paths[0], "depth", multi_channel=True)
        return float_map(png16_depth(raw, 100.0))  # centimetres
