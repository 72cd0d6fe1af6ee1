"""SYNTHIA reader (16-bit label/depth PNGs, class mapping) and the 16-bit PNG decoder behind it."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_fixtures import write_png, write_synthia
from PIL import Image

from taskadapt.data.datasets import create_dataset
from taskadapt.data.datasets.cityscapes import CITYSCAPES_CLASSES, SYNTHIA16_CLASSES
from taskadapt.data.datasets.png16 import decode_png
from taskadapt.data.datasets.synthia import SYNTHIA_TO_TRAIN
from taskadapt.errors import DatasetError

# SYNTHIA id -> 16-class index, written out by hand from the UDA protocol
HAND_16 = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10, 17: 11, 8: 12, 19: 13,
           12: 14, 11: 15}


@pytest.fixture(scope="module")
def synthia(tmp_path_factory):
    root = tmp_path_factory.mktemp("RAND_CITYSCAPES")
    return root, write_synthia(root, splits={"mini": ["0000002", "0000000"]})


def test_ids_and_splits(synthia):
    root, _ = synthia
    ds = create_dataset("synthia", root, "all")
    assert ds.ids == ["0000000", "0000001", "0000002"] and ds.splits(root) == ["all", "mini"]
    assert create_dataset("synthia", root, "mini").ids == ["0000002", "0000000"]
    assert ds.num_classes == {"semseg": 16} and ds.class_names["semseg"] == SYNTHIA16_CLASSES


def test_sixteen_class_mapping(synthia):
    root, truth = synthia
    s = create_dataset("synthia", root, "all")[0]
    cls = truth["0000000"]["class"]
    expected = np.vectorize(lambda v: HAND_16.get(int(v), 255))(cls)
    assert np.array_equal(s["semseg"].numpy(), expected)
    # road, terrain (not in the 16), sky, lanemarking, void, bicycle
    assert s["semseg"][0, :6].tolist() == [0, 255, 9, 255, 255, 15]


def test_nineteen_class_mapping(synthia):
    root, truth = synthia
    ds = create_dataset("synthia", root, "all", tasks=["semseg"], num_classes=19)
    assert ds.class_names["semseg"] == CITYSCAPES_CLASSES
    cls = truth["0000001"]["class"]
    expected = np.vectorize(lambda v: SYNTHIA_TO_TRAIN.get(int(v), 255))(cls)
    assert np.array_equal(ds[1]["semseg"].numpy(), expected)
    assert SYNTHIA_TO_TRAIN[16] == 9  # terrain exists in the 19-class map


def test_depth_in_centimetres(synthia):
    root, truth = synthia
    depth = create_dataset("synthia", root, "all", tasks=["depth"])[2]["depth"].numpy()[0]
    raw = truth["0000002"]["depth_cm"]
    bad = (raw == 0) | (raw == 65535)
    assert np.isnan(depth[1, :2]).all() and np.array_equal(np.isnan(depth), bad)
    assert np.allclose(depth[~bad], raw[~bad] / 100.0)
    assert np.nanmax(depth) > 255 / 100  # the low byte was not lost (values above 2.55 m)


def test_truncated_label_png_names_file(tmp_path):
    write_synthia(tmp_path, n=1)
    lab = tmp_path / "GT" / "LABELS" / "0000000.png"
    lab.write_bytes(lab.read_bytes()[:-30])
    with pytest.raises(DatasetError, match=r"cannot decode file.*GT/LABELS/0000000\.png"):
        create_dataset("synthia", tmp_path, "all")[0]


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (0, 1, 2, 3, 4), (4, 3, 1)])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png16_roundtrip_every_filter(tmp_path, filters, channels):
    rng = np.random.default_rng(channels)
    a = rng.integers(0, 65536, (9, 11, channels)).astype(np.uint16)
    out = decode_png(write_png(tmp_path / "x.png", a, filters=filters))
    assert out.dtype == np.uint16 and np.array_equal(out, a)


def test_png16_decoder_agrees_with_pillow(tmp_path):
    # Pillow's encoder picks Sub/Up/Paeth adaptively on smooth images: an independent check
    x = np.linspace(0, 255, 48)
    g = np.add.outer(x, x) / 2
    rgb = np.stack([g, g.T, 255 - g], -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(decode_png(tmp_path / "a.png"), rgb)
    grey16 = (np.add.outer(x, x) * 128).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "b.png")
    assert np.array_equal(decode_png(tmp_path / "b.png")[..., 0], grey16)
    # and our encoder's 8-bit output is what Pillow reads
    write_png(tmp_path / "c.png", rgb, filters=(3, 4, 1))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), rgb)
