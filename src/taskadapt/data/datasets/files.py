"""Read one dataset file into a NumPy array, turning every failure into :class:`UnreadableFile`.

Readers call these helpers for every file they touch; :class:`~.base.MultiTaskDataset` converts
``UnreadableFile`` into a :class:`~taskadapt.errors.DatasetError` that names the file, the expected
layout and where to get the dataset, so a user never sees a bare PIL/NumPy/SciPy traceback.

The ``as_*`` / ``decode_*`` helpers check and decode arrays already read, with the same error type.
All helpers only read. Pillow's ``LOAD_TRUNCATED_IMAGES`` is left at its default (off), so a
truncated image is an error rather than a silently grey-filled picture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from taskadapt.data.datasets.png16 import SIGNATURE, decode_png, needs_png16


class UnreadableFile(Exception):
    """A file that is missing or cannot be decoded; ``reason`` is a short phrase."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _require(path: Path) -> None:
    if not path.is_file():
        raise UnreadableFile(path, "file is missing")


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"cannot decode file ({text})"


def to_rgb8(img: Image.Image) -> np.ndarray:
    """A Pillow image as (H, W, 3) ``uint8``. Grey, palette and alpha images are converted; 16-bit grey
    (modes ``I;16*``, and ``I`` holding values above 255) is scaled by 255/65535 -- Pillow's own
    ``convert("RGB")`` clips it, turning almost every pixel white."""
    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img, dtype=np.int64)
        if img.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = np.rint(values.clip(0, 65535) * (255.0 / 65535.0))
        return np.repeat(values.clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    return np.array(img.convert("RGB"))  # a writable copy, unlike np.asarray


def _is_png(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == SIGNATURE


def load_rgb(path: Path) -> np.ndarray:
    """An image as (H, W, 3) ``uint8``: 8-bit images as they are (grey/palette/alpha converted), 16-bit
    ones (grey or colour) scaled to 8 bits."""
    _require(path)
    try:
        if _is_png(path) and needs_png16(path):  # Pillow cannot open 16-bit colour PNGs faithfully
            arr = decode_png(path).astype(np.float64)
            arr = arr[..., :3] if arr.shape[-1] >= 3 else np.repeat(arr[..., :1], 3, axis=-1)
            return np.rint(arr * (255.0 / 65535.0)).astype(np.uint8)
        with Image.open(path) as img:
            return to_rgb8(img)
    except UnreadableFile:
        raise
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise UnreadableFile(path, _reason(err)) from None


def load_png(path: Path) -> np.ndarray:
    """A PNG's raw sample values: (H, W) for one channel, else (H, W, C); dtype uint8 or uint16.

    16-bit multi-channel PNGs go through :func:`~.png16.decode_png` (Pillow truncates them);
    everything else through Pillow without any colour conversion.
    """
    _require(path)
    try:
        if needs_png16(path):
            arr = decode_png(path)
            return arr[..., 0] if arr.shape[-1] == 1 else arr
        with Image.open(path) as img:
            img.load()
            return np.asarray(img)
    except UnreadableFile:
        raise
    except Exception as err:
        raise UnreadableFile(path, _reason(err)) from None


def load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array (never unpickles objects)."""
    _require(path)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:
        raise UnreadableFile(path, _reason(err)) from None


def load_mat(path: Path, variables: list[str] | None = None) -> dict[str, Any]:
    """A MATLAB ``.mat`` file (v5/v7; v7.3/HDF5 files are reported as unreadable)."""
    _require(path)
    try:
        import scipy.io

        return scipy.io.loadmat(path, variable_names=variables)
    except Exception as err:
        raise UnreadableFile(path, _reason(err)) from None


def load_json(path: Path) -> Any:
    _require(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except Exception as err:
        raise UnreadableFile(path, _reason(err)) from None


def read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text file (split and id lists)."""
    _require(path)
    try:
        text = path.read_text(encoding="utf-8")
    except Exception as err:
        raise UnreadableFile(path, _reason(err)) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_png_2d(path: Path, *, multi_channel: bool = False) -> np.ndarray:
    """A one-channel PNG's raw samples as (H, W) (``multi_channel``: a multi-channel PNG's first
    channel too; otherwise such a file is unreadable)."""
    raw = load_png(path)
    return as_2d(raw[..., 0] if multi_channel and raw.ndim == 3 else raw, path)


def load_png16(path: Path, what: str, *, multi_channel: bool = False) -> np.ndarray:
    """:func:`load_png_2d` of a 16-bit PNG as (H, W) uint16; ``what`` names the content in the
    error for an 8-bit file."""
    raw = load_png_2d(path, multi_channel=multi_channel)
    if raw.dtype != np.uint16:
        raise UnreadableFile(path, f"{what} must be a 16-bit PNG, got {raw.dtype}")
    return raw


def first_existing(*candidates: Path) -> Path:
    """The first candidate that exists, else the first one (so a "missing" error names it)."""
    for p in candidates:
        if p.is_file():
            return p
    return candidates[0]


# ---------------------------------------------------------------------- decoded-array checks


def as_2d(arr: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) or (H, W, 1) -> (H, W); anything else is an unreadable file."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise UnreadableFile(path, f"unexpected array shape {tuple(arr.shape)}, expected (H, W)")
    return arr


def as_hwc3(arr: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, 3), or (3, H, W) transposed, -> (H, W, 3)."""
    if arr.ndim == 3 and arr.shape[-1] != 3 and arr.shape[0] == 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise UnreadableFile(path, f"unexpected array shape {tuple(arr.shape)}, expected (H, W, 3)")
    return arr


def decode_png_normals(v: np.ndarray, path: Path) -> np.ndarray:
    """uint8 (H, W, 3) -> n = 2 v / 255 - 1."""
    if v.dtype != np.uint8:
        raise UnreadableFile(path, f"normals PNG must be 8-bit, got {v.dtype}")
    return 2.0 * as_hwc3(v, path).astype(np.float32) / 255.0 - 1.0


def png_to_unit(raw: np.ndarray) -> np.ndarray:
    """Grey PNG samples -> float32 in [0, 1] (divided by 255 or 65535 by bit depth)."""
    if raw.dtype == bool:
        return raw.astype(np.float32)
    scale = 65535.0 if raw.dtype == np.uint16 or raw.max(initial=0) > 255 else 255.0
    return raw.astype(np.float32) / np.float32(scale)
