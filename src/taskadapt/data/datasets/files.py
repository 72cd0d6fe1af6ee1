"""Read one dataset file into a NumPy array, turning every failure into :class:`UnreadableFile`.

Readers call these helpers for every file they touch; :class:`~.base.MultiTaskDataset` converts
``UnreadableFile`` into a :class:`~taskadapt.errors.DatasetError` that names the file, the expected
layout and where to get the dataset, so a user never sees a bare PIL/NumPy/SciPy traceback.

All helpers only read. Pillow's ``LOAD_TRUNCATED_IMAGES`` is left at its default (off), so a
truncated image is an error rather than a silently grey-filled picture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from taskadapt.data.datasets.png16 import decode_png, needs_png16


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


def load_rgb(path: Path) -> np.ndarray:
    """An 8-bit colour image as (H, W, 3) ``uint8`` (grey/palette/alpha images are converted)."""
    _require(path)
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
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


def first_existing(*candidates: Path) -> Path:
    """The first candidate that exists, else the first one (so a "missing" error names it)."""
    for p in candidates:
        if p.is_file():
            return p
    return candidates[0]
