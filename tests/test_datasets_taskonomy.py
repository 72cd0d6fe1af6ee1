"""Taskonomy reader: both folder orders, building splits, label encodings and the normals frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dataset_fixtures import write_taskonomy

from taskadapt.data.datasets import create_dataset
from taskadapt.data.datasets.taskonomy import TASKONOMY_CLASSES
from taskadapt.errors import ConfigError, DatasetError


@pytest.fixture(scope="module", params=["building", "domain"])
def taskonomy(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"taskonomy_{request.param}")
    return root, write_taskonomy(root, layout=request.param)


def test_ids_and_splits(taskonomy):
    root, _ = taskonomy
    train = create_dataset("taskonomy", root, "train")
    # numeric (not lexical) order of points: 3 before 10
    assert train.ids == ["allensville/point_3_view_0", "allensville/point_10_view_1"]
    assert create_dataset("taskonomy", root, "val").ids == ["beechwood/point_3_view_0"]
    assert len(create_dataset("taskonomy", root, "all")) == 3
    assert create_dataset("taskonomy", root, "x", buildings=["beechwood"]).ids == ["beechwood/point_3_view_0"]
    assert train.splits(root) == ["all", "train", "val"]
    assert train.tasks == ("semseg", "depth", "normals", "edge")
    assert train.num_classes == {"semseg": 17} and train.class_names["semseg"] == TASKONOMY_CLASSES


def test_label_encodings(taskonomy):
    root, truth = taskonomy
    ds = create_dataset("taskonomy", root, "train")
    s, t = ds[1], truth["allensville/point_10_view_1"]
    assert np.array_equal((s["image"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), t["rgb"])

    seg = t["segment_semantic"].astype(np.int64)
    assert np.array_equal(s["semseg"].numpy(), np.where(seg == 0, 255, seg - 1))
    assert s["semseg"][0, 0] == 255 and s["semseg"][0, 1] == 16

    depth, raw = s["depth"].numpy()[0], t["depth_euclidean"]
    bad = (raw == 65535) | (raw == 0)
    assert np.isnan(depth[1, :2]).all() and np.array_equal(np.isnan(depth), bad)
    assert np.allclose(depth[~bad], raw[~bad] / 512.0)

    n = s["normals"].numpy().transpose(1, 2, 0)
    assert np.isnan(n[2, :3]).all()  # grey 128 -> no normal
    v = 2.0 * t["normal"].astype(np.float64) / 255.0 - 1.0
    v[..., 1] *= -1  # stored y down -> ours y up
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    keep = ~np.isnan(n).any(-1)
    assert keep.sum() == 16 * 20 - 3 and np.allclose(n[keep], v[keep], atol=1e-5)

    edge = s["edge"].numpy()[0]
    assert edge[3, 0] == 0 and edge[3, 1] == 1  # 2621 / 65535 < 0.04 < 2622 / 65535
    assert np.array_equal(edge, (t["edge_texture"] / 65535.0 > 0.04).astype(np.float32))


def test_depth_modes(tmp_path):
    truth = write_taskonomy(tmp_path, fov=1.2)
    sid = "allensville/point_3_view_0"
    d_ray = create_dataset("taskonomy", tmp_path, "train", tasks=["depth"])[0]["depth"].numpy()[0]
    d_z = create_dataset("taskonomy", tmp_path, "train", tasks=["depth"], depth="euclidean_to_z")[0]
    d_z = d_z["depth"].numpy()[0]
    h, w = d_ray.shape
    f = (w / 2) / math.tan(0.6)
    # pixel (row 5, col 0): centre offsets (0.5 - 10, 5.5 - 8) pixels
    scale = math.sqrt(1 + ((0.5 - w / 2) / f) ** 2 + ((5.5 - h / 2) / f) ** 2)
    assert d_z[5, 0] == pytest.approx(truth[sid]["depth_euclidean"][5, 0] / 512.0 / scale, rel=1e-5)
    assert np.all(d_z[~np.isnan(d_z)] < d_ray[~np.isnan(d_ray)])  # z-depth is shorter than the ray
    with pytest.raises(DatasetError, match="depth_zbuffer"):
        create_dataset("taskonomy", tmp_path, "train", tasks=["depth"], depth="zbuffer")
    with pytest.raises(ConfigError, match="depth="):
        create_dataset("taskonomy", tmp_path, "train", depth="mist")


def test_missing_building_and_file(tmp_path):
    write_taskonomy(tmp_path)
    with pytest.raises(DatasetError, match="building 'nowhere'"):
        create_dataset("taskonomy", tmp_path, "x", buildings=["nowhere"])
    with pytest.raises(DatasetError, match="split 'test' not found"):
        create_dataset("taskonomy", tmp_path, "test")
    target = tmp_path / "allensville" / "normal" / "point_3_view_0_domain_normal.png"
    target.unlink()
    with pytest.raises(DatasetError, match=r"point_3_view_0_domain_normal\.png") as err:
        create_dataset("taskonomy", tmp_path, "train")[0]
    assert "taskonomy.stanford.edu" in str(err.value)
