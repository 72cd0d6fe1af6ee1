"""``run_compare``: one protocol for every method, test-split metrics, parameter counts, Delta_m vs stl."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict

import pytest
import torch
from scipy.stats import t as scipy_t

from taskadapt import checkpoint as ckpt
from taskadapt.cli import main
from taskadapt.config import load_config, to_yaml
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.evaluation import eval_loader, evaluate, scoring
from taskadapt.metrics.delta_m import load_baseline
from taskadapt.metrics.paired import Summary, paired_difference, summarize, t_half_width, verdict
from taskadapt.models import create_model
from taskadapt.models.methods import list_methods
from taskadapt.models.params import count_trainable
from taskadapt.settings.compare import compare_table, resolve_seeds, run_compare, run_compare_seeds, seeds_tables
from taskadapt.settings.compare import runs as compare_runs
from taskadapt.settings.compare.results import aggregate
from taskadapt.settings.compare.runs import method_config, resolve_methods, resolve_reference
from taskadapt.train import trainer as trainer_module
from taskadapt.train.data import build_splits
from taskadapt.train.trainer import TrainingDiverged, TrainingInterrupted

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
    spy = TrainSpy(trainer_module.train, fail={"lora"})
    spy.evaluations = EvalSpy(scoring.evaluate)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_module, "train", spy)
        mp.setattr(scoring, "evaluate", spy.evaluations)
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
    again = evaluate(model, eval_loader(splits.test, c.data.crop_size, c.data.batch_size), TASKS, splits.num_classes,
                     edge_exact=True,
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
    spy = TrainSpy(trainer_module.train)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_module, "train", spy)
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
    spy = TrainSpy(trainer_module.train)
    monkeypatch.setattr(trainer_module, "train", spy)
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


# --------------------------------------------------------------------------------------------------
# several seeds


def by_hand(values):
    """Mean and sample std (n - 1), written out."""
    n = len(values)
    mean = sum(values) / n
    return mean, (math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """stl, adapters and lora on seeds 0 and 1 of the tiny scenes; lora diverges on seed 1 only."""
    base = tmp_path_factory.mktemp("compare-seeds")
    cfg = tiny(base / "scenes")
    spy = TrainSpy(trainer_module.train, fail={("lora", 1)})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_module, "train", spy)
        result = run_compare_seeds(cfg, ["adapters", "lora", "stl"], [0, 1], out=base / "out", progress=False)
    return cfg, result, spy


def seed_rows(out, seed):
    return {r["method"]: r for r in json.loads((out / f"seed{seed}" / "compare.json").read_text())["rows"]}


def test_every_method_runs_on_every_seed_in_its_own_folder(seeded):
    _, result, spy = seeded
    assert spy.seeds == [("stl", 0), ("adapters", 0), ("lora", 0), ("stl", 1), ("adapters", 1), ("lora", 1)]
    assert list(result.runs) == [0, 1] and result.reference == "adapters"
    for seed in (0, 1):
        folder = result.out / f"seed{seed}"
        assert result.runs[seed].out == folder
        assert (folder / "compare.json").is_file() and (folder / "compare.md").is_file()
        assert (folder / "baseline_stl.json").is_file()
        for method in ("stl", "adapters"):
            assert (folder / method / "checkpoints" / "last.safetensors").is_file()
        assert json.loads((folder / "compare.json").read_text())["protocol"]["seed"] == seed
        assert f"seed: {seed}\n" in (folder / "adapters" / "config.yaml").read_text()
    assert not (result.out / "stl").exists()  # the single-seed layout is not used
    # the seed changes the models (so the statistics below are not vacuous), not the test data
    assert result.runs[0].row("stl").primary != result.runs[1].row("stl").primary
    assert result.runs[0].protocol["test_images"] == result.runs[1].protocol["test_images"] == 3


def test_delta_m_on_a_seed_is_against_stl_of_the_same_seed(seeded):
    _, result, _ = seeded
    for seed in (0, 1):
        base = load_baseline(result.out / f"seed{seed}" / "baseline_stl.json")
        stl, adapters = result.runs[seed].row("stl"), result.runs[seed].row("adapters")
        assert {t: s["value"] for t, s in base["tasks"].items()} == stl.primary
        expected = sum((1 if HIGHER[t] else -1) * (adapters.primary[t] - stl.primary[t]) / stl.primary[t]
                       for t in TASKS) / len(TASKS) * 100
        assert adapters.delta_m == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_aggregate_is_mean_and_sample_std_of_the_per_seed_rows(seeded):
    _, result, _ = seeded
    data = json.loads((result.out / "compare.json").read_text())
    rows = {seed: seed_rows(result.out, seed) for seed in (0, 1)}
    agg = {a["method"]: a for a in data["aggregate"]}
    assert list(agg) == ["stl", "adapters", "lora"]
    for method in ("stl", "adapters"):
        assert agg[method]["seeds"] == [0, 1] and agg[method]["failed"] == {}
        for task in TASKS:
            mean, std = by_hand([rows[s][method]["primary"][task] for s in (0, 1)])
            assert agg[method]["primary"][task]["n"] == 2
            assert agg[method]["primary"][task]["mean"] == pytest.approx(mean, rel=1e-12)
            assert agg[method]["primary"][task]["std"] == pytest.approx(std, rel=1e-9, abs=1e-15)
        mean, std = by_hand([rows[s][method]["delta_m"] for s in (0, 1)])
        assert agg[method]["delta_m"]["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-15)
        assert agg[method]["delta_m"]["std"] == pytest.approx(std, rel=1e-9, abs=1e-15)
        params = [rows[s][method]["trainable_params"] for s in (0, 1)]
        assert params[0] == params[1]
        assert agg[method]["trainable_params"] == {"n": 2, "mean": params[0], "std": 0.0}
    assert agg["stl"]["delta_m"] == {"n": 2, "mean": 0.0, "std": 0.0}


def test_a_method_failing_on_one_seed_keeps_its_other_seeds_and_is_marked(seeded):
    _, result, _ = seeded
    data = json.loads((result.out / "compare.json").read_text())
    lora = next(a for a in data["aggregate"] if a["method"] == "lora")
    assert lora["seeds"] == [0] and list(lora["failed"]) == ["1"]
    assert lora["failed"]["1"].startswith("TrainingDiverged")
    assert lora["delta_m"] == {"n": 1, "mean": seed_rows(result.out, 0)["lora"]["delta_m"], "std": None}
    vs_lora = next(p for p in data["paired"] if p["method"] == "lora")
    assert vs_lora["n"] == 1 and vs_lora["seeds"] == [0]  # only the seed where both succeeded
    assert vs_lora["low"] is None and vs_lora["high"] is None and vs_lora["verdict"] == "needs >= 2 seeds"
    md_rows = [r for r in (result.out / "compare.md").read_text().splitlines() if r.startswith("| lora |")]
    assert len(md_rows) == 2  # the methods table and the paired table
    assert [c.strip() for c in md_rows[0].strip("|").split("|")][7] == "1"  # n seeds
    assert "failed on seed 1: TrainingDiverged" in (result.out / "compare.md").read_text()


def test_paired_differences_are_hand_computed_t_intervals(seeded):
    _, result, _ = seeded
    data = json.loads((result.out / "compare.json").read_text())
    rows = {seed: seed_rows(result.out, seed) for seed in (0, 1)}
    vs_stl = next(p for p in data["paired"] if p["method"] == "stl")
    diffs = [rows[s]["adapters"]["delta_m"] - rows[s]["stl"]["delta_m"] for s in (0, 1)]
    mean, sd = by_hand(diffs)
    half = scipy_t.ppf(0.975, 1) * sd / math.sqrt(2)
    assert vs_stl["reference"] == "adapters" and vs_stl["n"] == 2 and vs_stl["differences"] == diffs
    assert vs_stl["mean"] == pytest.approx(mean) and vs_stl["half_width"] == pytest.approx(half)
    assert [vs_stl["low"], vs_stl["high"]] == pytest.approx([mean - half, mean + half])
    assert vs_stl["verdict"] == ("better" if mean - half > 0 else "worse" if mean + half < 0 else "within noise")
    assert [p["method"] for p in data["paired"]] == ["stl", "lora"]  # every method but the reference


def test_seeds_json_holds_protocol_and_every_run(seeded):
    cfg, result, _ = seeded
    data = json.loads((result.out / "compare.json").read_text())
    p = data["protocol"]
    assert p["seeds"] == [0, 1] and p["methods"] == ["stl", "adapters", "lora"] and p["reference"] == "adapters"
    assert p["config"] == to_yaml(cfg) and "seed" not in p and p["steps"] == 3
    assert data["seeds_done"] == [0, 1]
    for seed in (0, 1):
        run = data["runs"][str(seed)]
        assert run["rows"] == list(seed_rows(result.out, seed).values())  # every test metric of every run
        assert run["rows"][1]["metrics"] == result.runs[seed].row("adapters").metrics
    assert not list(result.out.glob(".*.tmp"))


def test_seeds_markdown_and_rich_tables(seeded):
    _, result, _ = seeded
    md = (result.out / "compare.md").read_text()
    tables = [line for line in md.splitlines() if line.startswith("|")]
    header = [c.strip() for c in tables[0].strip("|").split("|")]
    assert header == ["method", "trainable params", "semseg mIoU ↑", "depth rmse ↓", "normals mean ↓",
                      "edge odsF ↑", "Δm %", "n seeds", "notes"]
    agg = {m.method: m for m in aggregate(result.runs)}
    adapters = next(r for r in tables if r.startswith("| adapters"))
    dm = agg["adapters"].delta_m
    assert f"| {dm.mean:+.2f} ± {dm.std:.2f} | 2 | reference |" in adapters
    assert f"| {agg['adapters'].trainable_params.mean:,.0f} |" in adapters
    paired_header = next(r for r in tables if r.startswith("| method | n |"))
    assert [c.strip() for c in paired_header.strip("|").split("|")] == [
        "method", "n", "Δm adapters − method (pp)", "95% CI", "verdict"]
    vs_lora = [r for r in tables if r.startswith("| lora |")][-1]  # the paired table comes second
    cells = [c.strip() for c in vs_lora.strip("|").split("|")]
    assert cells[1] == "1" and cells[2] != "-" and cells[3:] == ["-", "needs >= 2 seeds"]
    assert "against stl of the same seed" in md
    methods_table, paired_table = seeds_tables(result)
    assert methods_table.row_count == 3 and paired_table.row_count == 2
    assert [c.header for c in methods_table.columns][-3:] == ["Δm %", "n seeds", "notes"]


def test_paired_statistics_with_known_numbers():
    d = paired_difference({0: 3.0, 1: 5.0, 2: 7.0}, {0: 2.0, 1: 3.0, 2: 4.0})  # differences 1, 2, 3
    assert d.differences == [1.0, 2.0, 3.0] and d.n == 3
    assert d.mean == pytest.approx(2.0) and d.sd == pytest.approx(1.0)
    half = scipy_t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert half == pytest.approx(4.303 / math.sqrt(3), rel=1e-3)
    assert d.half_width == pytest.approx(half) and (d.low, d.high) == pytest.approx((2 - half, 2 + half))
    assert d.low < 0 < d.high and d.verdict == "within noise"
    assert t_half_width([1.0, 2.0, 3.0]) == pytest.approx(half)


def test_verdict_reads_whether_the_interval_excludes_zero():
    assert verdict(0.5, 2.0) == "better"
    assert verdict(-2.0, -0.1) == "worse"
    assert verdict(-0.1, 2.0) == "within noise" and verdict(0.0, 1.0) == "within noise"
    assert verdict(None, None) == "needs >= 2 seeds"
    tight = paired_difference({0: 10.0, 1: 10.2, 2: 9.9}, {0: 1.0, 1: 1.1, 2: 1.0})
    assert tight.low > 0 and tight.verdict == "better"
    assert paired_difference({0: 1.0, 1: 1.1, 2: 1.0}, {0: 10.0, 1: 10.2, 2: 9.9}).verdict == "worse"


def test_one_seed_gives_no_interval_and_only_common_finite_seeds_count():
    one = paired_difference({0: 3.0}, {0: 1.0})
    assert one.n == 1 and one.mean == 2.0 and one.half_width is None and one.low is None
    assert one.verdict == "needs >= 2 seeds"
    some = paired_difference({0: 3.0, 1: 4.0, 2: None, 3: 1.0}, {0: 1.0, 1: float("nan"), 2: 2.0, 3: 0.0, 4: 9.0})
    assert some.seeds == [0, 3] and some.differences == [2.0, 1.0]
    assert summarize([1.0, None, float("inf"), 3.0]) == Summary(2, 2.0, math.sqrt(2.0))
    assert summarize([5.0]) == Summary(1, 5.0, None) and summarize([]) == Summary(0, None, None)


def test_seed_options_are_validated_with_one_message():
    assert resolve_seeds(0) is None  # no option: the single-seed comparison
    assert resolve_seeds(5, count=3) == [5, 6, 7]
    assert resolve_seeds(0, listed="3, 1,4") == [3, 1, 4]
    for bad in (0, -2):
        with pytest.raises(ConfigError, match="--seeds must be at least 1"):
            resolve_seeds(0, count=bad)
    with pytest.raises(ConfigError, match="not both"):
        resolve_seeds(0, count=2, listed="0,1")
    with pytest.raises(ConfigError, match="'x' is not an integer"):
        resolve_seeds(0, listed="0,x")
    with pytest.raises(ConfigError, match="distinct non-negative"):
        resolve_seeds(0, listed="1,1")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_cli_bad_seeds_exit_2_with_one_line(value, tmp_path, capsys, monkeypatch):
    spy = TrainSpy(trainer_module.train)
    monkeypatch.setattr(trainer_module, "train", spy)
    code = main(["compare", *tiny_overrides(tmp_path / "scenes"), "--seeds", value, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and spy.calls == []
    assert err.count("\n") == 1 and f"--seeds must be at least 1, got {value}" in " ".join(err.split())
    assert not (tmp_path / "o").exists()


def test_reference_must_be_a_compared_method(seeded, tmp_path, monkeypatch):
    cfg, result, _ = seeded
    spy = TrainSpy(trainer_module.train)
    monkeypatch.setattr(trainer_module, "train", spy)
    with pytest.raises(ConfigError, match="--reference 'lora' is not among"):
        run_compare_seeds(cfg, ["stl", "adapters"], [0, 1], out=tmp_path / "a", reference="lora", progress=False)
    with pytest.raises(ConfigError, match="did you mean 'adapters'"):
        run_compare_seeds(cfg, ["stl"], [0, 1], out=tmp_path / "b", reference="adapterz", progress=False)
    assert resolve_reference(None, ["stl", "lora"]) is None and resolve_reference("lora", ["stl", "lora"]) == "lora"
    longer = tiny(cfg.data.root, "train.steps=4")  # seed 0's folder holds 3-step runs; seed 5 is new
    with pytest.raises(ConfigError, match=r"seed0.stl' holds a run of another configuration"):
        run_compare_seeds(longer, ["stl"], [5, 0], out=result.out, progress=False)
    assert spy.calls == []  # all refused before training anything


def test_rerun_through_the_cli_reuses_finished_seed_runs(seeded, tmp_path, monkeypatch):
    """Runs after the tests above: it retrains lora on seed 1, which changes the files they read."""
    cfg, first, _ = seeded
    spy = TrainSpy(trainer_module.train)
    monkeypatch.setattr(trainer_module, "train", spy)
    code = main(["compare", *tiny_overrides(cfg.data.root), "--methods", "stl,adapters,lora", "--seeds", "2",
                 "--out", str(first.out), "--json-out", str(tmp_path / "results" / "compare-tiny.json")])
    assert code == 0
    assert spy.seeds == [("lora", 1)]  # every other (method, seed) finished with this config: tested again only
    data = json.loads((tmp_path / "results" / "compare-tiny.json").read_text())
    assert data == json.loads((first.out / "compare.json").read_text())
    assert data["runs"]["0"]["rows"][1]["reused"] and data["runs"]["0"]["rows"][1]["metrics"] == \
        asdict(first.runs[0].row("adapters"))["metrics"]
    lora = next(a for a in data["aggregate"] if a["method"] == "lora")
    assert lora["seeds"] == [0, 1] and lora["failed"] == {} and lora["delta_m"]["n"] == 2


def test_an_interrupted_seed_keeps_the_finished_ones(seeded, monkeypatch):
    """Ctrl-C during seed 9: the summary written after seeds 0 and 1 stays (the seeds loop alone is
    exercised: each seed's comparison is replayed from the fixture)."""
    cfg, first, _ = seeded

    def one_seed(c, names, out, progress, exact_edges):
        if c.seed == 9:
            raise TrainingInterrupted("stopped at step 1 of stl")
        assert out == first.out / f"seed{c.seed}" and c.seed == first.runs[c.seed].protocol["seed"]
        return first.runs[c.seed]

    monkeypatch.setattr(compare_runs, "run_compare", one_seed)
    with pytest.raises(TrainingInterrupted):
        run_compare_seeds(cfg, ["stl", "adapters", "lora"], [0, 1, 9], out=first.out, progress=False)
    data = json.loads((first.out / "compare.json").read_text())
    assert data["seeds"] == [0, 1, 9] and data["seeds_done"] == [0, 1] and list(data["runs"]) == ["0", "1"]
    assert "seeds 0, 1 (of 0, 1, 9)" in (first.out / "compare.md").read_text()
