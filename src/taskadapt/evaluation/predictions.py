"""``taskadapt predict``: per picture and task a coloured PNG plus the raw prediction in a format that reads
back exactly, and a side-by-side sheet.

========  ==============================  ==================================================================
task      files (``<stem>_<task>.<ext>``)  content
========  ==============================  ==================================================================
semseg    ``.png``, ``.ids.png``          colours; class ids (uint8 PNG, uint16 when K > 255)
parts     ``.png``, ``.ids.png``          as semseg
depth     ``.png``, ``.mm.png``, ``.npy``  colours; millimetres (uint16 PNG, 0 = invalid, clipped at 65535);
                                          metres (float32 (H, W))
normals   ``.png``, ``.npy``              colours ((n + 1) / 2); unit vectors (float32 (H, W, 3))
edge      ``.png``, ``.npy``              probability x 255 (8-bit grey PNG); probability (float32 (H, W))
saliency  ``.png``, ``.npy``              as edge
========  ==============================  ==================================================================

``<stem>_sheet.png`` shows the picture and every task side by side, with a class legend and a depth colour
bar in metres. Every file goes through :mod:`taskadapt.io` (temp file + rename), so an interrupted command
never leaves a half-written file; existing files are only replaced with ``overwrite``. Inputs may be files,
folders (their pictures, not recursive) and glob patterns. The full-size maps of one task at a time are in
memory, and the pictures are drawn in row strips, so huge photos need little more than their own size.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskadapt.api import Predictor, check_mode, load, read_image
from taskadapt.data.sample import INTEGER_LABELS
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.io import atomic_open
from taskadapt.run import Run
from taskadapt.tasks import TaskSpec
from taskadapt.viz import contact_sheet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
GLOB_CHARS = "*?["
PROBABILITY_TASKS = ("edge", "saliency")
PICTURE_ROWS = 128  # rows of a prediction coloured at a time
SHEET_SIDE = 512  # the long side of the pictures on a sheet (larger ones are subsampled)


# ---------------------------------------------------------------------------------- inputs


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as they are; a folder -> its picture files (:data:`IMAGE_SUFFIXES`, sorted, not recursive); a
    pattern with ``*?[`` that is not an existing path -> its sorted matching files. An input that gives no
    file is one DatasetError naming it."""
    if not inputs:
        raise DatasetError("no images given; pass image files, folders of images or glob patterns")
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += _folder_images(path)
        elif not path.exists() and any(ch in str(item) for ch in GLOB_CHARS):
            found += _glob_images(str(item))
        elif path.is_file():
            found.append(path)
        else:
            raise DatasetError(f"image '{item}' does not exist or is not a file; pass the path of an image file")
    return found


def _folder_images(folder: Path) -> list[Path]:
    """The picture files directly in ``folder``, sorted by name; none is a DatasetError naming it."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"folder '{folder}' holds no image files ({', '.join(IMAGE_SUFFIXES)}); pass a folder "
                           "of pictures or the files themselves")
    return files


def _glob_images(pattern: str) -> list[Path]:
    """The files matching the glob ``pattern``, sorted; none is a DatasetError naming it."""
    files = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    if not files:
        raise DatasetError(f"pattern '{pattern}' matches no file; check the pattern (quote it so the shell "
                           "does not expand it) or pass the files")
    return files


def unique_stems(images: Sequence[Path]) -> list[str]:
    """The output name of each picture: its stem, ``-2``, ``-3`` ... appended to repeated stems."""
    seen: dict[str, int] = {}
    stems = []
    for image in images:
        seen[image.stem] = seen.get(image.stem, 0) + 1
        stems.append(image.stem if seen[image.stem] == 1 else f"{image.stem}-{seen[image.stem]}")
    return stems


# ---------------------------------------------------------------------------------- what is written


@dataclass(frozen=True)
class _Style:
    """How one task's prediction is drawn: its spec, K of class maps, the depth colour range (metres)."""

    spec: TaskSpec
    num_classes: int | None = None
    depth_range: tuple[float, float] | None = None


def _picture(value: np.ndarray, style: _Style) -> Any:
    """(H, W) / (H, W, 3) prediction -> an RGB PIL image of the task's ``visualize``, drawn and pasted in row
    strips (no whole-picture array besides the image)."""
    from PIL import Image

    picture = Image.new("RGB", (value.shape[1], value.shape[0]))
    for y in range(0, value.shape[0], PICTURE_ROWS):
        part = value[y:y + PICTURE_ROWS]
        rgb = style.spec.visualize(_sample_convention(part), style.num_classes, depth_range=style.depth_range)
        picture.paste(Image.fromarray(rgb), (0, y))
    return picture


def _probability8(value: np.ndarray, style: _Style) -> np.ndarray:
    """(H, W) probabilities -> (H, W) uint8 ``round(p * 255)`` (NaN 0), the grey picture of edge / saliency."""
    out = np.empty(value.shape, np.uint8)
    for y in range(0, value.shape[0], PICTURE_ROWS):
        part = np.nan_to_num(value[y:y + PICTURE_ROWS], nan=0.0).clip(0, 1)
        out[y:y + PICTURE_ROWS] = (part * 255).round()
    return out


def _class_ids(value: np.ndarray, style: _Style) -> np.ndarray:
    """(H, W) int64 class ids -> uint8 (uint16 when K > 255)."""
    k = style.num_classes if style.num_classes is not None else int(value.max(initial=0)) + 1
    return value.astype(np.uint16 if k > 255 else np.uint8)


def _depth_mm(value: np.ndarray, style: _Style) -> np.ndarray:
    """(H, W) metres -> (H, W) uint16 millimetres, rounded and clipped to [0, 65535]; not finite -> 0 (invalid)."""
    out = np.empty(value.shape, np.uint16)
    for y in range(0, value.shape[0], PICTURE_ROWS):
        mm = np.nan_to_num(value[y:y + PICTURE_ROWS] * 1000.0, nan=0.0, posinf=65535.0, neginf=0.0)
        out[y:y + PICTURE_ROWS] = mm.round().clip(0, 65535)
    return out


def _float32(value: np.ndarray, style: _Style) -> np.ndarray:
    """The prediction as a C-contiguous float32 array ((H, W) or (H, W, 3)), as ``.npy`` stores it."""
    return np.ascontiguousarray(value, dtype=np.float32)


Converter = Callable[[np.ndarray, _Style], Any]  # -> an array or a PIL image


def task_files(task: str) -> dict[str, Converter]:
    """File ending -> what is written there, for one task (the picture first; table of the module)."""
    if task in PROBABILITY_TASKS:
        return {".png": _probability8, ".npy": _float32}
    if task in INTEGER_LABELS:
        return {".png": _picture, ".ids.png": _class_ids}
    if task == "depth":
        return {".png": _picture, ".mm.png": _depth_mm, ".npy": _float32}
    return {".png": _picture, ".npy": _float32}


def planned_outputs(out_dir: Path, stems: Sequence[str], tasks: Sequence[str]) -> list[Path]:
    """Every file :func:`predict_images` writes, in order: per picture each task's files, then the sheet."""
    return [out_dir / name for stem in stems
            for name in [*(f"{stem}_{t}{end}" for t in tasks for end in task_files(t)), f"{stem}_sheet.png"]]


def _refuse_existing(paths: Sequence[Path]) -> None:
    """One ConfigError naming the first of ``paths`` that exists."""
    for path in paths:
        if path.exists():
            raise ConfigError(f"'{path}' already exists; pass --overwrite (overwrite=True) to replace the outputs, "
                              "or choose another --out folder")


def _write(path: Path, array: Any) -> Path:
    """An array or PIL image to ``path`` atomically: ``.npy`` with ``np.save``, else a PNG (uint8 RGB / grey,
    uint16 grey)."""
    with atomic_open(path, "wb") as f:
        if path.suffix == ".npy":
            np.save(f, array, allow_pickle=False)
        else:
            from PIL import Image

            (array if isinstance(array, Image.Image) else Image.fromarray(array)).save(f, format="PNG")
    return path


def _depth_range(depth: np.ndarray) -> tuple[float, float]:
    """The 2nd-98th percentiles of the finite depths (metres): the range the depth picture is coloured on
    (``depth_to_rgb``'s own default, computed once so strips and the sheet share it); (0, 1) when none."""
    valid = depth[np.isfinite(depth)]
    if not valid.size:
        return 0.0, 1.0
    lo, hi = np.percentile(valid, [2, 98])
    return lo, hi  # numpy scalars: the picture's arithmetic stays that of depth_to_rgb's default


def _write_task(out_dir: Path, stem: str, task: str, value: np.ndarray, style: _Style) -> list[Path]:
    """Every file of one task's prediction (:func:`task_files`), one converted array at a time."""
    return [_write(out_dir / f"{stem}_{task}{end}", convert(value, style)) for end, convert in task_files(task).items()]


def _sample_convention(value: np.ndarray) -> np.ndarray:
    """Predictor layout -> sample layout: (H, W, 3) normals become (3, H, W); maps stay (H, W)."""
    return value.transpose(2, 0, 1) if value.ndim == 3 else value


def _thumbnail(value: np.ndarray, step: int) -> np.ndarray:
    """Every ``step``-th row and column (the sheet's copy of a full-size map)."""
    return np.ascontiguousarray(value[::step, ::step]) if step > 1 else value


# ---------------------------------------------------------------------------------- the command


def predict_images(checkpoint: str | os.PathLike, images: Sequence[str | os.PathLike], out: str | os.PathLike,
                   device: str | None = None, *, mode: str = "squash", overwrite: bool = False,
                   progress: bool = False, backbone_weights: str | os.PathLike | None = None) -> list[Path]:
    """Predict every task on each picture and write its files (module table) and ``<stem>_sheet.png`` into
    ``out``.

    ``images``: files, folders, glob patterns (:func:`expand_inputs`). Pictures of any size are accepted
    (predictions are at the picture's size); ``mode`` is the Predictor's (``squash`` or ``keep``).
    Repeated stems get ``-2``, ``-3`` ... appended. Without ``overwrite`` an output file that exists is
    one ConfigError before any work. A missing or unreadable picture is a DatasetError naming it.
    ``progress`` shows a rich progress bar. Returns the written paths in order (per picture: each task's
    files, then the sheet).
    """
    check_mode(mode)
    files = expand_inputs(images)
    out_dir = Path(out)
    stems = unique_stems(files)
    run = Run.open(checkpoint)
    if not overwrite:
        _refuse_existing(planned_outputs(out_dir, stems, run.tasks))
    predictor: Predictor = load(checkpoint, device=device, backbone_weights=backbone_weights)
    written: list[Path] = []
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeRemainingColumn(), disable=not progress, transient=True)
    with bar:
        job = bar.add_task("predicting", total=len(files))
        for image, stem in zip(files, stems, strict=True):
            bar.update(job, description=f"predicting {escape(image.name)}")
            written += _predict_one(predictor, image, stem, out_dir, mode)
            bar.advance(job)
    return written


def _predict_one(predictor: Predictor, image: Path, stem: str, out_dir: Path, mode: str) -> list[Path]:
    """One picture: each task's files as its full-size map comes (then dropped), then the sheet."""
    rgb = read_image(image)
    step = max(1, -(-max(rgb.shape[:2]) // SHEET_SIDE))
    sample: dict[str, Any] = {"image": torch.from_numpy(_thumbnail(rgb, step)).permute(2, 0, 1).float() / 255.0}
    written: list[Path] = []
    depth_range = None
    for task, value in predictor.predict_iter(rgb, mode=mode):
        style = _style(predictor, task, value)
        depth_range = style.depth_range if task == "depth" else depth_range
        written += _write_task(out_dir, stem, task, value, style)
        sample[task] = _sample_convention(_thumbnail(value, step))
        del value
    names = {t: predictor.class_names[t] for t in sample if t in INTEGER_LABELS and t in predictor.class_names}
    written.append(contact_sheet([sample], out_dir / f"{stem}_sheet.png", num_classes=predictor.num_classes,
                                 keys=list(sample), title=image.name, depth_range=depth_range, class_names=names,
                                 depth_bar=True))
    return written


def _style(predictor: Predictor, task: str, value: np.ndarray) -> _Style:
    """The :class:`_Style` of one task's full-size prediction (K fixed, depth range from the whole map)."""
    k = predictor.num_classes.get(task)
    if task in INTEGER_LABELS and k is None:
        k = int(value.max(initial=0)) + 1
    return _Style(predictor.specs[task], k, _depth_range(value) if task == "depth" else None)


__all__ = ["IMAGE_SUFFIXES", "expand_inputs", "planned_outputs", "predict_images", "task_files", "unique_stems"]
