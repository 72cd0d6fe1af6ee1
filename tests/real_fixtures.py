"""Tiny folders of real-photo evaluation data in each layout of :mod:`taskadapt.data.real`, for tests.

Every ``write_*`` function writes a complete folder with PIL / NumPy / SciPy as the shared real data
stores its files (``../shared/real``) and returns what a reader must give back, keyed by sample id:

* :func:`write_bsds` -- ``images/ID.jpg`` + ``groundTruth/ID.mat`` with a (1, K) MATLAB cell of structs
  ``{Segmentation, Boundaries}`` (``scipy.io.loadmat`` gives back the BSDS layout: a (1, K) object
  array of (1, 1) structs); returns the (K, H, W) bool boundary stacks.
* :func:`write_depth_png` -- ``NAME.jpg`` + ``NAME.png`` (uint16 mm, 0 = invalid); returns metres, NaN invalid.
* :func:`write_middlebury` -- ``NAME_left.png`` + ``NAME_disp.npz`` (``arr_0``, inf = no GT) and,
  optionally, Middlebury's ``calib.txt`` (the shared motorcycle's calibration: f = 994.978 px,
  baseline = 193.001 mm, doffs = 31.086 px); returns depth in metres, NaN invalid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

SIZE = (24, 32)  # (H, W)
MOTORCYCLE = {"f": 994.978, "baseline_mm": 193.001, "doffs": 31.086}


def photo(size: tuple[int, int] = SIZE, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 picture: a bright rectangle on a dark textured ground."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = (40 + rng.integers(0, 20, size=(h, w, 3))).astype(np.uint8)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 200
    return img


def segmentation_boundaries(seg: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label (a 1-px boundary map, bool)."""
    b = np.zeros(seg.shape, dtype=bool)
    b[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    b[:-1, :] |= seg[:-1, :] != seg[1:, :]
    return b


def write_bsds(root: Path, ids: tuple[str, ...] = ("101", "202"), annotators: int = 2,
               size: tuple[int, int] = SIZE) -> dict[str, np.ndarray]:
    """A bsds folder; annotator k draws the rectangle shifted by k pixels. Returns id -> (K, H, W) bool."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "groundTruth").mkdir(parents=True, exist_ok=True)
    h, w = size
    truth = {}
    for n, sample_id in enumerate(ids):
        Image.fromarray(photo(size, seed=n)).save(root / "images" / f"{sample_id}.jpg", quality=95)
        cell = np.empty((1, annotators), dtype=object)
        maps = []
        for k in range(annotators):
            seg = np.ones((h, w), dtype=np.uint16)
            seg[h // 4 + k : 3 * h // 4, w // 4 : 3 * w // 4 - k] = 2
            b = segmentation_boundaries(seg)
            cell[0, k] = {"Segmentation": seg, "Boundaries": b.astype(np.uint8)}
            maps.append(b)
        scipy.io.savemat(root / "groundTruth" / f"{sample_id}.mat", {"groundTruth": cell})
        truth[sample_id] = np.stack(maps)
    return truth


def write_depth_png(root: Path, names: tuple[str, ...] = ("room_0001",), size: tuple[int, int] = SIZE
                    ) -> dict[str, np.ndarray]:
    """A depth_png folder: depth from 1 m (bottom) to 4 m (top), a quarter of the pixels 0 (invalid)."""
    root.mkdir(parents=True, exist_ok=True)
    h, w = size
    truth = {}
    for n, name in enumerate(names):
        Image.fromarray(photo(size, seed=10 + n)).save(root / f"{name}.jpg", quality=95)
        rows = np.linspace(4000, 1000, h)[:, None] * np.ones((1, w))
        mm = rows.round().astype(np.uint16)
        mm[:, : w // 4] = 0
        Image.fromarray(mm).save(root / f"{name}.png")
        truth[name] = np.where(mm > 0, mm / 1000.0, np.nan).astype(np.float32)
    return truth


def write_middlebury(root: Path, name: str = "bike", size: tuple[int, int] = SIZE, calib: bool = True
                     ) -> dict[str, np.ndarray]:
    """A middlebury folder (with Middlebury's calib.txt when ``calib``); returns name -> depth (m), NaN invalid."""
    root.mkdir(parents=True, exist_ok=True)
    h, w = size
    Image.fromarray(photo(size, seed=20)).save(root / f"{name}_left.png")
    disp = np.linspace(10.0, 60.0, w, dtype=np.float32)[None, :] * np.ones((h, 1), dtype=np.float32)
    disp[0, :5] = np.inf  # no ground truth
    np.savez(root / f"{name}_disp.npz", disp)
    if calib:
        f, b, doffs = MOTORCYCLE["f"], MOTORCYCLE["baseline_mm"], MOTORCYCLE["doffs"]
        (root / "calib.txt").write_text(
            f"cam0=[{f} 0 370.5; 0 {f} 250.0; 0 0 1]\ncam1=[{f} 0 401.6; 0 {f} 250.0; 0 0 1]\n"
            f"doffs={doffs}\nbaseline={b}\nwidth={w}\nheight={h}\nndisp=70\n")
    depth = MOTORCYCLE["f"] * MOTORCYCLE["baseline_mm"] / 1000.0 / (disp.astype(np.float64) + MOTORCYCLE["doffs"])
    return {name: np.where(np.isfinite(disp), depth, np.nan).astype(np.float32)}
