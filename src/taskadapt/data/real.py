"""Read folders of real photographs with edge or depth ground truth, for evaluation only.

Three layouts, detected per folder by :func:`detect_format` (or named explicitly):

* ``bsds`` (edges) -- ``images/ID.jpg`` + ``groundTruth/ID.mat``; the ``.mat`` holds a MATLAB cell
  ``groundTruth{k}``, one struct per annotator with fields ``Segmentation`` and ``Boundaries``
  ((H, W) integer maps; ``scipy.io.loadmat`` gives a (1, K) object array of (1, 1) structs). The
  target is the (K, H, W) bool stack of the ``Boundaries`` maps, as stored (no thinning here).
* ``depth_png`` (depth) -- ``NAME.jpg`` + ``NAME.png``, the PNG a one-channel 16-bit map in
  millimetres, 0 = no measurement (NYU Depth v2 as Kinect frames are usually shipped).
* ``middlebury`` (depth) -- ``NAME_left.png`` + ``NAME_disp.npz`` (array ``arr_0``: (H, W) float
  disparity in pixels of the left view, non-finite = no ground truth). Depth in metres is
  ``f * B / (disp + doffs)`` with the camera's :class:`Calibration`, read from a Middlebury
  ``calib.txt`` in the folder when there is one (its ``baseline`` is in millimetres, as Middlebury
  writes it), else given by the caller (``--calib f=...,baseline=...,doffs=...``, baseline in metres).
  Pixels with ``disp + doffs <= 0`` are invalid too.

A sample's depth target is (H, W) float32 metres with NaN = invalid (the sample convention of
:mod:`taskadapt.data.sample`). Every missing, unpaired or undecodable file is a
:class:`~taskadapt.errors.DatasetError` naming the file and the fix. Nothing is ever written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from taskadapt.data.datasets.files import UnreadableFile, load_mat, load_png16, load_rgb
from taskadapt.errors import ConfigError, DatasetError

FORMATS = {"bsds": "edge", "depth_png": "depth", "middlebury": "depth"}  # format -> the task it scores
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_LAYOUTS = ("bsds (images/ID.jpg + groundTruth/ID.mat), depth_png (NAME.jpg + NAME.png, 16-bit mm) or "
            "middlebury (NAME_left.png + NAME_disp.npz)")


@dataclass(frozen=True)
class Calibration:
    """A rectified stereo pair's focal length ``f`` (px), ``baseline`` (m) and ``doffs`` (px)."""

    f: float
    baseline: float
    doffs: float
    source: str = "given"

    def depth(self, disparity: np.ndarray) -> np.ndarray:
        """(H, W) disparity in px -> (H, W) float32 depth in metres, NaN where there is none."""
        d = np.asarray(disparity, dtype=np.float64) + self.doffs
        ok = np.isfinite(d) & (d > 0)
        out = np.full(d.shape, np.nan, dtype=np.float64)
        out[ok] = self.f * self.baseline / d[ok]
        return out.astype(np.float32)


def parse_calib(spec: str) -> Calibration:
    """``"f=994.978,baseline=0.193001,doffs=31.086"`` (baseline in metres) -> :class:`Calibration`."""
    values: dict[str, float] = {}
    for part in str(spec).split(","):
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            values[key.strip()] = float(value)
        except ValueError:
            values = {}
            break
    if set(values) != {"f", "baseline", "doffs"} or not (values["f"] > 0 and values["baseline"] > 0):
        raise ConfigError(f"--calib '{spec}' must be f=<px>,baseline=<metres>,doffs=<px> with f, baseline > 0 "
                          "(e.g. --calib f=994.978,baseline=0.193001,doffs=31.086)")
    return Calibration(values["f"], values["baseline"], values["doffs"], source="--calib")


def read_calib_txt(path: str | os.PathLike) -> Calibration:
    """A Middlebury 2014 ``calib.txt``: ``cam0=[f 0 cx; 0 f cy; 0 0 1]``, ``doffs=``, ``baseline=`` (mm)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"calibration file '{path}' cannot be read ({err}); fix or delete it") from None
    entries = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    entries = {k.strip(): v.strip() for k, v in entries.items()}
    try:
        cam0 = re.findall(r"[-+0-9.eE]+", entries["cam0"])
        f, baseline_mm, doffs = float(cam0[0]), float(entries["baseline"]), float(entries["doffs"])
    except (KeyError, IndexError, ValueError):
        raise DatasetError(f"calibration file '{path}' lacks cam0=[f 0 cx; ...], baseline= (mm) or doffs=; "
                           "write it as Middlebury's calib.txt or delete it and pass --calib") from None
    if not (f > 0 and baseline_mm > 0):
        raise DatasetError(f"calibration file '{path}' has f={f} and baseline={baseline_mm}; both must be > 0")
    return Calibration(f, baseline_mm / 1000.0, doffs, source=str(path))


@dataclass
class RealSample:
    """One photo and its ground truth.

    ``image``: (H, W, 3) uint8. ``target``: edges (K, H, W) bool, one boundary map per annotator;
    depth (H, W) float32 metres, NaN = invalid.
    """

    id: str
    image: np.ndarray
    task: str
    target: np.ndarray
    image_path: Path
    target_path: Path


@dataclass
class RealFolder:
    """A folder of one format: ``ids`` in sorted order, samples read lazily (``len``, iteration, ``load``)."""

    root: Path
    format: str
    ids: list[str]
    calibration: Calibration | None = None
    _pairs: dict[str, tuple[Path, Path]] = field(default_factory=dict, repr=False)

    @property
    def task(self) -> str:
        return FORMATS[self.format]

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[RealSample]:
        return (self.load(i) for i in self.ids)

    def load(self, sample_id: str) -> RealSample:
        """Read one sample; a missing or corrupt file is a DatasetError naming it."""
        image_path, target_path = self._pairs[sample_id]
        try:
            image = load_rgb(image_path)
            if self.format == "bsds":
                target = _read_bsds_boundaries(target_path)
            elif self.format == "depth_png":
                mm = load_png16(target_path, "a depth map in millimetres")
                target = np.where(mm > 0, mm.astype(np.float32) / 1000.0, np.float32(np.nan)).astype(np.float32)
            else:
                assert self.calibration is not None
                target = self.calibration.depth(_read_disparity(target_path))
        except UnreadableFile as err:
            raise DatasetError(f"'{err.path}' in {self.format} folder '{self.root}': {err.reason}; replace the "
                               "file or remove the sample") from None
        if target.shape[-2:] != image.shape[:2]:
            raise DatasetError(f"'{target_path}' is {target.shape[-2]}x{target.shape[-1]} but its image "
                               f"'{image_path.name}' is {image.shape[0]}x{image.shape[1]} (H x W); they must match")
        return RealSample(sample_id, image, self.task, target, image_path, target_path)

    def check(self) -> None:
        """Read every sample once (and drop it), so a corrupt file fails before any model work."""
        for sample_id in self.ids:
            self.load(sample_id)


def _unwrap(x):
    """Strip loadmat's (1, 1) object/struct wrappers."""
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.flat[0]
    return x


def _read_bsds_boundaries(path: Path) -> np.ndarray:
    """``groundTruth{k}.Boundaries`` of every annotator k -> (K, H, W) bool."""
    mat = load_mat(path)
    if "groundTruth" not in mat:
        have = sorted(k for k in mat if not k.startswith("__"))
        raise UnreadableFile(path, f"no 'groundTruth' variable (has {have}); a BSDS file holds the cell groundTruth")
    cells = np.asarray(mat["groundTruth"])
    cells = cells.ravel() if cells.dtype == object else np.atleast_1d(cells).ravel()
    maps = []
    for k, cell in enumerate(cells):
        s = _unwrap(cell)
        names = getattr(getattr(s, "dtype", None), "names", None) or ()
        if "Boundaries" not in names:
            raise UnreadableFile(path, f"annotator {k + 1} has no 'Boundaries' field (fields {list(names)})")
        b = np.asarray(_unwrap(s["Boundaries"]))
        if b.ndim != 2 or b.dtype == object:
            raise UnreadableFile(path, f"annotator {k + 1}'s Boundaries is not an (H, W) map (shape {b.shape})")
        if maps and b.shape != maps[0].shape:
            raise UnreadableFile(path, f"annotator {k + 1}'s Boundaries is {b.shape}, annotator 1's {maps[0].shape}")
        maps.append(b != 0)
    if not maps:
        raise UnreadableFile(path, "the groundTruth cell is empty (no annotator)")
    return np.stack(maps)


def _read_disparity(path: Path) -> np.ndarray:
    """``arr_0`` of an ``.npz`` as (H, W) float64 disparity."""
    if not path.is_file():
        raise UnreadableFile(path, "file is missing")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "arr_0" not in npz.files:
                raise UnreadableFile(path, f"no array 'arr_0' (has {npz.files}); save it with np.savez(path, disp)")
            disp = np.asarray(npz["arr_0"])
    except UnreadableFile:
        raise
    except Exception as err:  # zipfile.BadZipFile, ValueError, OSError ...
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnreadableFile(path, f"cannot decode file ({text})") from None
    if disp.ndim != 2 or not np.issubdtype(disp.dtype, np.number):
        raise UnreadableFile(path, f"arr_0 must be an (H, W) numeric disparity map, got {disp.dtype} {disp.shape}")
    return disp.astype(np.float64)


# ---------------------------------------------------------------------------------- layouts


def _images_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES}


def detect_format(root: str | os.PathLike) -> str:
    """The layout of ``root`` (:data:`FORMATS`), or a DatasetError saying what was found."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"folder '{root}' does not exist or is not a folder; pass a folder of real images")
    if (root / "images").is_dir() and (root / "groundTruth").is_dir():
        return "bsds"
    files = [p for p in root.iterdir() if p.is_file()]
    if any(p.name.endswith("_disp.npz") for p in files):
        return "middlebury"
    stems_jpg = {p.stem for p in files if p.suffix.lower() in (".jpg", ".jpeg")}
    if any(p.suffix.lower() == ".png" and p.stem in stems_jpg for p in files):
        return "depth_png"
    found = ", ".join(sorted(p.name for p in root.iterdir())[:6]) or "nothing"
    raise DatasetError(f"'{root}' has no known real-image layout (found: {found}); expected {_LAYOUTS}. "
                       "Pass --format NAME if the files are there under other names")


def _unpaired(root: Path, what: str, names: list[str], fix: str) -> DatasetError:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return DatasetError(f"{what} in '{root}': {shown}; {fix}")


def _pairs_bsds(root: Path) -> dict[str, tuple[Path, Path]]:
    for sub in ("images", "groundTruth"):
        if not (root / sub).is_dir():
            raise DatasetError(f"'{root}' has no '{sub}/' folder; a bsds folder holds images/ID.jpg and "
                               "groundTruth/ID.mat")
    images = _images_by_stem(root / "images")
    mats = {p.stem: p for p in sorted((root / "groundTruth").glob("*.mat"))}
    no_gt = sorted(set(images) - set(mats))
    if no_gt:
        raise _unpaired(root, "images without groundTruth/ID.mat", no_gt, "add the .mat files or remove the images")
    no_image = sorted(set(mats) - set(images))
    if no_image:
        raise _unpaired(root, "groundTruth files without images/ID.jpg", no_image, "add the images or remove the "
                        ".mat files")
    return {i: (images[i], mats[i]) for i in sorted(images)}


def _pairs_depth_png(root: Path) -> dict[str, tuple[Path, Path]]:
    files = [p for p in sorted(root.iterdir()) if p.is_file()]
    images = {p.stem: p for p in files if p.suffix.lower() in (".jpg", ".jpeg")}
    depths = {p.stem: p for p in files if p.suffix.lower() == ".png"}
    no_depth = sorted(set(images) - set(depths))
    if no_depth:
        raise _unpaired(root, "images without a NAME.png depth map", no_depth, "add the depth PNGs or remove the "
                        "images")
    return {i: (images[i], depths[i]) for i in sorted(images)}


def _pairs_middlebury(root: Path) -> dict[str, tuple[Path, Path]]:
    lefts = {p.name[: -len("_left.png")]: p for p in sorted(root.glob("*_left.png"))}
    disps = {p.name[: -len("_disp.npz")]: p for p in sorted(root.glob("*_disp.npz"))}
    no_disp = sorted(set(lefts) - set(disps))
    if no_disp:
        raise _unpaired(root, "left views without NAME_disp.npz", [f"{n}_left.png" for n in no_disp],
                        "add the disparity files or remove the images")
    no_left = sorted(set(disps) - set(lefts))
    if no_left:
        raise _unpaired(root, "disparity files without NAME_left.png", [f"{n}_disp.npz" for n in no_left],
                        "add the left views or remove the .npz files")
    return {i: (lefts[i], disps[i]) for i in sorted(lefts)}


_PAIRS = {"bsds": _pairs_bsds, "depth_png": _pairs_depth_png, "middlebury": _pairs_middlebury}


def open_real_folder(root: str | os.PathLike, format: str | None = None,
                     calibration: Calibration | None = None) -> RealFolder:
    """List the samples of ``root`` (layout ``format``, detected when None) and pair their files.

    ``calibration`` is used by ``middlebury`` folders without a ``calib.txt`` (a folder's own
    ``calib.txt`` wins). Raises DatasetError for a missing folder, an unknown layout, unpaired files
    or no sample; files are only decoded by :meth:`RealFolder.load` / :meth:`RealFolder.check`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"folder '{root}' does not exist or is not a folder; pass a folder of real images")
    if format is None:
        format = detect_format(root)
    if format not in FORMATS:
        raise ConfigError(f"unknown real-image format '{format}'; use one of {', '.join(FORMATS)}")
    pairs = _PAIRS[format](root)
    if not pairs:
        raise DatasetError(f"'{root}' holds no {format} sample; expected {_LAYOUTS}")
    calib = None
    if format == "middlebury":
        if (root / "calib.txt").is_file():
            calib = read_calib_txt(root / "calib.txt")
        elif calibration is not None:
            calib = calibration
        else:
            raise DatasetError(f"middlebury folder '{root}' has no calib.txt; pass the camera with "
                               "--calib f=<px>,baseline=<metres>,doffs=<px> or add Middlebury's calib.txt")
    return RealFolder(root, format, sorted(pairs), calib, pairs)


__all__ = ["FORMATS", "Calibration", "RealFolder", "RealSample", "detect_format", "open_real_folder",
           "parse_calib", "read_calib_txt"]
