"""The reader base class: ids, task selection, error messages, and the sample-dict conversions.

A concrete reader (one per on-disk format) sets a few class attributes and implements hooks:

* ``FORMAT`` (registry name), ``TASKS`` (task keys the format can provide), ``SOURCE`` (where to
  get the data), ``LAYOUT`` (a short drawing of the expected tree), optionally ``REQUIRED`` and
  ``SPLIT_LISTS`` (the folder of ``<split>.txt`` id lists, for formats whose splits are list files:
  ``splits``, ``_split_source`` and ``_read_ids`` then come from the base class);
* ``_configure(**options)`` (validate and store the format's options, the constructor keywords after
  ``root, split, tasks, transform``; it runs first, before any disk access), ``_task_dirs(task)``,
  ``files(id)``, ``_load_task(task, paths)`` (or all of ``_load(id)``), ``_class_names(task)``, and
  ``splits(root)``, ``_split_source()``, ``_read_ids()`` unless ``SPLIT_LISTS`` covers them.

The base class turns every missing/corrupt file (:class:`~.files.UnreadableFile`) into one
:class:`~taskadapt.errors.DatasetError` naming the file, the fix, the expected layout and the
source, on one line (the CLI prints user errors on one line). Readers only read: nothing is ever
written into the dataset folder.
"""

from __future__ import annotations

import difflib
import inspect
import re
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from taskadapt.data.datasets.files import UnreadableFile, load_rgb, read_lines
from taskadapt.data.sample import INTEGER_LABELS
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.registry import Registry, unknown_name_message

Sample = dict[str, Any]
T = TypeVar("T")

#: a decoded normal shorter than this is an "invalid" encoding (all-zero, or PNG grey 127/128)
NORMAL_MIN_NORM = 0.5
#: decoded normals within this of unit length are renormalised (8-bit PNG quantisation is < 0.7 %);
#: others are left as they are so ``taskadapt data check`` reports them
NORMAL_RENORM_TOL = 1e-2


class MultiTaskDataset(Dataset):
    """One split of a multitask dense-prediction dataset, as sample dicts.

    ``ds[i]`` returns ``{"image": (3, H, W) float in [0, 1], <task>: label, ..., "meta": {"id",
    "dataset", "split", "size": (H, W)}}`` in the conventions of :mod:`taskadapt.data.sample`,
    then ``transform(sample)`` when a transform is given.

    Attributes: ``format``, ``root``, ``split``, ``ids`` (list of sample ids, in split-file order;
    duplicates are kept so ``data check`` can report them), ``tasks`` (the tasks returned),
    ``num_classes`` / ``class_names`` (for the semseg/parts tasks returned).
    """

    FORMAT: ClassVar[str] = ""
    TASKS: ClassVar[tuple[str, ...]] = ()
    SOURCE: ClassVar[str] = ""
    LAYOUT: ClassVar[str] = ""
    #: folders (relative to root) without which the folder is not this format at all
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    #: folder (relative to root) holding one ``<split>.txt`` list per split; "" = splits are not list files
    SPLIT_LISTS: ClassVar[str] = ""
    #: the folder is written by taskadapt itself (:meth:`prepare`), so ``root`` may be left out
    GENERATED: ClassVar[bool] = False
    #: the BSDS boundary match tolerance of this dataset, as a fraction of the image diagonal
    #: (metrics-and-datasets §4.6: 0.011 for NYUD and the datasets scored like it, 0.0075 PASCAL-Context)
    EDGE_TOLERANCE: ClassVar[float] = 0.011
    #: the dataset's boundary labels are wider than 1 px, so they are thinned before matching (BSDS matches
    #: thin boundaries; NYUD's are 2-3 px wide and would halve the F-score)
    EDGE_THIN_TARGETS: ClassVar[bool] = False

    def __init__(
        self,
        root: str | Path,
        split: str,
        tasks: Sequence[str] | None = None,
        transform: Callable[[Sample], Sample] | None = None,
        **options: Any,
    ):
        names = self.option_names()
        unknown = [k for k in options if k not in names]
        if unknown:  # the TypeError Python raises for a reader that spells out its options
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument "
                            f"{unknown[0]!r}")
        self._configure(**options)
        self.root = Path(root).expanduser()
        self.split = str(split)
        self.transform = transform
        if not self.root.is_dir():
            raise self.error(f"dataset folder {self.root} does not exist or is not a folder",
                             "pass the folder that contains the layout below")
        split_source = self._split_source()
        if split_source is not None and not split_source.exists():
            raise self._split_error(split_source)
        self.tasks: tuple[str, ...] = self._resolve_tasks(tasks)
        self.ids: list[str] = self._read_ids()
        self.class_names: dict[str, list[str]] = {
            t: list(self._class_names(t)) for t in self.tasks if t in INTEGER_LABELS
        }
        self.num_classes: dict[str, int] = {t: len(n) for t, n in self.class_names.items()}

    # ---------------------------------------------------------------- a dataset section of the config
    # ``section`` below is a ``DataConfig`` (``data``, ``zeroshot.target``, ``adapt.target``); readers only
    # read its fields, so this package does not import the config package.

    @classmethod
    def root_for(cls, section: Any) -> Path:
        """The dataset folder a config section names."""
        return Path(section.root).expanduser()

    @classmethod
    def check_section(cls, section: Any, prefix: str) -> None:
        """ConfigError naming the key (``<prefix>.<key>``) for a format-specific setting out of range."""

    @classmethod
    def describe(cls, section: Any) -> str:
        """A short name of the section's dataset for tables: ``<format>:<root>``."""
        return f"{cls.FORMAT}:{section.root}"

    @classmethod
    def prepare(cls, section: Any, progress: bool = True) -> Path:
        """Make the folder ready to read and return it; real datasets are downloaded by the user, so
        there is nothing to do (generated formats write it here)."""
        return cls.root_for(section)

    @classmethod
    def class_names_of(cls, section: Any, tasks: Sequence[str]) -> dict[str, list[str]]:
        """Class names of the class-map ``tasks`` (semseg, parts) of the section's dataset; lists the
        training split's ids but reads no sample."""
        wanted = [t for t in tasks if t in INTEGER_LABELS]
        if not wanted:
            return {}
        ds = cls(cls.root_for(section), section.train_split, tasks=wanted, **section.options)
        return dict(ds.class_names)

    # ---------------------------------------------------------------------------------- hooks

    def _configure(self) -> None:
        """Validate and store the format's options (overrides add keyword parameters with defaults)."""

    @classmethod
    def option_names(cls) -> list[str]:
        """The format's options: the keyword parameters of its ``_configure``."""
        return [p for p in inspect.signature(cls._configure).parameters if p != "self"]

    @classmethod
    def splits(cls, root: str | Path) -> list[str]:
        """The split names that exist on disk under ``root`` (sorted): by default the list files."""
        if not cls.SPLIT_LISTS:
            raise NotImplementedError
        return sorted(p.stem for p in (Path(root) / cls.SPLIT_LISTS).glob("*.txt"))

    def _split_list(self) -> Path:
        """``<root>/<SPLIT_LISTS>/<split>.txt``."""
        return self.root / self.SPLIT_LISTS / f"{self.split}.txt"

    def _split_source(self) -> Path | None:
        """The file or folder that defines ``self.split`` (None: nothing to check)."""
        return self._split_list() if self.SPLIT_LISTS else None

    def _read_ids(self) -> list[str]:
        if not self.SPLIT_LISTS:
            raise NotImplementedError
        return self.read_or_error(read_lines, self._split_list(), "re-extract the split list")

    def _task_dirs(self, task: str) -> list[Path]:
        """The folders the task needs (checked in this order)."""
        raise NotImplementedError

    def files(self, sample_id: str) -> dict[str, list[Path]]:
        """The files read for each key ("image" and each task) of one sample, without reading them."""
        raise NotImplementedError

    def _load(self, sample_id: str) -> Sample:
        """The sample dict (image + ``self.tasks``) without ``meta``; may raise UnreadableFile.

        By default the RGB image, then :meth:`_load_task` on each task's paths, in ``files`` order.
        """
        files = self.files(sample_id)
        sample: Sample = {"image": image_tensor(load_rgb(files["image"][0]))}
        for key, paths in files.items():
            if key != "image":
                sample[key] = self._load_task(key, paths)
        return sample

    def _load_task(self, task: str, paths: list[Path]) -> torch.Tensor:
        """One task's label, in the :mod:`taskadapt.data.sample` conventions, from ``files(id)[task]``."""
        raise NotImplementedError

    def _class_names(self, task: str) -> list[str]:
        raise NotImplementedError

    def _meta_extra(self) -> dict[str, Any]:
        """Extra ``meta`` entries (e.g. ``domain``)."""
        return {}

    # ------------------------------------------------------------------------------- public API

    @property
    def format(self) -> str:
        return self.FORMAT

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        sample_id = self.ids[index]
        try:
            sample = self._load(sample_id)
        except UnreadableFile as err:
            raise self.file_error(err, sample_id) from None
        h, w = sample["image"].shape[-2:]
        sample["meta"] = {"id": sample_id, "dataset": self.FORMAT, "split": self.split,
                          "size": (int(h), int(w)), **self._meta_extra()}
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"tasks={list(self.tasks)}, n={len(self.ids)})")

    # ----------------------------------------------------------------------------- errors

    def read_or_error(self, read: Callable[[Path], T], path: Path, fix: str) -> T:
        """``read(path)`` for a file the reader itself needs (split list, meta): a missing or corrupt
        one is a DatasetError naming it, with ``fix``."""
        try:
            return read(path)
        except UnreadableFile as err:
            raise self.error(f"{err.reason}: {path}", fix) from None

    def _missing_for_task(self, task: str) -> Path | None:
        """The first folder the task needs that does not exist (None when the task is available)."""
        return next((p for p in self._task_dirs(task) if not p.is_dir()), None)

    @classmethod
    def layout_help(cls) -> str:
        """One line: the expected paths (from ``LAYOUT``) and where to get the data (``SOURCE``)."""
        paths = []
        for line in textwrap.dedent(cls.LAYOUT).strip().splitlines():
            head = re.split(r"\s{2,}", line.strip())[0]
            if head and head != "<root>/":
                paths.append(head)
        return f"expected layout of a '{cls.FORMAT}' folder: {', '.join(paths)}. Source: {cls.SOURCE}"

    @classmethod
    def error(cls, problem: str, fix: str) -> DatasetError:
        """A one-line DatasetError: the problem, the fix, then the expected layout and the source.

        (The CLI prints user errors on one line; ``LAYOUT`` keeps the full drawing for docs.)
        """
        return DatasetError(f"{problem}; {fix}. {cls.layout_help()}")

    def file_error(self, err: UnreadableFile, sample_id: str) -> DatasetError:
        where = f"{self.FORMAT} sample '{sample_id}' (split '{self.split}')"
        if err.reason == "file is missing":
            fix = "restore it from the original archive, or remove the id from the split list"
        else:
            fix = "the file is corrupt or truncated: re-extract it from the original archive"
        exc = self.error(f"{where}: {err.reason}: {err.path}", fix)
        exc.path, exc.reason = err.path, err.reason  # for `data check`, which lists problems per file
        return exc

    def _resolve_tasks(self, tasks: Sequence[str] | None) -> tuple[str, ...]:
        if tasks is None:
            present = tuple(t for t in self.TASKS if self._missing_for_task(t) is None)
            if not present:
                raise self.error(f"no label folders found under {self.root}",
                                 "check that root points at the dataset folder itself")
            return present
        if isinstance(tasks, str):
            tasks = [tasks]
        out: list[str] = []
        for t in tasks:
            if t not in self.TASKS:
                raise ConfigError(unknown_name_message(f"task for dataset format '{self.FORMAT}'",
                                                       str(t), list(self.TASKS)))
            if t not in out:
                out.append(t)
        for t in out:
            missing = self._missing_for_task(t)
            if missing is not None:
                raise self.error(f"task '{t}' needs {missing}, which does not exist",
                                 f"add the {t} labels or drop '{t}' from the task list")
        return tuple(out)

    def _split_error(self, split_file: Path) -> DatasetError:
        found = self.splits(self.root)
        close = difflib.get_close_matches(self.split, found, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return self.error(f"split '{self.split}' not found: {split_file} does not exist",
                          f"{hint}use one of the splits found: {', '.join(found) or 'none'}")


# ------------------------------------------------------------------------------ conversions


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)


def int_label(labels: np.ndarray) -> torch.Tensor:
    """(H, W) integer class map -> (H, W) int64."""
    return torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))


def void_zero_label(raw: np.ndarray) -> torch.Tensor:
    """(H, W) class map with 0 = unlabelled and k >= 1 = class k - 1 -> (H, W) int64, 255 = ignore."""
    raw = raw.astype(np.int64)
    return int_label(np.where(raw == 0, 255, raw - 1))


def png16_depth(raw: np.ndarray, units_per_metre: float) -> np.ndarray:
    """(H, W) uint16 depth PNG samples -> (H, W) float32 metres; 0 and 65535 (no value) -> NaN."""
    depth = raw.astype(np.float32) / units_per_metre
    depth[(raw == 0) | (raw == 65535)] = np.nan
    return depth


def float_map(values: np.ndarray) -> torch.Tensor:
    """(H, W) float map -> (1, H, W) float32."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None]


def normals_tensor(vectors: np.ndarray) -> torch.Tensor:
    """(H, W, 3) decoded normal vectors -> (3, H, W) float32 in the sample conventions.

    Vectors shorter than ``NORMAL_MIN_NORM`` (all-zero, PNG grey) become NaN in all three channels;
    vectors within ``NORMAL_RENORM_TOL`` of unit length are renormalised (removes quantisation);
    anything else is returned unchanged so that ``data check`` can report it.
    """
    n = np.asarray(vectors, dtype=np.float32)
    norm = np.sqrt((n.astype(np.float64) ** 2).sum(axis=-1, keepdims=True)).astype(np.float32)
    invalid = ~np.isfinite(norm) | (norm < NORMAL_MIN_NORM)
    close = ~invalid & (np.abs(norm - 1.0) <= NORMAL_RENORM_TOL)
    out = np.where(close, n / np.where(close, norm, 1.0), n)
    out = np.where(invalid, np.float32(np.nan), out)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32))


def lookup(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Map integer ``values`` through ``table``; values outside the table map to 255 (ignore)."""
    values = values.astype(np.int64)
    inside = (values >= 0) & (values < len(table))
    return np.where(inside, table[np.clip(values, 0, len(table) - 1)], 255)




#: every reader class, by its ``FORMAT``; ``create_dataset``/``list_formats`` read it
DATASETS: Registry[type[MultiTaskDataset]] = Registry("dataset format")


def register_dataset(cls: type[MultiTaskDataset]) -> type[MultiTaskDataset]:
    """Class decorator: register a reader under its ``FORMAT``."""
    return DATASETS.register(cls.FORMAT, cls)

__all__ = ["DATASETS", "MultiTaskDataset", "register_dataset", "Sample", "float_map", "image_tensor", "int_label",
           "lookup", "normals_tensor", "png16_depth", "void_zero_label"]
