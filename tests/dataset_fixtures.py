"""Tiny dataset folders in each real on-disk format, for tests (16x20 px, 2-3 ids per split).

Every ``write_*`` function writes a complete folder under ``root`` with PIL / NumPy / SciPy / json
exactly as the real datasets store their files, and returns the raw values it wrote, keyed by
sample id, so tests can compute the expected reader output:

>>> truth = write_nyud(tmp_path / "NYUD_MT")            # doctest: +SKIP
>>> truth["val"]["0004"]["segmentation"]                 # raw uint8 labels as written

``write_png`` is a small independent PNG encoder (any bit depth 8/16, 1-4 channels, chosen row
filters) used for the 16-bit colour PNGs of SYNTHIA, which Pillow cannot write.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

SIZE = (16, 20)  # (H, W)


# ------------------------------------------------------------------------------------ files


def write_png(path: Path, array: np.ndarray, filters: Sequence[int] = (0, 1, 2, 3, 4)) -> Path:
    """Encode ``array`` ((H, W) or (H, W, C), uint8 or uint16) as PNG, cycling row ``filters``."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    h, w, c = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = a.astype(">u2").tobytes() if depth == 16 else a.astype(np.uint8).tobytes()
    bpp = c * depth // 8
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(h, w * bpp).astype(np.int16)
    lines = []
    for r in range(h):
        f = filters[r % len(filters)]
        line = rows[r]
        up = rows[r - 1] if r else np.zeros_like(line)
        left = np.concatenate([np.zeros(bpp, np.int16), line[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int16), up[:-bpp]])
        if f == 0:
            pred = np.zeros_like(line)
        elif f == 1:
            pred = left
        elif f == 2:
            pred = up
        elif f == 3:
            pred = (left + up) // 2
        else:
            p = left + up - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        lines.append(bytes([f]) + ((line - pred) & 0xFF).astype(np.uint8).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(lines)))
            + chunk(b"IEND", b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _save(path: Path, array: np.ndarray, **kw: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def _npy(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path


def _json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _lines(path: Path, items: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in items), encoding="utf-8")
    return path


def unit_vectors(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Random unit normals facing the camera half-space, (H, W, 3) float32."""
    v = rng.normal(size=(*shape, 3))
    v[..., 2] = np.abs(v[..., 2]) + 0.5
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def encode_normals_png(n: np.ndarray) -> np.ndarray:
    """n in [-1, 1] -> uint8 v with n ~ 2 v / 255 - 1."""
    return np.clip(np.round((n + 1.0) * 127.5), 0, 255).astype(np.uint8)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under root (to prove readers never write)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


# ------------------------------------------------------------------------------------ NYUD


def write_nyud(
    root: Path,
    variant: str = "nyud_mt",
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = SIZE,
    seed: int = 0,
    class_names: Sequence[str] = ("floor", "wall", "box"),
    domain: str = "studio",
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """A NYUD folder: ``variant`` = ``nyud_mt`` (jpg + npy), ``nyudv2`` (png images/normals/edge)
    or ``scenes`` (NYUD_MT layout with png images and a meta.json of ``class_names``/``domain``).

    Returns {split: {id: {"image", "segmentation", "depth", "normals", "edge"}}} as written
    (normals/edge as the float values they encode; "normals_png" too for nyudv2).
    """
    splits = splits or {"train": 3, "val": 2}
    rng = np.random.default_rng(seed)
    h, w = size
    k = len(class_names) if variant == "scenes" else 40
    truth: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    n = 0
    for split, count in splits.items():
        ids = [f"{n + i + 1:04d}" for i in range(count)]
        n += count
        _lines(root / "gt_sets" / f"{split}.txt", ids)
        truth[split] = {}
        for sid in ids:
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            seg = rng.integers(0, k + 1, (h, w)).astype(np.uint8)
            seg[0, 0], seg[0, 1] = 0, k  # void and the last class always present
            depth = rng.uniform(0.5, 10.0, (h, w)).astype(np.float32)
            depth[1, :3] = 0.0
            normals = unit_vectors(rng, (h, w))
            edge = (rng.random((h, w)) < 0.2).astype(np.float32)
            rec: dict[str, np.ndarray] = {"image": image, "segmentation": seg, "depth": depth, "edge": edge}
            if variant == "nyudv2":
                _save(root / "images" / f"{sid}.png", image)
                png = encode_normals_png(normals)
                png[2, :4] = 128  # grey: the "no normal" encoding of PNG normals
                _save(root / "normals" / f"{sid}.png", png)
                _save(root / "edge" / f"{sid}.png", (edge * 255).astype(np.uint8))
                rec["normals_png"] = png
                rec["normals"] = 2.0 * png.astype(np.float32) / 255.0 - 1.0
            else:
                if variant == "scenes":
                    _save(root / "images" / f"{sid}.png", image)
                else:
                    _save(root / "images" / f"{sid}.jpg", image, quality=100, subsampling=0)
                normals[2, :4] = 0.0  # all-zero = invalid
                _npy(root / "normals" / f"{sid}.npy", normals)
                _npy(root / "edge" / f"{sid}.npy", edge)
                rec["normals"] = normals
            _save(root / "segmentation" / f"{sid}.png", seg)
            _npy(root / "depth" / f"{sid}.npy", depth)
            truth[split][sid] = rec
    if variant == "scenes":
        _json(root / "meta.json", {"class_names": list(class_names), "domain": domain, "size": list(size)})
    return truth


# ------------------------------------------------------------------------------------ PASCAL


def parts_struct(objects: Sequence[dict[str, Any]]) -> np.ndarray:
    """A PASCAL-Part ``anno`` struct: objects = [{"class", "class_ind", "mask", "parts": [(name, mask)]}]."""
    part_dt = [("part_name", object), ("mask", object)]
    obj_dt = [("class", object), ("class_ind", object), ("mask", object), ("parts", object)]
    objs = np.zeros((1, len(objects)), dtype=obj_dt)
    for j, o in enumerate(objects):
        parts = np.zeros((1, len(o["parts"])), dtype=part_dt) if o["parts"] else np.zeros((0, 0))
        for i, (name, mask) in enumerate(o["parts"]):
            parts[0, i]["part_name"] = name
            parts[0, i]["mask"] = mask.astype(np.uint8)
        objs[0, j]["class"] = o["class"]
        objs[0, j]["class_ind"] = np.array([[o["class_ind"]]], dtype=np.uint8)
        objs[0, j]["mask"] = o["mask"].astype(np.uint8)
        objs[0, j]["parts"] = parts
    anno = np.zeros((1, 1), dtype=[("imname", object), ("objects", object)])
    anno[0, 0]["imname"] = "x"
    anno[0, 0]["objects"] = objs
    return anno


def write_pascal(
    root: Path, size: tuple[int, int] = SIZE, seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """A PASCAL_MT folder with splits train (2008_000001, 2008_000002) and val (2008_000003).

    * 2008_000001: person with parts head (rows 0-3, cols 2-5), luleg (rows 8-11, cols 2-5) and
      rfoot (rows 12-13, cols 2-5) plus a dog (class 12) with a "head" part that must be ignored;
      LabelMap = 7 on columns 0-9 and 9 on columns 10-19 (one vertical boundary);
      semseg in BOTH VOC12 and pascal-context (different values: VOC12 must win).
    * 2008_000002: a person without part annotations -> parts all 255; semseg only in pascal-context.
    * 2008_000003: no objects -> parts all 255; LabelMap with a 0 (unlabelled) block.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    split_ids = {"train": ["2008_000001", "2008_000002"], "val": ["2008_000003"]}
    truth: dict[str, dict[str, dict[str, Any]]] = {}
    for split, ids in split_ids.items():
        _lines(root / "ImageSets" / "Context" / f"{split}.txt", ids)
        truth[split] = {}
        for sid in ids:
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            _save(root / "JPEGImages" / f"{sid}.jpg", image, quality=100, subsampling=0)
            seg = rng.integers(0, 21, (h, w)).astype(np.uint8)
            seg[0, :2] = 255
            labelmap = np.where(np.arange(w)[None, :] < 10, 7, 9).repeat(h, 0).astype(np.uint16)
            if sid == "2008_000003":
                labelmap[10:, :5] = 0
            sal = rng.integers(0, 256, (h, w)).astype(np.uint8)
            sal[0, :3] = [127, 128, 255]
            normals_png = encode_normals_png(unit_vectors(rng, (h, w)))
            rec: dict[str, Any] = {"image": image, "semseg": seg, "labelmap": labelmap, "saliency": sal,
                                   "normals_png": normals_png}
            if sid == "2008_000001":
                _save(root / "semseg" / "VOC12" / f"{sid}.png", seg)
                other = ((seg.astype(int) + 1) % 21).astype(np.uint8)
                _save(root / "semseg" / "pascal-context" / f"{sid}.png", other)
                person = np.zeros((h, w), bool)
                person[:14, 1:7] = True
                head, luleg, rfoot = (np.zeros((h, w), bool) for _ in range(3))
                head[0:4, 2:6] = True
                luleg[8:12, 2:6] = True
                rfoot[12:14, 2:6] = True
                dog = np.zeros((h, w), bool)
                dog[10:16, 12:20] = True
                dog_head = np.zeros((h, w), bool)
                dog_head[10:12, 12:16] = True
                objects = [
                    {"class": "person", "class_ind": 15, "mask": person,
                     "parts": [("head", head), ("luleg", luleg), ("rfoot", rfoot)]},
                    {"class": "dog", "class_ind": 12, "mask": dog, "parts": [("head", dog_head)]},
                ]
                parts = np.zeros((h, w), np.int64)
                parts[head], parts[luleg], parts[rfoot] = 1, 5, 6
                rec["parts"] = parts
            else:
                _save(root / "semseg" / "pascal-context" / f"{sid}.png", seg)
                if sid == "2008_000002":
                    person = np.zeros((h, w), bool)
                    person[2:10, 2:8] = True
                    objects = [{"class": "person", "class_ind": 15, "mask": person, "parts": []}]
                else:
                    objects = []
                rec["parts"] = np.full((h, w), 255, np.int64)
            (root / "human_parts").mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(root / "human_parts" / f"{sid}.mat", {"anno": parts_struct(objects)})
            (root / "pascal-context" / "trainval").mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(root / "pascal-context" / "trainval" / f"{sid}.mat", {"LabelMap": labelmap})
            _save(root / "sal_distill" / f"{sid}.png", sal)
            _save(root / "normals_distill" / f"{sid}.png", normals_png)
            truth[split][sid] = rec
    return truth


# ------------------------------------------------------------------------------------ Taskonomy


def _gray16(path: Path, array: np.ndarray) -> Path:
    return _save(path, np.asarray(array, dtype=np.uint16))


def write_taskonomy(
    root: Path,
    layout: str = "building",
    buildings: dict[str, int] | None = None,
    splits: dict[str, list[str]] | None = None,
    size: tuple[int, int] = SIZE,
    seed: int = 0,
    fov: float = 1.2,
) -> dict[str, dict[str, Any]]:
    """A Taskonomy folder, ``layout`` = ``building`` (<b>/<domain>/...) or ``domain`` (<domain>/<b>/...).

    Returns {id: {"rgb", "segment_semantic", "depth_euclidean", "normal", "edge_texture"}} with
    id = "<building>/point_<p>_view_<v>".
    """
    buildings = buildings or {"allensville": 2, "beechwood": 1}
    splits = splits if splits is not None else {"train": ["allensville"], "val": ["beechwood"]}
    rng = np.random.default_rng(seed)
    h, w = size
    truth: dict[str, dict[str, Any]] = {}
    for b, count in buildings.items():
        for i in range(count):
            point, view = 3 + 7 * i, i % 2  # point numbers out of lexical order on purpose (3, 10)
            stem = f"point_{point}_view_{view}"

            def path(domain: str, ext: str = "png", b: str = b, stem: str = stem) -> Path:
                folder = root / b / domain if layout == "building" else root / domain / b
                return folder / f"{stem}_domain_{domain}.{ext}"

            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            seg = rng.integers(0, 18, (h, w)).astype(np.uint8)
            seg[0, :2] = [0, 17]
            depth = rng.integers(256, 8000, (h, w)).astype(np.uint16)
            depth[1, :2] = [65535, 0]
            normal = encode_normals_png(unit_vectors(rng, (h, w)))
            normal[2, :3] = 128
            edge = rng.integers(0, 65536, (h, w)).astype(np.uint16)
            edge[3, :2] = [2621, 2622]  # just below / above 0.04 * 65535 = 2621.4
            _save(path("rgb"), rgb)
            _save(path("segment_semantic"), seg)
            _gray16(path("depth_euclidean"), depth)
            _save(path("normal"), normal)
            _gray16(path("edge_texture"), edge)
            _json(path("point_info", "json"), {"field_of_view_rads": fov, "point_uuid": "x"})
            truth[f"{b}/{stem}"] = {"rgb": rgb, "segment_semantic": seg, "depth_euclidean": depth,
                                    "normal": normal, "edge_texture": edge}
    for split, names in splits.items():
        _lines(root / "splits" / f"{split}.txt", names)
    return truth


# ------------------------------------------------------------------------------------ Cityscapes


def write_cityscapes(
    root: Path,
    splits: dict[str, dict[str, int]] | None = None,
    size: tuple[int, int] = SIZE,
    seed: int = 0,
    baseline: float = 0.209313,
    fx: float = 2262.52,
) -> dict[str, dict[str, dict[str, Any]]]:
    """A Cityscapes folder: leftImg8bit, gtFine labelIds, disparity and camera json.

    Returns {split: {id: {"image", "labelIds", "disparity", "baseline", "fx"}}}, id = "<city>/<stem>".
    """
    splits = splits or {"train": {"aachen": 2}, "val": {"lindau": 1}}
    rng = np.random.default_rng(seed)
    h, w = size
    truth: dict[str, dict[str, dict[str, Any]]] = {}
    for split, cities in splits.items():
        truth[split] = {}
        for city, count in cities.items():
            for i in range(count):
                stem = f"{city}_{i:06d}_000019"
                image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                label = rng.integers(0, 34, (h, w)).astype(np.uint8)
                label[0, :4] = [7, 26, 0, 33]
                disp = rng.integers(2, 30000, (h, w)).astype(np.uint16)
                disp[1, :2] = [0, 1]
                base = f"{split}/{city}/{stem}"
                _save(root / "leftImg8bit" / f"{base}_leftImg8bit.png", image)
                _save(root / "gtFine" / f"{base}_gtFine_labelIds.png", label)
                _gray16(root / "disparity" / f"{base}_disparity.png", disp)
                _json(root / "camera" / f"{base}_camera.json",
                      {"extrinsic": {"baseline": baseline, "pitch": 0.038, "roll": 0.0, "x": 1.7, "y": 0.1,
                                     "yaw": -0.0195, "z": 1.22},
                       "intrinsic": {"fx": fx, "fy": fx, "u0": w / 2, "v0": h / 2}})
                truth[split][f"{city}/{stem}"] = {"image": image, "labelIds": label, "disparity": disp,
                                                  "baseline": baseline, "fx": fx}
    return truth


# ------------------------------------------------------------------------------------ SYNTHIA


def write_synthia(root: Path, n: int = 3, size: tuple[int, int] = SIZE, seed: int = 0,
                  splits: dict[str, list[str]] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """A SYNTHIA-RAND-CITYSCAPES folder: RGB, GT/LABELS (16-bit RGB, class in channel 0, instance id
    in channel 1) and Depth/Depth (16-bit RGB, centimetres in every channel)."""
    rng = np.random.default_rng(seed)
    h, w = size
    truth: dict[str, dict[str, np.ndarray]] = {}
    for i in range(n):
        sid = f"{i:07d}"
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cls = rng.integers(0, 23, (h, w)).astype(np.uint16)
        cls[0, :6] = [3, 16, 1, 22, 0, 11]
        labels = np.stack([cls, rng.integers(0, 3000, (h, w)).astype(np.uint16), np.zeros_like(cls)], -1)
        depth_cm = rng.integers(50, 60000, (h, w)).astype(np.uint16)
        depth_cm[1, :2] = [0, 65535]
        _save(root / "RGB" / f"{sid}.png", image)
        write_png(root / "GT" / "LABELS" / f"{sid}.png", labels)
        write_png(root / "Depth" / "Depth" / f"{sid}.png", np.repeat(depth_cm[..., None], 3, -1))
        truth[sid] = {"image": image, "class": cls, "depth_cm": depth_cm}
    for split, ids in (splits or {}).items():
        _lines(root / "splits" / f"{split}.txt", ids)
    return truth
