"""``run_compare``: one protocol for every method, test-split metrics, parameter counts, Delta_m vs stl."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from taskadapt import compare
from taskadapt.compare import compare_table, method_config, resolve_methods, run_compare
from taskadapt.config import load_config
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.metrics.delta_m import load_baseline
from taskadapt.models import create_model
from taskadapt.models.methods import list_methods
from taskadapt.models.params import count_trainable
from taskadapt.train import checkpoint as ckpt
from taskadapt.train.data import build_splits, eval_loader
from taskadapt.train.evaluate import evaluate
from taskadapt.train.trainer import TrainingDiverged

TASKS = ["semseg", "depth", "normals", "edge"]
PRIMARY = {"semseg": "mIoU", "depth": "rmse", "normals": "mean", "edge": "odsF"}
HIGHER = {"semseg": True, "depth": False, "normals": False, "edge": True}


def tiny_overrides(root, *extra):
    return [
        f"data.root={root}", "data.scenes.train=10", "data.scenes.val=2", "data.scenes.test=3",
        "data.scenes.size=32", "data.crop_size=32", "data.batch_size=2",
        "model.backbone_kwargs={patch_size: 8, embed_dim: 32, depth: 4, num_heads: 2}",
        "model.decoder_channels=16", "model.task_embed_dim=8",
        "train.steps=3", "train.eval_every=3", "train.checkpoint_every=3", "train.warmup_steps=0", *extra,
    ]


def tiny(root, *extra):
    return load_config(None, tiny_overrides(root, *extra))


class TrainSpy:
    """Wraps the real trainer: records which methods trained (and ``seeds``: on which seed); ``fail``
    methods, or (method, seed) pairs, diverge instead."""

    def __init__(self, real, fail=()):
        self.real, self.fail, self.calls, self.seeds = real, set(fail), [], []

    def __call__(self, cfg, resume=None, progress=True):
        self.calls.append(cfg.model.method)
        self.seeds.append((cfg.model.method, cfg.seed))
        if cfg.model.method in self.fail or (cfg.model.method, cfg.seed) in self.fail:
            raise TrainingDiverged(f"task 'depth' (nan) is not finite at step 1 | method {cfg.model.method}")
        return self.real(cfg, resume=resume, progress=progress)


class EvalSpy:
    """Wraps ``evaluate``: records the number of images and the edge options of every call."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __call__(self, model, loader, tasks, num_classes, **kwargs):
        self.calls.append({"images": len(loader.dataset), "edge_exact": kwargs.get("edge_exact"),
                           "edge_tolerance": kwargs.get("edge_tolerance")})
        return self.real(model, loader, tasks, num_classes, **kwargs)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """stl, adapters and lora compared on tiny scenes; lora is made to diverge."""
    base = tmp_path_factory.mktemp("compare")
    cfg = tiny(base / "scenes")
    spy = TrainSpy(compare.trainer.train, fail={"lora"})
    spy.evaluations = EvalSpy(compare.evaluate)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare.trainer, "train", spy)
        mp.setattr(compare, "evaluate", spy.evaluations)
        result = run_compare(cfg, ["adapters", "lora", "stl"], out=base / "out", progress=False)
    return cfg, result, spy


def test_one_row_per_method_with_stl_first(compared):
    _, result, spy = compared
    assert [r.method for r in result.rows] == ["stl", "adapters", "lora"]
    assert spy.calls == ["stl", "adapters", "lora"]
    assert [r.status for r in result.rows] == ["ok", "ok", "failed"]


def test_stl_delta_m_is_exactly_zero_and_others_follow_eq_10(compared):
    _, result, _ = compared
    stl, adapters = result.row("stl"), result.row("adapters")
    assert stl.delta_m == 0.0 and math.copysign(1.0, stl.delta_m) == 1.0  # not -0.0
    assert result.primary_metrics == PRIMARY and result.higher_is_better == HIGHER
    expected = sum((1 if HIGHER[t] else -1) * (adapters.primary[t] - stl.primary[t]) / stl.primary[t]
                   for t in TASKS) / len(TASKS) * 100
    assert adapters.delta_m == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert adapters.delta_m != 0.0  # two different models, so the test above is not vacuous
    for row in (stl, adapters):
        assert row.primary == {t: row.metrics[t][PRIMARY[t]] for t in TASKS}


def test_params_column_is_count_trainable_of_each_method(compared):
    cfg, result, _ = compared
    counts = {}
    for row in result.rows:
        model = create_model(method_config(cfg, row.method, result.out))
        counts[row.method] = count_trainable(model)
        assert row.trainable_params == counts[row.method], row.method
    # stl fine-tunes four whole models; adapters train a fraction of one
    assert counts["stl"] > 4 * counts["adapters"] > 0


def test_a_failed_method_is_a_row_with_its_error(compared):
    _, result, _ = compared
    lora = result.row("lora")
    assert lora.status == "failed" and lora.delta_m is None and lora.primary == {}
    assert lora.error.startswith("TrainingDiverged: task 'depth' (nan) is not finite")
    assert lora.trainable_params > 0  # counted even though training failed


def test_metrics_are_the_test_split_with_the_exact_edge_matcher(compared):
    cfg, result, spy = compared
    # the 3 test scenes (not the 10 training or 2 validation ones), exact matcher, NYUD-style tolerance
    assert spy.evaluations.calls == [{"images": 3, "edge_exact": True, "edge_tolerance": 0.011}] * 2
    row = result.row("adapters")
    assert result.protocol["test_images"] == 3 and result.protocol["edge_matcher"] == "exact"
    c = method_config(cfg, "adapters", result.out)
    splits = build_splits(c)
    model = create_model(c, num_classes=splits.num_classes)
    ckpt.restore_model(model, row.checkpoint)
    again = evaluate(model, eval_loader(c, splits.test), TASKS, splits.num_classes, edge_exact=True,
                     edge_tolerance=0.011)
    assert again["images"] == 3
    assert again["metrics"] == row.metrics
    assert row.step == 3 and row.checkpoint.endswith("best.safetensors")


def test_files_are_written(compared):
    _, result, _ = compared
    out = result.out
    data = json.loads((out / "compare.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["stl", "adapters", "lora"]
    assert [r["trainable_params"] for r in data["rows"]] == [r.trainable_params for r in result.rows]
    assert data["rows"][0]["delta_m"] == 0.0 and data["rows"][2]["status"] == "failed"
    base = load_baseline(out / "baseline_stl.json")
    assert {t: s["metric"] for t, s in base["tasks"].items()} == PRIMARY
    assert {t: s["value"] for t, s in base["tasks"].items()} == result.row("stl").primary
    for method in ("stl", "adapters"):
        assert (out / method / "checkpoints" / "last.safetensors").is_file()
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries
    md = (out / "compare.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["method", "trainable params", "semseg mIoU ↑", "depth rmse ↓", "normals mean ↓",
                      "edge odsF ↑", "Δm %", "notes"]
    rows = {r.split("|")[1].strip(): r for r in table[2:]}
    assert list(rows) == ["stl", "adapters", "lora"]
    assert f"| {result.row('adapters').trainable_params:,} |" in rows["adapters"]
    assert "| +0.00 |" in rows["stl"]
    assert re.search(r"failed: TrainingDiverged: .* \\\| method lora", rows["lora"])  # '|' escaped


def test_rich_table_has_a_row_per_method(compared):
    _, result, _ = compared
    table = compare_table(result)
    assert table.row_count == 3
    assert len(table.columns) == 2 + len(TASKS) + 2
    assert [c.header for c in table.columns][-2:] == ["Δm %", "notes"]


def test_rerun_reuses_finished_runs_and_retries_failed_ones(compared):
    cfg, first, _ = compared
    spy = TrainSpy(compare.trainer.train)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare.trainer, "train", spy)
        again = run_compare(cfg, ["stl", "adapters", "lora"], out=first.out, progress=False)
    assert spy.calls == ["lora"]  # stl and adapters finished with this exact config: tested again only
    for method in ("stl", "adapters"):
        assert again.row(method).reused and again.row(method).metrics == first.row(method).metrics
    lora = again.row("lora")
    assert lora.status == "ok" and lora.delta_m is not None and math.isfinite(lora.delta_m)


def test_default_methods_are_all_registered_with_stl_first():
    names = resolve_methods(None)
    assert names[0] == "stl" and sorted(names) == sorted(list_methods())
    assert resolve_methods(["lora", "stl", "lora"]) == ["stl", "lora"]


def test_bad_requests_fail_before_any_training(compared, tmp_path, monkeypatch):
    cfg, result, _ = compared
    spy = TrainSpy(compare.trainer.train)
    monkeypatch.setattr(compare.trainer, "train", spy)
    with pytest.raises(ConfigError, match="did you mean 'adapters'"):
        run_compare(cfg, ["stl", "adapterz"], out=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="no methods"):
        run_compare(cfg, [], out=tmp_path / "b", progress=False)
    no_test = tiny(cfg.data.root, "data.test_split=holdout")
    with pytest.raises(DatasetError, match="'holdout' split"):
        run_compare(no_test, ["stl"], out=tmp_path / "c", progress=False)
    longer = tiny(cfg.data.root, "train.steps=4")  # the out folder holds 3-step runs
    with pytest.raises(ConfigError, match="another configuration"):
        run_compare(longer, ["stl"], out=result.out, progress=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="torchrun"):
        run_compare(cfg, ["stl"], out=tmp_path / "d", progress=False)
    assert spy.calls == []


def test_without_stl_there_is_no_delta_m_and_the_table_says_why(compared, tmp_path):
    cfg, _, _ = compared
    torch.manual_seed(0)
    result = run_compare(cfg, ["frozen_heads"], out=tmp_path / "fh", progress=False, exact_edges=False)
    row = result.row("frozen_heads")
    assert row.status == "ok" and row.delta_m is None and result.baseline is None
    assert "stl" in result.note
    md = (tmp_path / "fh" / "compare.md").read_text()
    assert f"Note: {result.note}." in md
    assert result.protocol["edge_matcher"] == "approximate" and "approximate matcher" in md
