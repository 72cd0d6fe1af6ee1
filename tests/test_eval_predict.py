"""evaluate_checkpoint / metrics_table / predict_images / affinity_report on the tiny trained run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_api import TINY, trained_checkpoint, write_checkpoint

from taskadapt.api import load
from taskadapt.config import load_config
from taskadapt.data.datasets import create_dataset
from taskadapt.errors import DatasetError
from taskadapt.evaluation import eval_loader, evaluate, evaluate_checkpoint, metrics_table
from taskadapt.evaluation.affinity import NoAffinity, affinity_report
from taskadapt.evaluation.predictions import predict_images
from taskadapt.metrics import DepthMetric, EdgeMetric, NormalsMetric, SegmentationMetric
from taskadapt.metrics.delta_m import save_baseline
from taskadapt.tasks import get_task

TASKS = ["semseg", "depth", "normals", "edge"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def direct(run):
    """The reference numbers: ``evaluate`` called by hand on the test split, exact edge matcher."""
    p = load(run["checkpoint"], device="cpu")
    dataset = create_dataset("scenes", run["root"], "test", tasks=TASKS)
    c = run["cfg"]
    return evaluate(p.model, eval_loader(dataset, c.data.crop_size, c.data.batch_size), TASKS, {"semseg": 9},
                    edge_exact=True,
                    edge_tolerance=0.011)


def test_evaluate_checkpoint_matches_direct_evaluate_and_delta_m_is_zero_against_itself(run, direct, tmp_path,
                                                                                        monkeypatch):
    import taskadapt.evaluation.scoring as evaluate_module

    calls = []

    def spy(*args, **kwargs):  # at 32 px the tolerance is < 1 px, so exact and approximate agree: ask directly
        calls.append(kwargs)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate", spy)
    baseline = tmp_path / "baseline.json"
    save_baseline(baseline, direct["metrics"], {"semseg": SegmentationMetric, "depth": DepthMetric,
                                                "normals": NormalsMetric, "edge": EdgeMetric}, "itself")
    result = evaluate_checkpoint(run["checkpoint"], baseline=str(baseline), progress=False)
    assert len(calls) == 1 and calls[0]["edge_exact"] is True and calls[0]["edge_tolerance"] == 0.011
    out = run["run"] / "eval-test"  # default: <checkpoint dir>/../eval-<split>
    written = json.loads((out / "metrics.json").read_text())
    assert result["files"]["metrics"] == str(out / "metrics.json")
    assert written["images"] == direct["images"] == 8
    assert written["dataset"]["split"] == "test" and written["dataset"]["format"] == "scenes"
    assert written["edge_matcher"] == {"exact": True, "tolerance": 0.011, "unit": "fraction of the image diagonal",
                                       "thin_targets": False}  # scenes draw 1-px boundaries
    for task in TASKS:
        assert written["metrics"][task].keys() == direct["metrics"][task].keys()
        for name, value in direct["metrics"][task].items():
            assert written["metrics"][task][name] == pytest.approx(value, abs=1e-6), (task, name)
        assert written["primary"][task]["metric"] == get_task(task).primary_metric
    dm = written["delta_m"]
    assert dm["delta_m"] == pytest.approx(0.0, abs=1e-9)
    assert set(dm["contributions"]) == set(TASKS)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in dm["contributions"].values())

    report = (out / "report.md").read_text()
    assert str(run["checkpoint"]) in report and "| split | test |" in report
    assert "exact one-to-one" in report and "tolerance 0.011" in report
    for task in TASKS:
        assert f"## {task}" in report
        primary = get_task(task).primary_metric
        assert f"| **{primary}** (primary) | **{direct['metrics'][task][primary]:.4f}** |" in report
        for name, value in direct["metrics"][task].items():
            assert f"{value:.4f}" in report, (task, name)
    assert "**Δm = +0.00%** over 4 tasks" in report

    table = metrics_table(result)
    assert table.row_count == sum(len(m) for m in direct["metrics"].values())
    metric_cells = list(table.columns[1].cells)
    assert "mIoU *" in metric_cells and "rmse *" in metric_cells and "pixel_acc" in metric_cells
    assert "Δm = +0.00%" in str(table.caption)


def test_evaluate_checkpoint_reports_missing_split_and_folder(run, tmp_path):
    with pytest.raises(DatasetError, match=r"split 'tset' does not exist.*splits there: test, train, val"):
        evaluate_checkpoint(run["checkpoint"], split="tset", out=str(tmp_path / "x"), progress=False)
    with pytest.raises(DatasetError, match="does not exist; pass --data"):
        evaluate_checkpoint(run["checkpoint"], data=str(tmp_path / "nowhere"), out=str(tmp_path / "x"),
                            progress=False)
    assert not (tmp_path / "x").exists()  # nothing written on failure


def test_predict_images_writes_a_png_per_task_and_a_sheet(run, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "room.png", tmp_path / "b" / "room.jpg"  # same stem: both kept
    Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(first)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(second)
    out = tmp_path / "pred"
    paths = predict_images(run["checkpoint"], [str(first), str(second)], str(out))
    names = [p.name for p in paths]
    files = {"semseg": [".png", ".ids.png"], "depth": [".png", ".mm.png", ".npy"], "normals": [".png", ".npy"],
             "edge": [".png", ".npy"]}
    assert names == [*(f"room_{t}{e}" for t in TASKS for e in files[t]), "room_sheet.png",
                     *(f"room-2_{t}{e}" for t in TASKS for e in files[t]), "room-2_sheet.png"]
    assert all(p.parent == out and p.is_file() for p in paths)
    for name, size in (("room", (53, 37)), ("room-2", (24, 20))):
        for task in TASKS:
            assert Image.open(out / f"{name}_{task}.png").size == size
    # the semseg picture is the palette colouring of the predicted classes
    p = load(run["checkpoint"], device="cpu")
    expected = get_task("semseg").visualize(p.predict(str(first))["semseg"], 9)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "room_semseg.png").convert("RGB")), expected)
    assert Image.open(out / "room_sheet.png").size[0] > Image.open(out / "room_sheet.png").size[1]  # side by side


def test_predict_images_names_an_unreadable_file(run, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(DatasetError, match="broken.png"):
        predict_images(run["checkpoint"], [str(bad)], str(tmp_path / "out"))
    with pytest.raises(DatasetError, match="missing.jpg.*does not exist"):
        predict_images(run["checkpoint"], [str(tmp_path / "missing.jpg")], str(tmp_path / "out"))


def test_affinity_report_table_and_heat_map(run, tmp_path):
    table, png = affinity_report(run["checkpoint"], out=str(tmp_path))
    assert png == tmp_path / "affinity-last.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 200
    a = load(run["checkpoint"], device="cpu").affinity
    assert table.row_count == len(TASKS) == a.shape[0]
    assert [c.header for c in table.columns[1:]] == TASKS
    assert list(table.columns[0].cells) == TASKS
    assert list(table.columns[2].cells)[0] == f"{a[0, 1]:.3f}"  # row = source semseg, column = depth
    assert "A\\[i, j] = effect of task i (row) on task j (column)" in str(table.title)  # escaped markup
    assert "after 4 updates" in str(table.title)


def test_affinity_report_without_troa_is_a_clear_error(tmp_path):
    cfg = load_config(None, [*TINY, "model.method=mtl_finetune", "data.tasks=[semseg,depth]"])
    path = tmp_path / "baseline.safetensors"
    write_checkpoint(path, cfg)
    with pytest.raises(NoAffinity, match="method 'mtl_finetune' learns no task affinity"):
        affinity_report(path, out=str(tmp_path))
    assert not list(tmp_path.glob("*.png"))
