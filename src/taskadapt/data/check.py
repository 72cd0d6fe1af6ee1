"""``taskadapt data check``: validate a dataset folder before training on it.

:func:`check_dataset` goes through a folder with the format's reader and collects every problem
instead of stopping at the first one:

1. layout: the folder and the format's required sub-folders exist; splits are found;
2. split lists: duplicate ids, ids whose files are missing (checked for every id, cheap);
3. samples (all, or the first ``max_samples`` per split): every sample loads; every label has the
   image's spatial size and the expected channels; values are in range -- semseg/parts in [0, K)
   or 255, depth finite and > 0 where valid, normals of unit length (within 1e-2) where valid and
   NaN in all three channels together, edge and saliency in {0, 1} where valid.

The value checks and per-task statistics belong to the tasks: each spec's
:meth:`~taskadapt.tasks.base.TaskSpec.label_stats` (the kinds are in :mod:`taskadapt.tasks.label_checks`).

The :class:`CheckReport` holds one :class:`SplitRow` per split (ids, image sizes, per-task
statistics) and the problems (the first ``max_listed`` with file and message, plus the total count).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from taskadapt.data.datasets import get_dataset_class
from taskadapt.data.datasets.base import MultiTaskDataset
from taskadapt.data.sample import INTEGER_LABELS, LABEL_CHANNELS
from taskadapt.errors import TaskadaptError
from taskadapt.tasks import get_task
from taskadapt.tasks.label_checks import LabelStats
from taskadapt.tasks.normals import NORMAL_TOL as NORMAL_TOL  # re-exported: defined by the normals task


@dataclass
class Problem:
    """One thing wrong: the file (or folder) concerned and what is wrong with it."""

    path: str
    message: str


@dataclass
class SplitRow:
    """Summary of one split. ``stats[task]`` is the task's :class:`~taskadapt.tasks.label_checks.LabelStats`
    (a mapping of numbers; see :meth:`summary` for the text)."""

    split: str
    n_ids: int = 0
    n_checked: int = 0
    tasks: tuple[str, ...] = ()
    image_sizes: dict[tuple[int, int], int] = field(default_factory=dict)
    stats: dict[str, LabelStats] = field(default_factory=dict)

    def sizes_text(self) -> str:
        if not self.image_sizes:
            return "-"
        sizes = sorted(self.image_sizes, key=lambda s: -self.image_sizes[s])
        if len(sizes) == 1:
            return f"{sizes[0][0]}x{sizes[0][1]}"
        hs, ws = [s[0] for s in sizes], [s[1] for s in sizes]
        return f"{len(sizes)} sizes, H {min(hs)}-{max(hs)}, W {min(ws)}-{max(ws)}"

    def summary(self, task: str) -> str:
        if task not in self.tasks:
            return "-"
        s = self.stats.get(task)
        return "not checked" if s is None else s.summary()


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: per-split rows and the problems found."""

    root: str
    format: str
    rows: list[SplitRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    n_problems: int = 0
    max_listed: int = 50

    @property
    def ok(self) -> bool:
        return self.n_problems == 0

    def add(self, path: str | Path, message: str) -> None:
        self.n_problems += 1
        if len(self.problems) < self.max_listed:
            self.problems.append(Problem(str(path), message))

    def to_table(self) -> Table:
        """One row per split: ids, samples checked, image sizes and a summary per task."""
        known = get_dataset_class(self.format).TASKS
        tasks = [t for t in known if any(t in r.tasks for r in self.rows)]
        table = Table(title=f"{self.format} dataset: {self.root}")
        for col in ("split", "ids", "checked", "image size", *tasks):
            table.add_column(col, justify="right" if col in ("ids", "checked") else "left")
        for r in self.rows:
            cells = [r.split, str(r.n_ids), str(r.n_checked), r.sizes_text()]
            table.add_row(*cells, *(r.summary(t) for t in tasks))
        table.caption = "ok" if self.ok else f"{self.n_problems} problem(s)"
        return table

    def problems_table(self) -> Table:
        """The problems found (the first ``max_listed``), with the file each concerns."""
        table = Table(title=f"problems found: {self.n_problems}")
        table.add_column("#", justify="right")
        table.add_column("file")
        table.add_column("problem")
        for i, p in enumerate(self.problems, 1):
            table.add_row(str(i), p.path, p.message)
        if self.n_problems > len(self.problems):
            table.add_row("...", "", f"and {self.n_problems - len(self.problems)} more not listed")
        return table


def check_dataset(
    root: str | Path,
    format: str,
    splits: Sequence[str] | None = None,
    max_samples: int | None = None,
    progress: bool = False,
    max_listed: int = 50,
    **options: Any,
) -> CheckReport:
    """Validate the dataset folder ``root`` of ``format``; ``options`` go to the reader.

    Problems inside the folder are collected in the report, never raised. An unknown ``format``
    is a :class:`~taskadapt.errors.ConfigError`; a ``root`` that does not exist is a
    :class:`~taskadapt.errors.DatasetError` (there is nothing to check).
    """
    cls = get_dataset_class(format)
    root = Path(root).expanduser()
    report = CheckReport(root=str(root), format=format, max_listed=max_listed)
    if not root.is_dir():
        raise cls.error(f"dataset folder {root} does not exist or is not a folder",
                        f"pass the folder of a '{format}' dataset")
    for rel in cls.REQUIRED:
        if not (root / rel).is_dir():
            report.add(root / rel,
                       f"required folder '{rel}' is missing (wrong root or incomplete extraction)")
    found = cls.splits(root)
    wanted = list(splits) if splits else found
    if not wanted:
        report.add(root, "no splits found (see the expected layout of the format: split lists or folders)")
    for split in wanted:
        _check_split(cls, root, split, max_samples, progress, report, options)
    return report


def _check_split(cls: type[MultiTaskDataset], root: Path, split: str, max_samples: int | None,
                 progress: bool, report: CheckReport, options: dict[str, Any]) -> None:
    row = SplitRow(split)
    report.rows.append(row)
    try:
        ds = cls(root, split, **options)
    except TaskadaptError as err:
        report.add(getattr(err, "path", root), f"split '{split}': {_short(err)}")
        return
    row.n_ids, row.tasks = len(ds.ids), ds.tasks
    source = ds._split_source() or root
    for sid, n in Counter(ds.ids).items():
        if n > 1:
            report.add(source, f"id '{sid}' is listed {n} times in split '{split}'")

    loadable = []
    for sid in dict.fromkeys(ds.ids):
        missing = [(key, p) for key, paths in ds.files(sid).items() for p in paths if not p.is_file()]
        for key, p in missing:
            report.add(p, f"missing {key} file for id '{sid}' (split '{split}')")
        if not missing:
            loadable.append(sid)
    todo = loadable if max_samples is None else loadable[: max(0, int(max_samples))]
    first_index = {sid: i for i, sid in reversed(list(enumerate(ds.ids)))}

    def run(step: Any = None) -> None:
        for sid in todo:
            try:
                sample = ds[first_index[sid]]
            except TaskadaptError as err:
                reason = getattr(err, "reason", None) or _short(err)
                report.add(getattr(err, "path", root), f"id '{sid}': {reason}")
            else:
                row.n_checked += 1
                _check_sample(ds, sid, sample, row, report)
            if step is not None:
                step()

    if progress and todo:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"checking {cls.FORMAT} {split}", total=len(todo))
            run(lambda: bar.advance(task))
    else:
        run()


def _short(err: BaseException) -> str:
    """An error message without the layout/source help the readers append (the table has no room)."""
    return str(err).split(" expected layout of a ")[0].strip()


def _stats(row: SplitRow, task: str, ds: MultiTaskDataset) -> LabelStats:
    if task not in row.stats:
        row.stats[task] = get_task(task).label_stats(ds.num_classes.get(task))
    return row.stats[task]


def _check_sample(ds: MultiTaskDataset, sid: str, sample: dict[str, Any], row: SplitRow,
                  report: CheckReport) -> None:
    files = ds.files(sid)
    image = sample.get("image")
    where = files["image"][0]
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        report.add(where, f"id '{sid}': image must be (3, H, W), got {got}")
        return
    h, w = int(image.shape[1]), int(image.shape[2])
    row.image_sizes[(h, w)] = row.image_sizes.get((h, w), 0) + 1
    if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        report.add(where, f"id '{sid}': image values outside [0, 1]")
    for task in ds.tasks:
        label = sample.get(task)
        path = files.get(task, [where])[0]
        want = (h, w) if task in INTEGER_LABELS else (LABEL_CHANNELS[task], h, w)
        if not isinstance(label, torch.Tensor) or tuple(label.shape) != want:
            got = tuple(label.shape) if isinstance(label, torch.Tensor) else type(label).__name__
            report.add(path, f"id '{sid}': {task} has shape {got}, expected {want} (image is {h}x{w})")
            continue
        problem = _stats(row, task, ds).update(label.detach().cpu().numpy())
        if problem:
            report.add(path, f"id '{sid}': {problem}")
