"""PASCAL-Context reader: semseg lookup order, part groups, saliency, normals masking, edge derivation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dataset_fixtures import write_pascal

from taskadapt.data.datasets import create_dataset
from taskadapt.data.datasets.pascal import PART_CLASSES, PART_GROUPS, VOC_CLASSES
from taskadapt.errors import ConfigError, DatasetError


@pytest.fixture(scope="module")
def pascal(tmp_path_factory):
    root = tmp_path_factory.mktemp("PASCAL_MT")
    return root, write_pascal(root)


def test_pascal_basics(pascal):
    root, truth = pascal
    ds = create_dataset("pascal", root, "train")
    assert ds.ids == ["2008_000001", "2008_000002"] and ds.splits(root) == ["train", "val"]
    assert ds.tasks == ("semseg", "parts", "saliency", "normals", "edge")
    assert ds.num_classes == {"semseg": 21, "parts": 7}
    assert ds.class_names == {"semseg": VOC_CLASSES, "parts": PART_CLASSES}
    s = ds[0]
    assert s["meta"]["dataset"] == "pascal" and s["image"].shape == (3, 16, 20)


def test_semseg_voc12_first_then_context(pascal):
    root, truth = pascal
    ds = create_dataset("pascal", root, "train", tasks=["semseg"])
    # 2008_000001 has both files (pascal-context differs by +1): VOC12 must win
    assert np.array_equal(ds[0]["semseg"].numpy(), truth["train"]["2008_000001"]["semseg"])
    assert ds[0]["semseg"][0, 0] == 255
    assert np.array_equal(ds[1]["semseg"].numpy(), truth["train"]["2008_000002"]["semseg"])


def test_parts_groups_and_ignore(pascal):
    root, truth = pascal
    train = create_dataset("pascal", root, "train", tasks=["parts"])
    parts = train[0]["parts"].numpy()
    assert np.array_equal(parts, truth["train"]["2008_000001"]["parts"])
    assert parts[0, 2] == 1 and parts[9, 3] == 5 and parts[13, 5] == 6  # head, luleg, rfoot groups
    assert parts[10, 12] == 0  # the dog's "head" part is not a person part
    assert set(np.unique(parts)) == {0, 1, 5, 6}
    assert (train[1]["parts"].numpy() == 255).all()  # person without part annotations
    val = create_dataset("pascal", root, "val", tasks=["parts"])
    assert (val[0]["parts"].numpy() == 255).all()  # no objects at all
    assert PART_GROUPS["llarm"] == PART_GROUPS["rhand"] == 4 and PART_GROUPS["neck"] == 2


def test_saliency_threshold(pascal):
    root, truth = pascal
    sal = create_dataset("pascal", root, "train", tasks=["saliency"])[0]["saliency"].numpy()[0]
    raw = truth["train"]["2008_000001"]["saliency"]
    assert np.array_equal(sal, (raw / 255.0 > 0.5).astype(np.float32))
    assert sal[0, :3].tolist() == [0.0, 1.0, 1.0]  # 127 -> 0, 128 -> 1


def test_normals_masked_by_labelmap_class(pascal, tmp_path):
    root, truth = pascal
    t = truth["val"]["2008_000003"]
    decoded = 2.0 * t["normals_png"].astype(np.float64) / 255.0 - 1.0
    unit = decoded / np.linalg.norm(decoded, axis=-1, keepdims=True)

    n = create_dataset("pascal", root, "val", tasks=["normals"])[0]["normals"].numpy().transpose(1, 2, 0)
    labelled = t["labelmap"] != 0  # default: every labelled pixel
    assert np.array_equal(~np.isnan(n).any(-1), labelled)
    assert np.allclose(n[labelled], unit[labelled], atol=1e-5)

    only9 = create_dataset("pascal", root, "val", tasks=["normals"], normals_valid_ids=[9])[0]["normals"]
    keep = ~np.isnan(only9.numpy()).any(0)
    assert np.array_equal(keep, t["labelmap"] == 9) and keep.any() and not keep.all()

    ids_file = tmp_path / "ids.json"
    ids_file.write_text(json.dumps([7, 123]))
    from_file = create_dataset("pascal", root, "val", tasks=["normals"], normals_valid_ids=str(ids_file))
    assert np.array_equal(~np.isnan(from_file[0]["normals"].numpy()).any(0), t["labelmap"] == 7)
    with pytest.raises(ConfigError, match="normals_valid_ids"):
        create_dataset("pascal", root, "val", normals_valid_ids=["a"])


def test_edge_equals_hand_made_thin_boundary(pascal):
    root, _ = pascal
    edge = create_dataset("pascal", root, "train", tasks=["edge"])[0]["edge"].numpy()[0]
    # LabelMap: 7 on columns 0-9, 9 on columns 10-19. |Laplacian| > 0 marks columns 9 and 10 (a
    # 2-pixel band); Guo-Hall thinning removes column 10 and the band's top-left end pixel.
    expected = np.zeros((16, 20), np.float32)
    expected[1:, 9] = 1
    assert np.array_equal(edge, expected)


def test_missing_parts_file_names_it(tmp_path):
    write_pascal(tmp_path)
    (tmp_path / "human_parts" / "2008_000002.mat").unlink()
    ds = create_dataset("pascal", tmp_path, "train")
    with pytest.raises(DatasetError, match=r"human_parts/2008_000002\.mat") as err:
        ds[1]
    assert "PASCAL_MT.tgz" in str(err.value)
    (tmp_path / "pascal-context" / "trainval" / "2008_000001.mat").write_bytes(b"MATLAB 5.0 junk")
    with pytest.raises(DatasetError, match=r"cannot decode file.*trainval/2008_000001\.mat"):
        ds[0]
