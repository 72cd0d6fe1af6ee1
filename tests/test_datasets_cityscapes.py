"""Cityscapes reader: labelIds -> trainIds (19 and 16 classes) and depth from disparity + camera."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dataset_fixtures import write_cityscapes

from taskadapt.data.datasets import create_dataset
from taskadapt.data.datasets.cityscapes import CITYSCAPES_CLASSES, LABEL_TO_TRAIN, SYNTHIA16_CLASSES
from taskadapt.errors import ConfigError, DatasetError


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    return root, write_cityscapes(root)


def test_ids_splits_classes(cityscapes):
    root, _ = cityscapes
    ds = create_dataset("cityscapes", root, "train")
    assert ds.ids == ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019"]
    assert ds.splits(root) == ["train", "val"] and ds.tasks == ("semseg", "depth")
    assert ds.num_classes == {"semseg": 19} and ds.class_names["semseg"] == CITYSCAPES_CLASSES


def test_label_ids_to_train_ids(cityscapes):
    root, truth = cityscapes
    s = create_dataset("cityscapes", root, "train")[1]
    raw = truth["train"]["aachen/aachen_000001_000019"]["labelIds"]
    expected = np.vectorize(lambda v: LABEL_TO_TRAIN.get(int(v), 255))(raw)
    assert np.array_equal(s["semseg"].numpy(), expected)
    assert s["semseg"][0, :4].tolist() == [0, 13, 255, 18]  # road, car, unlabeled, bicycle
    assert set(np.unique(s["semseg"].numpy())) <= set(range(19)) | {255}


def test_sixteen_class_protocol(cityscapes):
    root, _ = cityscapes
    ds = create_dataset("cityscapes", root, "train", tasks=["semseg"], num_classes=16)
    assert ds.class_names["semseg"] == SYNTHIA16_CLASSES and len(SYNTHIA16_CLASSES) == 16
    full = create_dataset("cityscapes", root, "train", tasks=["semseg"])[0]["semseg"].numpy()
    s16 = ds[0]["semseg"].numpy()
    # terrain (9), truck (14), train (16) are dropped; ids above them shift down
    assert (s16[np.isin(full, [9, 14, 16])] == 255).all()
    assert (s16[full == 8] == 8).all() and (s16[full == 10] == 9).all() and (s16[full == 18] == 15).all()
    with pytest.raises(ConfigError, match="num_classes"):
        create_dataset("cityscapes", root, "train", num_classes=20)


def test_depth_from_disparity(cityscapes):
    root, truth = cityscapes
    t = truth["val"]["lindau/lindau_000000_000019"]
    depth = create_dataset("cityscapes", root, "val", tasks=["depth"])[0]["depth"].numpy()[0]
    p = t["disparity"].astype(np.float64)
    valid = p > 1
    expected = t["baseline"] * t["fx"] / ((p[valid] - 1.0) / 256.0)
    assert np.isnan(depth[1, :2]).all()  # p = 0 (no match) and p = 1 (zero disparity)
    assert np.array_equal(~np.isnan(depth), valid) and np.allclose(depth[valid], expected, rtol=1e-6)


def test_bad_camera_json_is_named(tmp_path):
    write_cityscapes(tmp_path)
    cam = tmp_path / "camera" / "val" / "lindau" / "lindau_000000_000019_camera.json"
    cam.write_text(json.dumps({"intrinsic": {"fx": 1.0}}))
    with pytest.raises(DatasetError, match=r"extrinsic\.baseline.*lindau_000000_000019_camera\.json"):
        create_dataset("cityscapes", tmp_path, "val")[0]
    with pytest.raises(DatasetError, match="use one of the splits found: train, val"):
        create_dataset("cityscapes", tmp_path, "test")
