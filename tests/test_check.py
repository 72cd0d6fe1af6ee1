"""`check_dataset`: passes on good fixtures of every format, and catches each kind of broken folder."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_fixtures import (
    write_cityscapes,
    write_nyud,
    write_pascal,
    write_synthia,
    write_taskonomy,
)
from PIL import Image
from rich.console import Console
from rich.table import Table

from taskadapt.data.check import CheckReport, SplitRow, check_dataset
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.tasks import get_task


def _render(table: Table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


@pytest.mark.parametrize("fmt,writer,splits", [
    ("nyud", write_nyud, ["train", "val"]),
    ("pascal", write_pascal, ["train", "val"]),
    ("taskonomy", write_taskonomy, ["all", "train", "val"]),
    ("cityscapes", write_cityscapes, ["train", "val"]),
    ("synthia", write_synthia, ["all"]),
])
def test_good_fixtures_pass(fmt, writer, splits, tmp_path):
    writer(tmp_path)
    report = check_dataset(tmp_path, fmt)
    assert isinstance(report, CheckReport)
    assert report.ok, report.problems
    assert [r.split for r in report.rows] == splits
    assert all(r.n_checked == r.n_ids > 0 for r in report.rows)
    assert all(r.image_sizes == {(16, 20): r.n_ids} for r in report.rows)
    text = _render(report.to_table())
    assert fmt in text and "16x20" in text and "ok" in text


def test_statistics_of_a_split(tmp_path):
    truth = write_nyud(tmp_path)
    row = check_dataset(tmp_path, "nyud", splits=["val"]).rows[0]
    assert row.tasks == ("semseg", "depth", "normals", "edge")
    depths = np.concatenate([t["depth"][t["depth"] > 0] for t in truth["val"].values()])
    assert row.stats["depth"]["min"] == pytest.approx(depths.min())
    assert row.stats["depth"]["max"] == pytest.approx(depths.max())
    assert row.stats["depth"]["valid"] == depths.size
    seg = np.concatenate([t["segmentation"].ravel() for t in truth["val"].values()])
    assert row.stats["semseg"]["classes_present"] == {int(c) - 1 for c in np.unique(seg) if c}
    assert row.summary("semseg").startswith(f"{len(row.stats['semseg']['classes_present'])}/40 classes")



def test_binary_summaries_name_the_positive_pixels():
    label = np.zeros((1, 10, 10), np.float32)  # 100 pixels: 20 ignored, 8 positive
    label[0, :2] = np.nan
    label[0, 2, :8] = 1.0
    stats = {t: get_task(t).label_stats() for t in ("edge", "saliency")}
    assert [s.update(label) for s in stats.values()] == [None, None]
    row = SplitRow("val", tasks=("edge", "saliency"), stats=stats)
    assert row.summary("edge") == "10.0% edge, 80% valid"
    assert row.summary("saliency") == "10.0% salient, 80% valid"

def test_max_samples_and_unknown_format(tmp_path):
    write_nyud(tmp_path)
    report = check_dataset(tmp_path, "nyud", splits=["train"], max_samples=1)
    assert report.ok and report.rows[0].n_ids == 3 and report.rows[0].n_checked == 1
    with pytest.raises(ConfigError, match="did you mean 'pascal'"):
        check_dataset(tmp_path, "pascl")


def test_broken_nyud_folder_collects_all_problems(tmp_path):
    write_nyud(tmp_path, splits={"train": 3, "val": 2})
    # 1. missing file for a listed id
    (tmp_path / "depth" / "0002.npy").unlink()
    # 2. out-of-range label (raw 45 -> 44 >= 40 classes)
    seg = np.array(Image.open(tmp_path / "segmentation" / "0003.png"))
    seg[4, 4] = 45
    Image.fromarray(seg).save(tmp_path / "segmentation" / "0003.png")
    # 3. label shape different from the image
    np.save(tmp_path / "depth" / "0001.npy", np.ones((8, 20), np.float32))
    # 4. non-unit normals
    n = np.load(tmp_path / "normals" / "0004.npy")
    n[5, 5] *= 2.0
    np.save(tmp_path / "normals" / "0004.npy", n)
    # 5. duplicate id; 6. an id without any files
    (tmp_path / "gt_sets" / "val.txt").write_text("0004\n0005\n0004\n9999\n")

    report = check_dataset(tmp_path, "nyud")
    assert not report.ok
    text = "\n".join(f"{p.path} :: {p.message}" for p in report.problems)
    assert "depth/0002.npy :: missing depth file for id '0002'" in text
    assert "segmentation/0003.png :: id '0003': semseg values out of range [0, 40) and not 255: 44" in text
    assert "depth/0001.npy :: id '0001': depth has shape (1, 8, 20), expected (1, 16, 20)" in text
    assert "normals/0004.npy :: id '0004': normals: 1 valid pixels are not unit vectors" in text
    assert "val.txt :: id '0004' is listed 2 times" in text
    assert "images/9999.jpg :: missing image file for id '9999'" in text
    assert report.n_problems == len(report.problems) >= 6
    assert report.rows[0].n_checked == 2  # 0001 and 0003 load (and are flagged); 0002 is missing
    problems = _render(report.problems_table())
    assert "0002.npy" in problems and "problems found" in problems


def test_broken_values_in_float_labels(tmp_path):
    write_nyud(tmp_path, splits={"train": 2})
    edge = np.load(tmp_path / "edge" / "0001.npy")
    edge[0, 0] = 0.5
    np.save(tmp_path / "edge" / "0001.npy", edge)
    depth = np.load(tmp_path / "depth" / "0002.npy")
    depth[3, 3] = -1.0
    np.save(tmp_path / "depth" / "0002.npy", depth)
    msgs = [p.message for p in check_dataset(tmp_path, "nyud").problems]
    assert any("edge values must be 0 or 1 (or NaN), found 0.5" in m for m in msgs)
    assert any("depth has 1 non-positive values" in m for m in msgs)


def test_corrupt_file_and_missing_layout(tmp_path):
    write_pascal(tmp_path)
    sal = tmp_path / "sal_distill" / "2008_000002.png"
    sal.write_bytes(sal.read_bytes()[:50])
    report = check_dataset(tmp_path, "pascal", splits=["train"])
    assert [p.path for p in report.problems] == [str(sal)]
    assert "cannot decode file" in report.problems[0].message
    empty = tmp_path / "empty"
    empty.mkdir()
    report = check_dataset(empty, "pascal")
    msgs = " | ".join(p.message for p in report.problems)
    assert "required folder 'JPEGImages' is missing" in msgs and "no splits found" in msgs
    with pytest.raises(DatasetError, match="nope does not exist"):
        check_dataset(tmp_path / "nope", "pascal")


def test_problem_list_is_capped(tmp_path):
    write_nyud(tmp_path, splits={"train": 3})
    (tmp_path / "gt_sets" / "train.txt").write_text("".join(f"x{i}\n" for i in range(30)))
    report = check_dataset(tmp_path, "nyud", max_listed=10)
    assert report.n_problems == 30 * 5 and len(report.problems) == 10  # 5 files per missing id
    assert "and 140 more not listed" in _render(report.problems_table())


def test_bad_split_is_reported_not_raised(tmp_path):
    write_cityscapes(tmp_path)
    report = check_dataset(tmp_path, "cityscapes", splits=["train", "test"])
    assert not report.ok and [r.split for r in report.rows] == ["train", "test"]
    assert "split 'test' not found" in report.problems[0].message
