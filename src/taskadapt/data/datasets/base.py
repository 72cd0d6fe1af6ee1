"""The reader base class: ids, task selection, error messages, and the sample-dict conversions.

A concrete reader (one per on-disk format) sets four class attributes and implements a few hooks:

* ``FORMAT`` (registry name), ``TASKS`` (task keys the format can provide), ``SOURCE`` (where to
  get the data), ``LAYOUT`` (a short drawing of the expected tree);
* ``splits(root)``, ``_split_source()``, ``_read_ids()``, ``_missing_for_task(task)``,
  ``files(id)``, ``_load(id)`` and ``_class_names(task)``; options are stored on ``self`` before
  calling ``super().__init__`` (the hooks run inside it).

The base class turns every missing/corrupt file (:class:`~.files.UnreadableFile`) into one
:class:`~taskadapt.errors.DatasetError` naming the file, the fix, the expected layout and the
source, on one line (the CLI prints user errors on one line). Readers only read: nothing is ever
written into the dataset folder.
"""

from __future__ import annotations

import difflib
import re
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from taskadapt.data.datasets.files import UnreadableFile
from taskadapt.data.sample import INTEGER_LABELS
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.registry import unknown_name_message

Sample = dict[str, Any]

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

    def __init__(
        self,
        root: str | Path,
        split: str,
        tasks: Sequence[str] | None = None,
        transform: Callable[[Sample], Sample] | None = None,
    ):
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

    # ---------------------------------------------------------------------------------- hooks

    @classmethod
    def splits(cls, root: str | Path) -> list[str]:
        """The split names that exist on disk under ``root`` (sorted)."""
        raise NotImplementedError

    def _split_source(self) -> Path | None:
        """The file or folder that defines ``self.split`` (None: nothing to check)."""
        return None

    def _read_ids(self) -> list[str]:
        raise NotImplementedError

    def _missing_for_task(self, task: str) -> Path | None:
        """A path the task needs that does not exist (None when the task is available)."""
        raise NotImplementedError

    def files(self, sample_id: str) -> dict[str, list[Path]]:
        """The files read for each key ("image" and each task) of one sample, without reading them."""
        raise NotImplementedError

    def _load(self, sample_id: str) -> Sample:
        """The sample dict (image + ``self.tasks``) without ``meta``; may raise UnreadableFile."""
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


__all__ = ["MultiTaskDataset", "Sample", "float_map", "image_tensor", "int_label",
           "lookup", "normals_tensor"]
