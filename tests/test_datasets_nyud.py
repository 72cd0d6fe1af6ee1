"""NYUD reader on NYUD_MT, NYUDv2 and procedural-scene fixtures, plus the shared factory/error contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_fixtures import write_nyud

from taskadapt.data.datasets import DATASETS, MultiTaskDataset, create_dataset, list_formats
from taskadapt.data.datasets.nyud import NYU40_CLASSES
from taskadapt.errors import ConfigError, DatasetError


@pytest.fixture(scope="module")
def nyud_mt(tmp_path_factory):
    root = tmp_path_factory.mktemp("NYUD_MT")
    return root, write_nyud(root)


@pytest.fixture(scope="module")
def nyudv2(tmp_path_factory):
    root = tmp_path_factory.mktemp("NYUDv2")
    return root, write_nyud(root, variant="nyudv2")


def test_formats_and_registry():
    assert list_formats() == ["cityscapes", "nyud", "pascal", "scenes", "synthia", "taskonomy"]
    assert all(issubclass(DATASETS.get(f), MultiTaskDataset) for f in list_formats())
    for f in list_formats():
        cls = DATASETS.get(f)
        assert cls.SOURCE and cls.LAYOUT and cls.TASKS


def test_unknown_format_did_you_mean(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'nyud'"):
        create_dataset("nyu", tmp_path, "train")


def test_nyud_mt_values(nyud_mt):
    root, truth = nyud_mt
    ds = create_dataset("nyud", root, "val")
    assert ds.format == "nyud" and ds.split == "val" and ds.ids == ["0004", "0005"]
    assert ds.tasks == ("semseg", "depth", "normals", "edge")
    assert ds.num_classes == {"semseg": 40} and ds.class_names["semseg"] == NYU40_CLASSES
    assert ds.splits(root) == ["train", "val"]
    s, t = ds[1], truth["val"]["0005"]

    assert s["meta"] == {"id": "0005", "dataset": "nyud", "split": "val", "size": (16, 20)}
    img = s["image"]
    assert img.shape == (3, 16, 20) and img.dtype == torch.float32 and img.min() >= 0 and img.max() <= 1
    # jpg is lossy: close, not equal
    assert np.abs(img.numpy().transpose(1, 2, 0) * 255 - t["image"]).mean() < 3

    seg = t["segmentation"].astype(np.int64)
    expected = np.where(seg == 0, 255, seg - 1)
    assert s["semseg"].dtype == torch.int64 and np.array_equal(s["semseg"].numpy(), expected)
    assert s["semseg"][0, 0] == 255 and s["semseg"][0, 1] == 39

    depth = s["depth"].numpy()[0]
    assert np.isnan(depth[1, :3]).all()
    valid = t["depth"] != 0
    assert np.array_equal(np.isnan(depth), ~valid) and np.allclose(depth[valid], t["depth"][valid])

    n = s["normals"].numpy()
    assert np.isnan(n[:, 2, :4]).all()  # all-zero vectors -> NaN in all three channels
    ok = np.linalg.norm(t["normals"], axis=-1) > 0
    assert np.allclose(n.transpose(1, 2, 0)[ok], t["normals"][ok], atol=1e-6)
    assert np.array_equal(s["edge"].numpy()[0], t["edge"])


def test_nyudv2_png_encodings(nyudv2):
    root, truth = nyudv2
    s, t = create_dataset("nyud", root, "train")[0], truth["train"]["0001"]
    # png image is exact
    assert np.array_equal((s["image"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), t["image"])
    n = s["normals"].numpy().transpose(1, 2, 0)
    assert np.isnan(n[2, :4]).all()  # grey 128 -> invalid
    decoded = 2.0 * t["normals_png"].astype(np.float64) / 255.0 - 1.0
    unit = decoded / np.linalg.norm(decoded, axis=-1, keepdims=True)
    keep = ~np.isnan(n).any(-1)
    assert keep.sum() == 16 * 20 - 4
    assert np.allclose(n[keep], unit[keep], atol=1e-5)  # n = 2v/255 - 1, renormalised
    assert np.allclose(np.linalg.norm(n[keep], axis=-1), 1.0, atol=1e-5)
    assert np.array_equal(s["edge"].numpy()[0], t["edge"])  # 0/255 png -> {0, 1}


def test_scenes_meta_json(tmp_path):
    truth = write_nyud(tmp_path, variant="scenes", class_names=["floor", "wall", "box"], domain="studio")
    ds = create_dataset("scenes", tmp_path, "train", tasks=["semseg"])
    assert ds.num_classes == {"semseg": 3} and ds.class_names["semseg"] == ["floor", "wall", "box"]
    s = ds[0]
    assert s["meta"]["domain"] == "studio" and set(s) == {"image", "semseg", "meta"}
    seg = truth["train"]["0001"]["segmentation"].astype(np.int64)
    assert np.array_equal(s["semseg"].numpy(), np.where(seg == 0, 255, seg - 1))
    assert s["semseg"][s["semseg"] != 255].max() == 2
    # the NYUD reader knows nothing of scenes: NYU-40 classes, no domain
    nyud = create_dataset("nyud", tmp_path, "train", tasks=["semseg"])
    assert nyud.num_classes == {"semseg": 40} and "domain" not in nyud[0]["meta"]


def test_scenes_format_owns_its_facts(tmp_path):
    from dataclasses import replace

    from taskadapt.config import load_config
    from taskadapt.data.datasets import class_names_of, dataset_root, describe, edge_tolerance, prepare_dataset
    from taskadapt.data.scenes import CLASS_NAMES

    d = load_config(None, ["data.scenes.train=2", "data.scenes.val=0", "data.scenes.test=1",
                           "data.scenes.size=32", "data.scenes.domain=dusk"]).data
    assert dataset_root(d) == Path("runs/scenes/dusk-seed0-32px")  # no root: the default folder
    assert describe(d) == "scenes/dusk" and edge_tolerance(d) == 0.011
    assert class_names_of(d, ["semseg", "depth"]) == {"semseg": list(CLASS_NAMES)}  # known without a folder
    d = replace(d, root=str(tmp_path / "s"))
    assert prepare_dataset(d, progress=False) == tmp_path / "s"
    assert create_dataset("scenes", tmp_path / "s", "train").ids == ["train_000000", "train_000001"]
    assert prepare_dataset(d, progress=False) == tmp_path / "s"  # the same scenes: kept as they are
    with pytest.raises(ConfigError, match="holds other scenes"):
        prepare_dataset(replace(d, scenes=replace(d.scenes, seed=1)), progress=False)
    pascal = load_config(None, ["data.format=pascal", "data.root=/x"]).data
    assert edge_tolerance(pascal) == 0.0075 and describe(pascal) == "pascal:/x"
    assert edge_tolerance(replace(pascal, edge_tolerance=0.02)) == 0.02


def test_task_selection(nyud_mt, tmp_path):
    root, _ = nyud_mt
    ds = create_dataset("nyud", root, "train", tasks=["depth", "semseg", "depth"])
    assert ds.tasks == ("depth", "semseg") and set(ds[0]) == {"image", "depth", "semseg", "meta"}
    assert "semseg" in ds.num_classes
    with pytest.raises(ConfigError, match="did you mean 'semseg'.*Available: depth, edge, normals, semseg"):
        create_dataset("nyud", root, "train", tasks=["smeseg"])
    with pytest.raises(ConfigError, match="unknown task"):
        create_dataset("nyud", root, "train", tasks=["parts"])
    # tasks=None -> only the tasks whose folder exists
    write_nyud(tmp_path)
    for p in (tmp_path / "edge").iterdir():
        p.unlink()
    (tmp_path / "edge").rmdir()
    assert create_dataset("nyud", tmp_path, "train").tasks == ("semseg", "depth", "normals")
    with pytest.raises(DatasetError, match="task 'edge' needs .*edge"):
        create_dataset("nyud", tmp_path, "train", tasks=["edge"])


def test_unknown_option_and_bad_root(nyud_mt, tmp_path):
    root, _ = nyud_mt
    with pytest.raises(ConfigError, match="no option 'buildings'"):
        create_dataset("nyud", root, "train", buildings=["a"])
    with pytest.raises(DatasetError, match="does not exist") as err:
        create_dataset("nyud", tmp_path / "nope", "train")
    assert "gt_sets/<split>.txt" in str(err.value) and "NYUD_MT.tgz" in str(err.value)


def test_missing_split_lists_available(nyud_mt):
    root, _ = nyud_mt
    with pytest.raises(DatasetError, match=r"split 'test' not found.*splits found: train, val"):
        create_dataset("nyud", root, "test")
    with pytest.raises(DatasetError, match=r"did you mean 'train'\?"):
        create_dataset("nyud", root, "trian")


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    write_nyud(tmp_path)
    ds = create_dataset("nyud", tmp_path, "train")
    (tmp_path / "depth" / "0002.npy").unlink()
    with pytest.raises(DatasetError) as err:
        ds[1]
    msg = str(err.value)
    assert "0002" in msg and "depth/0002.npy" in msg and "file is missing" in msg
    assert "expected layout" in msg and "NYUD_MT.tgz" in msg  # layout + source
    assert "\n" not in msg  # the CLI prints user errors on one line
    assert "gt_sets/<split>.txt, images/<id>.jpg|.png, segmentation/<id>.png, depth/<id>.npy" in msg
    seg = tmp_path / "segmentation" / "0003.png"
    seg.write_bytes(seg.read_bytes()[:40])  # truncated PNG
    with pytest.raises(DatasetError, match=r"cannot decode file.*segmentation/0003\.png"):
        ds[2]
    (tmp_path / "normals" / "0001.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DatasetError, match=r"normals/0001\.npy"):
        ds[0]


def test_transform_is_applied(nyud_mt):
    root, _ = nyud_mt

    def flip(sample):
        out = dict(sample)
        out["semseg"] = sample["semseg"].flip(-1)
        out["meta"] = {**sample["meta"], "flipped": True}
        return out

    plain = create_dataset("nyud", root, "val")[0]
    s = create_dataset("nyud", root, "val", transform=flip)[0]
    assert s["meta"]["flipped"] and torch.equal(s["semseg"], plain["semseg"].flip(-1))
