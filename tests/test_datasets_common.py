"""Contract shared by every reader: never writes into the dataset folder, picklable, lazy-safe."""

from __future__ import annotations

import os
import pickle
import stat

import pytest
import torch
from dataset_fixtures import (
    snapshot,
    write_cityscapes,
    write_nyud,
    write_pascal,
    write_synthia,
    write_taskonomy,
)

from taskadapt.data.datasets import create_dataset, get_dataset_class, list_formats
from taskadapt.errors import ConfigError

WRITERS = {
    "nyud": (write_nyud, "train"),
    "pascal": (write_pascal, "train"),
    "taskonomy": (write_taskonomy, "train"),
    "cityscapes": (write_cityscapes, "train"),
    "synthia": (write_synthia, "all"),
    "scenes": (lambda root: write_nyud(root, variant="scenes", class_names=["floor", "wall"], domain="studio"),
               "train"),
}


def _read_only(root):
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), stat.S_IRUSR)
        os.chmod(dirpath, stat.S_IRUSR | stat.S_IXUSR)


def _writable(root):
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, stat.S_IRWXU)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), stat.S_IRUSR | stat.S_IWUSR)


def test_every_format_has_a_fixture():
    assert sorted(WRITERS) == list_formats()


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_reader_never_writes(fmt, tmp_path):
    writer, split = WRITERS[fmt]
    root = tmp_path / fmt
    writer(root)
    before = snapshot(root)
    _read_only(root)  # any attempt to create or modify a file would fail (when not running as root)
    try:
        ds = create_dataset(fmt, root, split)
        for i in range(len(ds)):
            sample = ds[i]
            assert sample["image"].dtype == torch.float32 and sample["meta"]["dataset"] == fmt
    finally:
        _writable(root)
    assert snapshot(root) == before


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_reader_pickles_for_worker_processes(fmt, tmp_path):
    writer, split = WRITERS[fmt]
    writer(tmp_path)
    ds = create_dataset(fmt, tmp_path, split)
    clone = pickle.loads(pickle.dumps(ds))
    a, b = ds[0], clone[0]
    assert a["meta"] == b["meta"]
    assert all(torch.equal(a[k].nan_to_num(-7), b[k].nan_to_num(-7)) for k in ds.tasks)


def test_reader_options_come_from_configure(tmp_path):
    options = {fmt: get_dataset_class(fmt).option_names() for fmt in list_formats()}
    assert options == {"cityscapes": ["num_classes"], "nyud": [], "pascal": ["normals_valid_ids"], "scenes": [],
                       "synthia": ["num_classes"], "taskonomy": ["buildings", "depth", "edge_threshold"]}
    cls = get_dataset_class("cityscapes")
    # a misspelt keyword is the TypeError a spelt-out __init__ gives; options are checked before the disk
    with pytest.raises(TypeError, match=r"^CityscapesDataset.__init__\(\) got an unexpected keyword argument 'n'$"):
        cls(tmp_path / "missing", "train", n=16)
    with pytest.raises(ConfigError, match="num_classes must be 19"):
        cls(tmp_path / "missing", "train", num_classes=7)
