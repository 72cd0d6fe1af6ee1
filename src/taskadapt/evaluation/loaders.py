"""What evaluation reads: a dataset split opened with clear errors, and a deterministic loader that
brings images to the model's input size -- the one resize that :class:`taskadapt.api.Predictor` uses too,
so ``predict`` on a test image gives the prediction that evaluation scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from taskadapt.data.collate import collate
from taskadapt.data.datasets import MultiTaskDataset, dataset_root, get_dataset_class, open_section
from taskadapt.data.sample import IGNORE_INDEX, INTEGER_LABELS, LABEL_CHANNELS
from taskadapt.errors import DatasetError


def resize_to_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, size, size): bilinear with antialiasing (a shrink averages
    instead of sampling), clamped back to [0, 1]. Images already at the size are returned as they are."""
    if images.shape[-2:] == (size, size):
        return images
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp(0, 1)


class ResizeImage:
    """Evaluation transform: the image goes to the model's input size; labels keep their resolution."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, sample: dict) -> dict:
        out = dict(sample)
        out["image"] = resize_to_input(sample["image"].unsqueeze(0), self.size)[0].clamp(0, 1)
        return out


class CheckedLabels(Dataset):
    """Checks every sample's labels as training does before they are scored: the shape the conventions
    give for the image's size ((H, W) class maps, (C, H, W) float maps) and class ids in [0, K) or 255.
    A bad label is one DatasetError naming the file (a wrong shape would otherwise be scored silently)."""

    def __init__(self, base: MultiTaskDataset, num_classes: dict[str, int]):
        self.base, self.num_classes = base, num_classes

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        sample = self.base[i]
        h, w = sample["image"].shape[-2:]
        for task in self.base.tasks:
            label = sample.get(task)
            if label is None:
                continue
            want = (h, w) if task in INTEGER_LABELS else (LABEL_CHANNELS[task], h, w)
            problem = None
            if tuple(label.shape) != want:
                problem = f"{task} label has shape {tuple(label.shape)}, expected {want} (the image is {h}x{w})"
            elif task in INTEGER_LABELS and task in self.num_classes:
                k = self.num_classes[task]
                bad = label[(label != IGNORE_INDEX) & ((label < 0) | (label >= k))]
                if bad.numel():
                    problem = (f"{task} label has class id {int(bad[0])}, outside [0, {k}) and not {IGNORE_INDEX} "
                               "(ignore)")
            if problem:
                sid = sample.get("meta", {}).get("id", str(i))
                where = self.base.files(sid).get(task, [sid])[0]
                raise DatasetError(f"{where}: {problem}; fix the file or the reader's label mapping "
                                   "(`taskadapt data check` lists every such file)")
        return sample


class _Resized(Dataset):
    def __init__(self, base: Dataset, size: int):
        self.base, self.resize = base, ResizeImage(size)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        return self.resize(self.base[i])


def eval_loader(dataset: Dataset, input_size: int, batch_size: int, max_images: int = 0, rank: int = 0,
                world: int = 1) -> DataLoader:
    """Deterministic loader: images at ``input_size``, labels at their original size.

    Under DDP rank r of W takes images r, r + W, r + 2W, ...: every image exactly once over the ranks
    (no padding, unlike ``DistributedSampler``), so metrics summed over the ranks equal one process's.
    """
    if max_images and max_images < len(dataset):
        dataset = Subset(dataset, list(range(max_images)))
    resized = _Resized(dataset, input_size)
    keys = list(range(rank, len(resized), world))
    return DataLoader(keys, batch_size=batch_size, shuffle=False,
                      collate_fn=lambda ks: collate([resized[k] for k in ks]), num_workers=0)


def available_splits(fmt: str, root: str | Path) -> list[str] | None:
    """The split names on disk for a reader format, or None when the format cannot list them."""
    try:
        return list(get_dataset_class(fmt).splits(root))
    except (NotImplementedError, OSError):  # formats whose splits are not files or folders
        return None


def open_split(section: Any, split: str, tasks: Sequence[str], trained_on: str | None = None) -> MultiTaskDataset:
    """The reader of a config section's dataset on ``split``, or one DatasetError naming what exists."""
    root = dataset_root(section)
    if not root.is_dir():
        where = f" (the checkpoint was trained on '{trained_on}')" if trained_on else ""
        raise DatasetError(f"dataset folder '{root}' does not exist; pass --data <folder>{where}")
    available = available_splits(section.format, root)
    if available is not None and split not in available:
        have = ", ".join(available) if available else "none"
        raise DatasetError(f"split '{split}' does not exist in '{root}' ({section.format} format); splits there: "
                           f"{have}. Pass --split <name>")
    dataset = open_section(section, split, tasks=list(tasks))
    if len(dataset) == 0:
        raise DatasetError(f"split '{split}' of '{root}' lists no images; pick another split")
    return dataset
