"""Procedural scenes: determinism, exact label consistency, domains, and the dataset writer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from taskadapt.data.scenes import (
    CLASS_NAMES,
    DOMAINS,
    EDGE_DEPTH_REL_THRESHOLD,
    GENERATOR_VERSION,
    list_domains,
    render_scenes,
    write_scenes,
)
from taskadapt.data.scenes.classes import CEILING, FLOOR, PAINTING, RUG, WALL
from taskadapt.data.scenes.layout import FOOTPRINT_GAP, WALL_MARGIN, sample_layout
from taskadapt.data.scenes.seeding import geometry_seed, python_rng
from taskadapt.errors import ConfigError, DatasetError

K = len(CLASS_NAMES)
LABELS = ("semseg", "depth", "normals", "edge")
_ALL = slice(None)
#: (first, second) index pairs of right and bottom neighbours in (B, H, W) maps
NEIGHBOURS = (
    ((_ALL, _ALL, slice(None, -1)), (_ALL, _ALL, slice(1, None))),
    ((_ALL, slice(None, -1)), (_ALL, slice(1, None))),
)


@pytest.fixture(scope="module")
def scenes() -> dict[str, torch.Tensor]:
    """12 studio scenes at 64 px with cameras: shared by the label-consistency tests."""
    return render_scenes("studio", "val", range(12), size=64, return_cameras=True)


def camera_rays(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 3, H, W) float64 camera-frame ray per pixel, (x, y, -1), from the returned intrinsics."""
    B, _, H, W = out["depth"].shape
    K_ = out["intrinsics"].double()
    v, u = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    x = (u - K_[:, 0, 2].view(B, 1, 1)) / K_[:, 0, 0].view(B, 1, 1)
    y = -(v - K_[:, 1, 2].view(B, 1, 1)) / K_[:, 1, 1].view(B, 1, 1)
    return torch.stack([x, y, -torch.ones_like(x)], dim=1)


# -- API, classes and domains -------------------------------------------------------------------


def test_class_names_and_domain_registry():
    assert len(CLASS_NAMES) >= 8 and len(set(CLASS_NAMES)) == K
    assert {"studio", "dusk", "fog", "toon", "pretrain"} <= set(list_domains())
    assert list_domains() == sorted(list_domains())
    assert isinstance(GENERATOR_VERSION, str) and GENERATOR_VERSION
    with pytest.raises(ConfigError, match="did you mean 'studio'"):
        DOMAINS.get("stuido")
    with pytest.raises(ConfigError, match="did you mean 'dusk'"):
        render_scenes("duks", "train", [0], size=32)


@pytest.mark.parametrize("domain", ["studio", "dusk", "fog", "toon", "pretrain"])
def test_every_domain_renders_in_range(domain):
    out = render_scenes(domain, "train", [0, 1], size=32)
    assert out["image"].shape == (2, 3, 32, 32) and out["image"].dtype == torch.float32
    assert out["semseg"].shape == (2, 32, 32) and out["semseg"].dtype == torch.int64
    assert out["depth"].shape == (2, 1, 32, 32) and out["normals"].shape == (2, 3, 32, 32)
    assert out["edge"].shape == (2, 1, 32, 32) and out["edge"].dtype == torch.float32
    assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0
    assert out["image"].std() > 0.05  # not a blank picture
    assert out["semseg"].min() >= 0 and out["semseg"].max() < K
    assert torch.isfinite(out["depth"]).all() and (out["depth"] > 0).all()
    assert set(out["edge"].unique().tolist()) <= {0.0, 1.0}
    assert "intrinsics" not in out


def test_invalid_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="size"):
        render_scenes("studio", "train", [0], size=8)
    with pytest.raises(ConfigError, match="split"):
        render_scenes("studio", "training", [0], size=32)
    with pytest.raises(ConfigError, match="indices"):
        render_scenes("studio", "train", [-1], size=32)


def test_empty_index_list_gives_empty_batch():
    out = render_scenes("studio", "train", [], size=32, return_cameras=True)
    assert out["image"].shape == (0, 3, 32, 32) and out["semseg"].dtype == torch.int64
    assert out["cam_to_world"].shape == (0, 4, 4)


# -- determinism --------------------------------------------------------------------------------


def test_same_call_twice_is_identical_and_batching_does_not_matter():
    idx = [7, 2, 11]
    a = render_scenes("dusk", "train", idx, size=48)  # dusk: sensor noise and a low light
    b = render_scenes("dusk", "train", idx, size=48)
    singles = [render_scenes("dusk", "train", [i], size=48) for i in idx]
    wider = render_scenes("dusk", "train", range(12), size=48)
    for key in a:
        assert torch.equal(a[key], b[key])
        for j, i in enumerate(idx):
            assert torch.equal(a[key][j], singles[j][key][0]), key
            assert torch.equal(a[key][j], wider[key][i]), key


def test_large_calls_are_split_into_chunks_without_changing_results(monkeypatch):
    from taskadapt.data.scenes import render

    whole = render_scenes("studio", "train", range(5), size=32, return_cameras=True)
    monkeypatch.setattr(render, "MAX_CHUNK_PIXELS", 2 * 32 * 32)  # chunks of 2 scenes
    assert render.chunk_size(32) == 2
    chunked = render_scenes("studio", "train", np.arange(5), size=32, return_cameras=True)
    for key in whole:
        assert torch.equal(whole[key], chunked[key]), key


def test_index_seed_and_split_change_the_scene():
    base = render_scenes("studio", "train", [0], size=48)
    for other in (
        render_scenes("studio", "train", [1], size=48),
        render_scenes("studio", "train", [0], size=48, seed=1),
        render_scenes("studio", "val", [0], size=48),
    ):
        assert not torch.equal(base["depth"], other["depth"])
        assert not torch.equal(base["image"], other["image"])


def test_domains_share_geometry_but_not_appearance():
    ref = render_scenes("studio", "test", [3, 4], size=48)
    for domain in ("dusk", "fog", "toon", "pretrain"):
        out = render_scenes(domain, "test", [3, 4], size=48)
        for key in LABELS:
            assert torch.equal(ref[key], out[key]), (domain, key)
        assert (ref["image"] - out["image"]).abs().mean() > 0.02, domain


# -- geometry and label consistency -------------------------------------------------------------


def test_layouts_are_physical():
    """Primitives stand inside the walls without overlapping; the camera is in free space."""
    for i in range(60):
        lay = sample_layout(python_rng(geometry_seed(0, "train", i)))
        W, H, D = lay.room
        assert 3.0 <= W <= 7.0 and 3.0 <= D <= 7.0 and 2.4 <= H <= 3.2
        assert 3 <= len(lay.primitives) <= 6
        for p in lay.primitives:
            r = p.footprint
            assert p.x - r + 1e-9 >= WALL_MARGIN and p.x + r <= W - WALL_MARGIN + 1e-9
            assert p.z - r + 1e-9 >= WALL_MARGIN and p.z + r <= D - WALL_MARGIN + 1e-9
            assert 0 < p.height < H
        for a in range(len(lay.primitives)):
            for b in range(a):
                pa, pb = lay.primitives[a], lay.primitives[b]
                assert (
                    math.hypot(pa.x - pb.x, pa.z - pb.z) >= pa.footprint + pb.footprint + FOOTPRINT_GAP - 1e-9
                )
        cx, cy, cz = lay.camera.position
        assert 0 < cx < W and 0 < cz < D and 0 < cy < H
        for p in lay.primitives:
            assert math.hypot(cx - p.x, cz - p.z) > p.footprint


def test_floor_depth_matches_ray_plane_intersection(scenes):
    """Depth is z-depth: with rays (x, y, -1) the floor hit y = 0 is at t = depth exactly."""
    rays = camera_rays(scenes)
    c2w = scenes["cam_to_world"].double()
    d_world = torch.einsum("bij,bjhw->bihw", c2w[:, :3, :3], rays)
    t = -c2w[:, 1, 3].view(-1, 1, 1) / d_world[:, 1]
    on_floor = (scenes["semseg"] == FLOOR) | (scenes["semseg"] == RUG)
    assert on_floor.sum() > 1000
    depth = scenes["depth"][:, 0].double()
    rel = ((t - depth).abs() / depth)[on_floor]
    assert rel.max() < 1e-3


def test_cameras_are_rigid_and_inside_the_room(scenes):
    c2w = scenes["cam_to_world"].double()
    R = c2w[:, :3, :3]
    assert torch.allclose(
        R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(12, 3, 3), atol=1e-5
    )
    assert torch.allclose(torch.linalg.det(R), torch.ones(12, dtype=torch.float64), atol=1e-5)
    assert torch.equal(c2w[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(12, 4))
    assert (c2w[:, 1, 3] >= 1.0).all()  # camera height above the floor
    K_ = scenes["intrinsics"]
    assert torch.allclose(K_[:, 0, 2], torch.full((12,), 31.5)) and torch.equal(K_[:, 0, 0], K_[:, 1, 1])


def test_normals_are_unit_and_face_the_camera(scenes):
    n = scenes["normals"].double()
    assert ((n.norm(dim=1) - 1).abs() < 1e-5).all()
    facing = (n * camera_rays(scenes)).sum(1)
    assert (facing < 1e-4).all()
    assert (facing < 0).float().mean() > 0.999


def test_normals_agree_with_depth_gradients(scenes):
    """Back-project depth with the intrinsics; finite-difference normals match on planar interiors."""
    depth = scenes["depth"][:, 0].double()
    pts = camera_rays(scenes) * depth.unsqueeze(1)  # camera-frame points (x, y, -d) * d
    right = pts[:, :, 1:-1, 2:] - pts[:, :, 1:-1, :-2]
    down = pts[:, :, 2:, 1:-1] - pts[:, :, :-2, 1:-1]
    fd = torch.cross(right, -down, dim=1)
    fd = fd / fd.norm(dim=1, keepdim=True)
    sem, edge = scenes["semseg"], scenes["edge"][:, 0]
    ok = torch.ones_like(sem[:, 1:-1, 1:-1], dtype=torch.bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ok &= sem[:, 1 + dy : 63 + dy, 1 + dx : 63 + dx] == sem[:, 1:-1, 1:-1]
            ok &= edge[:, 1 + dy : 63 + dy, 1 + dx : 63 + dx] == 0
    cos = (fd * scenes["normals"][:, :, 1:-1, 1:-1].double()).sum(1).clamp(-1, 1)
    angle = torch.rad2deg(torch.acos(cos))[ok]
    assert angle.numel() > 20000
    assert angle.median() < 2.0
    assert (angle < 5.0).float().mean() > 0.95


def test_decals_change_class_but_not_geometry(scenes):
    """Rugs and paintings are flat: across their border the normal is bit-identical to the floor/wall."""
    sem, n = scenes["semseg"], scenes["normals"]
    pairs = 0
    for decal, host in ((RUG, FLOOR), (PAINTING, WALL)):
        for a, b in NEIGHBOURS:
            for s, t in ((a, b), (b, a)):
                mask = (sem[s] == decal) & (sem[t] == host)
                na, nb = n.permute(0, 2, 3, 1)[s][mask], n.permute(0, 2, 3, 1)[t][mask]
                assert torch.equal(na, nb)
                pairs += int(mask.sum())
    assert pairs > 20


def _discontinuity_pairs(sem: torch.Tensor, depth: torch.Tensor):
    """Yield (first, second, discontinuous) masks for right and bottom neighbour pairs."""
    for a, b in NEIGHBOURS:
        d1, d2 = depth[a], depth[b]
        jump = (d1 - d2).abs() > EDGE_DEPTH_REL_THRESHOLD * torch.minimum(d1, d2)
        yield a, b, sem[a] != sem[b], jump


def test_edges_lie_on_discontinuities_and_cover_class_changes(scenes):
    sem, depth, edge = scenes["semseg"], scenes["depth"][:, 0], scenes["edge"][:, 0].bool()
    assert edge.any()
    explained = torch.zeros_like(edge)
    for a, b, cls_change, jump in _discontinuity_pairs(sem, depth):
        disc = cls_change | jump
        first_near = depth[a] <= depth[b]
        explained[a] |= disc & first_near
        explained[b] |= disc & ~first_near
        # every class change is marked exactly on its nearer pixel (the left/top one on ties)
        assert edge[a][cls_change & first_near].all()
        assert edge[b][cls_change & ~first_near].all()
    # every edge pixel is the nearer pixel of a class change or of a depth jump: one pixel per
    # discontinuity, on the occluding side, so lines are one pixel thick
    assert torch.equal(edge & ~explained, torch.zeros_like(edge))


def test_several_classes_appear():
    sem = render_scenes("studio", "train", range(24), size=32)["semseg"]
    seen = set(sem.unique().tolist())
    assert {FLOOR, WALL} <= seen
    assert len(seen - {FLOOR, WALL, CEILING, RUG, PAINTING}) >= 3  # at least 3 primitive classes
    assert len(seen) >= 7


# -- writer -------------------------------------------------------------------------------------


def test_write_scenes_layout_and_round_trip(tmp_path):
    out = tmp_path / "scenes"
    counts = {"train": 3, "val": 2}
    root = write_scenes(out, domain="fog", counts=counts, size=32, seed=5, batch_size=2, progress=False)
    assert root == out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["gt_sets", "images", "segmentation", "depth", "normals", "edge", "meta.json", "contact_sheet.png"]
    )
    assert (out / "gt_sets" / "train.txt").read_text() == "train_000000\ntrain_000001\ntrain_000002\n"
    assert (out / "gt_sets" / "val.txt").read_text().split() == ["val_000000", "val_000001"]
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporary files
    for split, n in counts.items():
        ref = render_scenes("fog", split, range(n), size=32, seed=5)
        for i in range(n):
            sid = f"{split}_{i:06d}"
            img = Image.open(out / "images" / f"{sid}.png")
            assert img.mode == "RGB" and img.format == "PNG"
            expected = (ref["image"][i] * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            assert np.array_equal(np.asarray(img), expected)
            seg = np.asarray(Image.open(out / "segmentation" / f"{sid}.png"))
            assert seg.dtype == np.uint8 and seg.min() >= 1
            assert np.array_equal(seg.astype(np.int64) - 1, ref["semseg"][i].numpy())
            depth = np.load(out / "depth" / f"{sid}.npy")
            assert depth.dtype == np.float32 and np.array_equal(depth, ref["depth"][i, 0].numpy())
            normals = np.load(out / "normals" / f"{sid}.npy")
            assert normals.shape == (32, 32, 3)
            assert np.array_equal(normals, ref["normals"][i].permute(1, 2, 0).numpy())
            edge = np.load(out / "edge" / f"{sid}.npy")
            assert edge.dtype == np.float32 and np.array_equal(edge, ref["edge"][i, 0].numpy())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["format"] == "nyud" and meta["generator"] == "taskadapt.scenes"
    assert meta["generator_version"] == GENERATOR_VERSION
    assert (meta["domain"], meta["seed"], meta["size"]) == ("fog", 5, 32)
    assert meta["counts"] == counts and meta["class_names"] == list(CLASS_NAMES)
    assert "z-depth" in meta["depth"] and "camera frame" in meta["normals"] and "nearer pixel" in meta["edge"]
    assert meta["split_id_pattern"].format(split="val", index=1) == "val_000001"
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.size[0] > 200


def test_write_scenes_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(DatasetError, match="--overwrite") as err:
        write_scenes(tmp_path, counts={"train": 1}, size=16, progress=False)
    assert str(tmp_path) in str(err.value) and "--out" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    write_scenes(tmp_path, counts={"train": 1}, size=16, progress=False, overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "precious"
    assert (tmp_path / "images" / "train_000000.png").is_file()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"counts": {"train": -1}}, "integer >= 0"),
        ({"counts": {"training": 2}}, "split"),
        ({"counts": {"train": 0}}, "nothing to write"),
        ({"size": 4}, "size"),
        ({"domain": "foggy"}, "did you mean 'fog'"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_write_scenes_rejects_bad_arguments(tmp_path, kwargs, match):
    args = {"counts": {"train": 1}, "size": 16, "progress": False} | kwargs
    with pytest.raises(ConfigError, match=match):
        write_scenes(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()  # nothing is created before the arguments are checked
