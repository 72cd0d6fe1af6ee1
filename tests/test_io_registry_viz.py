"""Atomic writes, the registry's error messages, and the colour helpers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from taskadapt import viz
from taskadapt.errors import ConfigError
from taskadapt.io import atomic_open, write_json
from taskadapt.registry import Registry
from taskadapt.tasks import get_task


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write('{"a": 2, "half written')
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_atomic_write_replaces_on_success(tmp_path):
    target = tmp_path / "sub" / "x.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}


def test_registry_did_you_mean_and_listing():
    reg: Registry[int] = Registry("widget")
    reg.register("semseg", 1)
    reg.register("depth", 2)
    assert reg.get("depth") == 2
    assert reg.names("s*") == ["semseg"]
    with pytest.raises(ConfigError, match=r"unknown widget 'semsg'; did you mean 'semseg'\? Available: depth, semseg"):
        reg.get("semsg")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("depth", 3)


def test_palette_distinct_for_many_classes():
    for k in (9, 21, 40, 60):
        pal = viz.palette(k)
        assert pal.shape == (k, 3) and pal.dtype == np.uint8
        assert len({tuple(c) for c in pal}) == k


def test_semseg_ignore_is_black_and_classes_coloured():
    lab = torch.tensor([[0, 1], [255, 1]])
    rgb = viz.semseg_to_rgb(lab, 3)
    assert rgb.shape == (2, 2, 3)
    assert (rgb[1, 0] == 0).all()
    assert (rgb[0, 1] == viz.palette(3)[1]).all()


def test_normals_and_depth_colours():
    n = torch.zeros(3, 1, 2)
    n[2] = 1.0  # facing the camera -> (127/128, 127/128, 255)
    n[:, 0, 1] = math.nan
    rgb = viz.normals_to_rgb(n)
    assert tuple(rgb[0, 0]) == (128, 128, 255)
    assert tuple(rgb[0, 1]) == (0, 0, 0)
    d = torch.tensor([[[1.0, 2.0, math.nan]]])
    drgb = viz.depth_to_rgb(d, vmin=1.0, vmax=2.0)
    assert tuple(drgb[0, 2]) == (0, 0, 0)
    assert not np.array_equal(drgb[0, 0], drgb[0, 1])



def test_label_to_rgb_draws_the_photo_and_asks_the_task_for_labels():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 4, 5, generator=g)
    assert np.array_equal(viz.label_to_rgb("image", image), viz.image_to_rgb(image))
    seg = torch.randint(0, 3, (4, 5), generator=g)
    seg[0, 0] = 255
    assert np.array_equal(viz.label_to_rgb("semseg", seg), viz.semseg_to_rgb(seg, int(seg[seg != 255].max()) + 1))
    assert np.array_equal(viz.label_to_rgb("parts", seg, 9), get_task("parts").visualize(seg, 9))
    depth = torch.rand(1, 4, 5, generator=g) + 1
    assert np.array_equal(viz.label_to_rgb("depth", depth, depth_range=(1.0, 2.0)),
                          viz.depth_to_rgb(depth, 1.0, 2.0))
    assert np.array_equal(get_task("depth").visualize(depth, depth_range=(1.0, 2.0)), viz.depth_to_rgb(depth, 1.0, 2.0))
    edge = (torch.rand(1, 4, 5, generator=g) > 0.5).float()
    for key in ("edge", "saliency"):
        assert np.array_equal(viz.label_to_rgb(key, edge), viz.edge_to_rgb(edge))
    with pytest.raises(KeyError, match="no visualisation for 'meta'"):
        viz.label_to_rgb("meta", image)

def test_contact_sheet_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    sample = {
        "image": torch.rand(3, 16, 16, generator=g),
        "semseg": torch.randint(0, 5, (16, 16), generator=g),
        "depth": torch.rand(1, 16, 16, generator=g) + 1,
        "normals": torch.nn.functional.normalize(torch.randn(3, 16, 16, generator=g), dim=0),
        "edge": (torch.rand(1, 16, 16, generator=g) > 0.8).float(),
        "meta": {"id": "x"},
    }
    out = viz.contact_sheet([sample, sample, sample], tmp_path / "sheet.png", {"semseg": 5}, title="t")
    with Image.open(out) as im:
        w, h = im.size
    assert w > h  # 5 columns x 3 rows
    assert w == pytest.approx(100 * 2.0 * 5, abs=2)
