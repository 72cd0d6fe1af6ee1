"""Readers for the real multitask datasets, behind one factory.

>>> from taskadapt.data.datasets import create_dataset, list_formats
>>> list_formats()
['cityscapes', 'nyud', 'pascal', 'synthia', 'taskonomy']
>>> ds = create_dataset("nyud", "/data/NYUD_MT", "val", tasks=["semseg", "depth"])  # doctest: +SKIP
>>> ds[0]["semseg"].shape  # doctest: +SKIP
torch.Size([480, 640])

Every reader returns sample dicts in the conventions of :mod:`taskadapt.data.sample`, never writes
into the dataset folder, and reports a missing or corrupt file as one
:class:`~taskadapt.errors.DatasetError` naming the file, the expected layout and the source.
Procedural scene folders (``taskadapt data make-scenes``) use the ``nyud`` reader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from taskadapt.data.datasets.base import MultiTaskDataset, Sample
from taskadapt.data.datasets.cityscapes import CityscapesDataset
from taskadapt.data.datasets.nyud import NYUDDataset
from taskadapt.data.datasets.pascal import PascalContextDataset
from taskadapt.data.datasets.synthia import SynthiaDataset
from taskadapt.data.datasets.taskonomy import TaskonomyDataset
from taskadapt.errors import ConfigError
from taskadapt.registry import Registry

DATASETS: Registry[type[MultiTaskDataset]] = Registry("dataset format")
for _cls in (CityscapesDataset, NYUDDataset, PascalContextDataset, SynthiaDataset, TaskonomyDataset):
    DATASETS.register(_cls.FORMAT, _cls)


def list_formats(pattern: str = "*") -> list[str]:
    """Registered dataset format names (sorted)."""
    return DATASETS.names(pattern)


def get_dataset_class(format: str) -> type[MultiTaskDataset]:
    """The reader class of ``format`` (ConfigError with a did-you-mean hint when unknown)."""
    return DATASETS.get(format)


def create_dataset(
    format: str,
    root: str | Path,
    split: str,
    tasks: Sequence[str] | None = None,
    transform: Callable[[Sample], Sample] | None = None,
    **kwargs: Any,
) -> MultiTaskDataset:
    """Build the reader for ``format`` on ``root`` / ``split``.

    ``kwargs`` are format options (e.g. ``normals_valid_ids`` for pascal, ``buildings`` and
    ``depth`` for taskonomy, ``num_classes`` for cityscapes/synthia); an option the format does not
    take is a ConfigError listing the ones it does.
    """
    cls = get_dataset_class(format)
    options = cls.option_names()
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        have = ", ".join(options) or "none"
        raise ConfigError(f"dataset format '{format}' has no option {', '.join(map(repr, unknown))}; "
                          f"its options: {have}")
    return cls(root, split, tasks=tasks, transform=transform, **kwargs)


__all__ = [
    "DATASETS",
    "CityscapesDataset",
    "MultiTaskDataset",
    "NYUDDataset",
    "PascalContextDataset",
    "SynthiaDataset",
    "TaskonomyDataset",
    "create_dataset",
    "get_dataset_class",
    "list_formats",
]
