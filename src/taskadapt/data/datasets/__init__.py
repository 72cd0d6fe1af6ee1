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
The procedural scenes are a format too (``scenes``: :mod:`.scenes`), written on first use.

The functions taking a ``section`` read a dataset section of the config (``data``, ``zeroshot.target``,
``adapt.target``), asking the section's reader class for what depends on the format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from taskadapt.data.datasets.base import DATASETS, MultiTaskDataset, Sample
from taskadapt.data.datasets.cityscapes import CityscapesDataset
from taskadapt.data.datasets.nyud import NYUDDataset
from taskadapt.data.datasets.pascal import PascalContextDataset
from taskadapt.data.datasets.scenes import ScenesDataset
from taskadapt.data.datasets.synthia import SynthiaDataset
from taskadapt.data.datasets.taskonomy import TaskonomyDataset
from taskadapt.errors import ConfigError


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


def dataset_root(section: Any) -> Path:
    """The folder of a config section's dataset (for generated formats, where it is or will be written)."""
    return get_dataset_class(section.format).root_for(section)


def prepare_dataset(section: Any, progress: bool = True) -> Path:
    """Make a config section's dataset ready to read (generated formats write it once); its folder."""
    return get_dataset_class(section.format).prepare(section, progress)


def open_section(section: Any, split: str, tasks: Sequence[str] | None = None, **kwargs: Any) -> MultiTaskDataset:
    """The reader of a config section's dataset on ``split`` (its options applied)."""
    return create_dataset(section.format, dataset_root(section), split, tasks=tasks, **section.options, **kwargs)


def describe(section: Any) -> str:
    """A short name of a config section's dataset for tables (``scenes/<domain>``, ``nyud:<root>``)."""
    return get_dataset_class(section.format).describe(section)


def edge_tolerance(section: Any) -> float:
    """The boundary match tolerance of a section: ``edge_tolerance`` when set, else the format's."""
    explicit = getattr(section, "edge_tolerance", None)
    return float(explicit) if explicit is not None else get_dataset_class(section.format).EDGE_TOLERANCE


def edge_thin_targets(section: Any) -> bool:
    """Whether the section's boundary labels are thinned to 1 px before matching (the format says)."""
    return get_dataset_class(section.format).EDGE_THIN_TARGETS


def class_names_of(section: Any, tasks: Sequence[str]) -> dict[str, list[str]]:
    """Class names of the class-map tasks of a section's dataset (no sample is read)."""
    return get_dataset_class(section.format).class_names_of(section, tasks)


__all__ = [
    "DATASETS",
    "CityscapesDataset",
    "MultiTaskDataset",
    "NYUDDataset",
    "PascalContextDataset",
    "ScenesDataset",
    "SynthiaDataset",
    "TaskonomyDataset",
    "class_names_of",
    "create_dataset",
    "dataset_root",
    "describe",
    "edge_thin_targets",
    "edge_tolerance",
    "get_dataset_class",
    "list_formats",
    "open_section",
    "prepare_dataset",
]
