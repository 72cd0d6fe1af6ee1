"""``taskadapt predict``: coloured prediction PNGs and a side-by-side sheet per input picture.

Every file goes through :mod:`taskadapt.io` (temp file + rename), so an interrupted command never leaves a
half-written picture.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskadapt.api import Predictor, load, read_image
from taskadapt.errors import DatasetError
from taskadapt.io import atomic_open
from taskadapt.viz import contact_sheet


def _sample_convention(value: np.ndarray) -> np.ndarray:
    """Predictor layout -> sample layout: (H, W, 3) normals become (3, H, W); maps stay (H, W)."""
    return value.transpose(2, 0, 1) if value.ndim == 3 else value


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    from PIL import Image

    with atomic_open(path, "wb") as f:
        Image.fromarray(rgb).save(f, format="PNG")
    return path


def predict_images(checkpoint: str | os.PathLike, images: list[str], out: str, device: str | None = None
                   ) -> list[Path]:
    """Predict every task on each picture; write ``<stem>_<task>.png`` (coloured as the task's
    ``visualize``) and ``<stem>_sheet.png`` (input + every task side by side) into ``out``.

    Pictures of any size are accepted (predictions are at the picture's size). Repeated stems get
    ``-2``, ``-3`` ... appended. A missing or unreadable picture is a DatasetError naming it. Returns
    the written paths in order (per picture: the task PNGs, then the sheet).
    """
    if not images:
        raise DatasetError("no images given; pass one or more image files")
    for image in images:  # fail before any work on a typo
        if not Path(image).is_file():
            raise DatasetError(f"image '{image}' does not exist or is not a file; pass the path of an image file")
    predictor: Predictor = load(checkpoint, device=device)
    out_dir = Path(out)
    written: list[Path] = []
    seen: dict[str, int] = {}
    for image in images:
        rgb = read_image(image)
        stem = Path(image).stem
        seen[stem] = seen.get(stem, 0) + 1
        if seen[stem] > 1:
            stem = f"{stem}-{seen[stem]}"
        preds = predictor.predict(rgb)
        sample: dict[str, Any] = {"image": torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0}
        for task, value in preds.items():
            spec = predictor.specs[task]
            sample[task] = _sample_convention(value)
            picture = spec.visualize(sample[task], predictor.num_classes.get(task))
            written.append(_write_png(out_dir / f"{stem}_{task}.png", picture))
        written.append(contact_sheet([sample], out_dir / f"{stem}_sheet.png", num_classes=predictor.num_classes,
                                     keys=["image", *preds], title=Path(image).name))
    return written


__all__ = ["predict_images"]
