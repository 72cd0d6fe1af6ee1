"""Delta_m (survey Eq. 10) and the baseline JSON (metrics doc §4.7)."""

from __future__ import annotations

import json

import pytest
import torch

from taskadapt.errors import ConfigError
from taskadapt.metrics import DepthMetric, SegmentationMetric, delta_m, load_baseline, save_baseline

BASELINE = {
    "description": "single-task models",
    "tasks": {
        "semseg": {"metric": "mIoU", "value": 0.40, "higher_is_better": True},
        "depth": {"metric": "rmse", "value": 0.50, "higher_is_better": False},
    },
}


def test_hand_computed_delta_m():
    results = {"semseg": {"mIoU": 0.42, "pixel_acc": 0.9}, "depth": {"rmse": torch.tensor(0.55)}}
    d = delta_m(results, BASELINE)
    # semseg: +(0.42 - 0.40) / 0.40 = +5 %; depth (lower is better): -(0.55 - 0.50) / 0.50 = -10 %
    assert d.contributions == pytest.approx({"semseg": 5.0, "depth": -10.0})
    assert d.value == pytest.approx(-2.5)
    assert d.metrics == {"semseg": "mIoU", "depth": "rmse"}
    assert "semseg mIoU +5.00%" in d.summary() and "Delta_m = -2.50%" in d.summary()


def test_extra_result_tasks_are_listed_as_ignored():
    results = {"semseg": {"mIoU": 0.40}, "depth": {"rmse": 0.50}, "edge": {"odsF": 0.7}}
    d = delta_m(results, BASELINE)
    assert d.value == pytest.approx(0.0)
    assert d.ignored == ("edge",)


def test_missing_task_or_metric_is_a_clear_error():
    with pytest.raises(ConfigError, match="task 'depth' is in the baseline but not in the results"):
        delta_m({"semseg": {"mIoU": 0.4}}, BASELINE)
    with pytest.raises(ConfigError, match="no metric 'rmse'"):
        delta_m({"semseg": {"mIoU": 0.4}, "depth": {"abs_rel": 0.1}}, BASELINE)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.pop("tasks"), "missing or empty 'tasks'"),
        (lambda b: b["tasks"]["depth"].__setitem__("higher_is_better", "lower"), "must be true or false"),
        (lambda b: b["tasks"]["depth"].pop("higher_is_better"), "must be true or false"),
        (lambda b: b["tasks"]["depth"].__setitem__("value", "0.5"), "finite numeric 'value'"),
        (lambda b: b["tasks"]["depth"].__setitem__("value", 0), "baseline value 0"),
        (lambda b: b["tasks"]["depth"].__setitem__("metric", ""), "needs a 'metric'"),
        (lambda b: b["tasks"]["depth"].__setitem__("units", "m"), "unknown key"),
    ],
)
def test_load_baseline_rejects_bad_schemas(tmp_path, mutate, message):
    bad = json.loads(json.dumps(BASELINE))
    mutate(bad)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=message):
        load_baseline(path)


def test_load_baseline_missing_file_and_bad_json(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_baseline(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_baseline(tmp_path / "broken.json")


def test_save_then_load_round_trip(tmp_path):
    results = {
        "semseg": {"mIoU": torch.tensor(0.40), "pixel_acc": 0.9},
        "depth": {"rmse": 0.50, "delta1": 0.8},
    }
    metrics = {"semseg": SegmentationMetric(3), "depth": DepthMetric}  # instances or classes
    path = save_baseline(
        tmp_path / "base" / "baseline.json", results, metrics, description="single-task models"
    )
    loaded = load_baseline(path)
    assert list(loaded["tasks"]) == ["semseg", "depth"]
    for task, spec in BASELINE["tasks"].items():
        assert loaded["tasks"][task]["metric"] == spec["metric"]  # the metric class's primary
        assert loaded["tasks"][task]["value"] == pytest.approx(spec["value"])
        assert loaded["tasks"][task]["higher_is_better"] is spec["higher_is_better"]
    assert loaded["description"] == "single-task models"
    assert sorted(p.name for p in path.parent.iterdir()) == ["baseline.json"]  # no temp file left
    assert delta_m(results, loaded).value == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="no results for task 'depth'"):
        save_baseline(tmp_path / "b2.json", {"semseg": {"mIoU": 0.4}}, metrics)
