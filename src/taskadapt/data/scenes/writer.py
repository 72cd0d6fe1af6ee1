"""``write_scenes``: render a dataset folder in the NYUD_MT multitask layout.

::

    <out>/gt_sets/<split>.txt          one id per line, ids like train_000000
    <out>/images/<id>.png              RGB uint8, lossless
    <out>/segmentation/<id>.png        uint8, 0 = void (unused here), class i stored as i + 1
    <out>/depth/<id>.npy               float32 H x W z-depth in metres (0 = invalid; never here)
    <out>/normals/<id>.npy             float32 H x W x 3, camera frame (x right, y up, z to camera)
    <out>/edge/<id>.npy                float32 H x W in {0, 1}
    <out>/contact_sheet.png            a few samples with all their labels
    <out>/meta.json                    generator, version, domain, seed, size, counts, conventions

Every file goes through :func:`taskadapt.io.atomic_open`. Rendering runs in the calling thread;
PNG/npy encoding and writing run in a small thread pool (zlib and file I/O release the GIL), at
most two batches in flight. ``meta.json`` is written last, so a folder without it is incomplete.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from taskadapt.data.scenes.camera import HFOV_DEG, intrinsics
from taskadapt.data.scenes.classes import (
    CAMERA_CONVENTION,
    CLASS_NAMES,
    DEPTH_DEFINITION,
    EDGE_DEPTH_REL_THRESHOLD,
    EDGE_RULE,
    NORMALS_FRAME,
)
from taskadapt.data.scenes.domains import DOMAINS
from taskadapt.data.scenes.render import (
    GENERATOR_VERSION,
    MAX_CHUNK,
    SPLITS,
    as_index,
    check_size,
    check_split,
    render_scenes,
)
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.io import atomic_open, write_json, write_text

DEFAULT_COUNTS: dict[str, int] = {"train": 2000, "val": 250, "test": 250}
ID_PATTERN = "{split}_{index:06d}"
SUBDIRS = ("gt_sets", "images", "segmentation", "depth", "normals", "edge")
CONTACT_SHEET_SAMPLES = 4
WRITER_THREADS = 4  # fsync waits on the disk, not the CPU: more threads than cores overlap it
PNG_COMPRESS_LEVEL = 1


def sample_id(split: str, index: int) -> str:
    return ID_PATTERN.format(split=split, index=index)


def _check_counts(counts: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(counts, Mapping):
        raise ConfigError(
            f"counts must map split names to numbers of scenes, e.g. {DEFAULT_COUNTS}; got {counts!r}"
        )
    out = {}
    for split, n in counts.items():
        check_split(split)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"number of {split} scenes must be an integer >= 0, got {n!r}")
        out[split] = n
    if sum(out.values()) == 0:
        raise ConfigError(f"nothing to write: every split count is 0 in {out}; ask for at least one scene")
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"output path {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatasetError(
            f"output folder {out} already exists and is not empty; pass --overwrite to write into it "
            "(existing files with the same names are replaced) or choose another --out"
        )


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    with atomic_open(path, "wb") as f:
        # zlib level 1: half the encoding time of the default 6 for ~15% larger files (still lossless)
        Image.fromarray(array).save(f, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, array)


def _write_sample(root: Path, sid: str, arrays: dict[str, np.ndarray]) -> None:
    _save_png(root / "images" / f"{sid}.png", arrays["image"])
    _save_png(root / "segmentation" / f"{sid}.png", arrays["segmentation"])
    for key in ("depth", "normals", "edge"):
        _save_npy(root / key / f"{sid}.npy", arrays[key])


def to_arrays(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Rendered tensors -> on-disk arrays (B first): image (B, H, W, 3) uint8, segmentation (B, H, W)
    uint8 = class + 1, depth (B, H, W) float32, normals (B, H, W, 3) float32, edge (B, H, W) float32."""
    return {
        "image": (batch["image"] * 255.0)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        .permute(0, 2, 3, 1)
        .contiguous()
        .numpy(),
        "segmentation": (batch["semseg"] + 1).to(torch.uint8).numpy(),
        "depth": batch["depth"][:, 0].numpy().astype(np.float32, copy=False),
        "normals": batch["normals"].permute(0, 2, 3, 1).contiguous().numpy(),
        "edge": batch["edge"][:, 0].numpy().astype(np.float32, copy=False),
    }


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:6.1f} img/s" if speed else "   ... img/s", style="cyan")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _meta(domain: str, counts: dict[str, int], size: int, seed: int) -> dict:
    from taskadapt.version import __version__

    return {
        "format": "nyud",
        "layout": "NYUD_MT",
        "generator": "taskadapt.scenes",
        "generator_version": GENERATOR_VERSION,
        "taskadapt_version": __version__,
        "torch_version": torch.__version__,
        "domain": domain,
        "domain_description": DOMAINS.get(domain).description,
        "seed": seed,
        "size": size,
        "image_size": [size, size],
        "counts": counts,
        "split_id_pattern": ID_PATTERN,
        "class_names": list(CLASS_NAMES),
        "num_classes": len(CLASS_NAMES),
        "segmentation": "uint8 PNG; 0 = void (unused), class i stored as i + 1 (NYUD convention)",
        "depth": DEPTH_DEFINITION + "; float32 .npy H x W, 0 = invalid (unused)",
        "normals": NORMALS_FRAME + "; float32 .npy H x W x 3",
        "edge": EDGE_RULE + "; float32 .npy H x W in {0, 1}",
        "edge_depth_rel_threshold": EDGE_DEPTH_REL_THRESHOLD,
        "camera": CAMERA_CONVENTION,
        "hfov_deg": HFOV_DEG,
        "intrinsics": intrinsics(size).tolist(),
        "paired_geometry": "the same (seed, split, index) has the same geometry and labels in every domain",
    }


def write_scenes(
    out: str | Path,
    domain: str = "studio",
    counts: Mapping[str, int] = DEFAULT_COUNTS,
    size: int = 128,
    seed: int = 0,
    batch_size: int = 32,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Render ``counts`` scenes per split of ``domain`` into ``out`` (NYUD_MT layout, see above).

    Refuses a non-empty ``out`` unless ``overwrite`` (then files of the same name are replaced;
    nothing is deleted). Returns the dataset folder.
    """
    root = Path(out)
    DOMAINS.get(domain)
    size = check_size(size)
    counts = _check_counts(counts)
    seed = as_index(seed, "scene seed must be an integer")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    batch_size = min(batch_size, MAX_CHUNK)
    _check_out(root, overwrite)
    for sub in SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)

    sheet: list[dict] = []
    pending: list[list[Future]] = []
    with ThreadPoolExecutor(max_workers=WRITER_THREADS) as pool, _progress(progress) as bar:
        try:
            task = bar.add_task(f"scenes ({domain})", total=sum(counts.values()))
            for split, n in counts.items():
                for first in range(0, n, batch_size):
                    idx = list(range(first, min(n, first + batch_size)))
                    batch = render_scenes(domain, split, idx, size=size, seed=seed)
                    if len(sheet) < CONTACT_SHEET_SAMPLES:
                        keys = ("image", "semseg", "depth", "normals", "edge")
                        sheet += [{k: batch[k][j] for k in keys} for j in range(len(idx))]
                    arrays = to_arrays(batch)
                    pending.append(
                        [
                            pool.submit(
                                _write_sample, root, sample_id(split, i), {k: a[j] for k, a in arrays.items()}
                            )
                            for j, i in enumerate(idx)
                        ]
                    )
                    if len(pending) > 1:  # bound memory: wait for the previous batch's files
                        for job in pending.pop(0):
                            job.result()
                    bar.update(task, advance=len(idx))
                ids = "".join(sample_id(split, i) + "\n" for i in range(n))
                write_text(root / "gt_sets" / f"{split}.txt", ids)
            for jobs in pending:
                for job in jobs:
                    job.result()
        except BaseException:
            for jobs in pending:  # Ctrl-C or an error: do not keep writing queued files
                for job in jobs:
                    job.cancel()
            raise

    from taskadapt.viz import contact_sheet

    contact_sheet(
        sheet[:CONTACT_SHEET_SAMPLES],
        root / "contact_sheet.png",
        num_classes={"semseg": len(CLASS_NAMES)},
        title=f"taskadapt scenes: {domain} (seed {seed}, {size} px)",
    )
    write_json(root / "meta.json", _meta(domain, counts, size, seed))
    return root


__all__ = ["DEFAULT_COUNTS", "ID_PATTERN", "SPLITS", "sample_id", "to_arrays", "write_scenes"]
