"""The real-data presets of the generalization settings, wired end to end on fixture folders in the real
on-disk formats (tiny backbone, 2 steps, no download; every other key is the preset's own)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from dataset_fixtures import write_cityscapes, write_nyud, write_synthia, write_taskonomy

from taskadapt.config import load_config
from taskadapt.settings.adapt import run_adapt
from taskadapt.settings.domains import evaluate_domains, parse_domain
from taskadapt.settings.zeroshot import run_zeroshot

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model.pretrained=null", "model.backbone_kwargs={embed_dim: 16, depths: [1, 1, 2, 2], num_heads: [1, 2, 2, 4], "
    "window_size: 4}", "model.decoder_channels=16", "model.task_embed_dim=8", "train.bf16=false",
    "train.steps=2", "train.eval_every=2", "train.checkpoint_every=2", "train.warmup_steps=0",
    "data.crop_size=32", "data.batch_size=2", "data.num_workers=0", "train.val_fraction=0.3",
]


def _target_tiny(section: str) -> list[str]:
    return [f"{section}.target.crop_size=32", f"{section}.target.batch_size=2", f"{section}.target.num_workers=0"]


def test_synthia_to_cityscapes_adaptation_preset(tmp_path):
    write_synthia(tmp_path / "synthia", n=4)
    write_cityscapes(tmp_path / "cityscapes", splits={"train": {"aachen": 2}, "val": {"lindau": 2}})
    preset = REPO / "configs" / "adapt_synthia_cityscapes.yaml"
    raw = load_config(preset, ["data.root=/a", "adapt.target.root=/b"])
    assert (raw.data.format, raw.adapt.target.format) == ("synthia", "cityscapes")
    assert raw.data.tasks == raw.adapt.target.tasks == ["semseg", "depth"]
    assert raw.data.options == raw.adapt.target.options == {"num_classes": 16}
    assert raw.adapt.target.test_split == "val" and raw.adapt.adv_weight == 0.005
    cfg = load_config(preset, [f"data.root={tmp_path / 'synthia'}", f"adapt.target.root={tmp_path / 'cityscapes'}",
                               *TINY, *_target_tiny("adapt"), f"out_dir={tmp_path / 'run'}"])
    result = run_adapt(cfg, progress=False)
    assert result.tasks == ["semseg", "depth"]
    for row in ("source only", "adapted (ours)", "target supervised"):
        assert math.isfinite(result.metrics[row]["semseg"]["mIoU"])
        assert math.isfinite(result.metrics[row]["depth"]["rmse"])
    doc = json.loads((tmp_path / "run" / "adapted" / "eval-target" / "metrics.json").read_text())
    assert doc["dataset"]["format"] == "cityscapes" and doc["dataset"]["split"] == "val"


def test_taskonomy_to_nyud_zero_shot_preset_and_novel_domain_eval(tmp_path):
    write_taskonomy(tmp_path / "taskonomy", buildings={"allensville": 4, "beechwood": 2},
                    splits={"train": ["allensville"], "test": ["beechwood"]})
    write_nyud(tmp_path / "nyud", splits={"train": 4, "val": 2})
    preset = REPO / "configs" / "zeroshot_taskonomy_nyud.yaml"
    raw = load_config(preset, ["data.root=/a", "zeroshot.target.root=/b"])
    assert raw.zeroshot.tasks == ["normals"] and raw.zeroshot.target.format == "nyud"
    assert raw.data.tasks == ["depth", "normals", "edge"] and raw.zeroshot.target.test_split == "val"
    cfg = load_config(preset, [f"data.root={tmp_path / 'taskonomy'}", f"zeroshot.target.root={tmp_path / 'nyud'}",
                               *TINY, *_target_tiny("zeroshot"), "zeroshot.steps=2", f"out_dir={tmp_path / 'run'}"])
    result = run_zeroshot(cfg, progress=False)
    assert len(result.rows) == 4 and result.labelled_tasks == ["depth", "edge"]
    for row in result.rows:
        assert math.isfinite(row.metrics["normals"]["mean"])
    source = result.rows[0].checkpoint
    domains = evaluate_domains([source], [parse_domain(f"taskonomy={tmp_path / 'taskonomy'}"),
                                          parse_domain(f"nyud=nyud:{tmp_path / 'nyud'}")],
                               out=tmp_path / "dom", progress=False)
    assert [d.format for d in domains.domains] == [None, "nyud"]
    model = domains.models[0]
    assert set(domains.metrics[model]) == {"taskonomy", "nyud"}
    assert set(domains.drops[model]["nyud"]) == {"depth", "normals", "edge"}
    nyud_doc = json.loads((tmp_path / "dom" / model / "nyud" / "metrics.json").read_text())
    assert nyud_doc["dataset"]["split"] == "val"  # NYUD's test split, found for a Taskonomy model


@pytest.mark.parametrize("spec", ["nyud=nyud:/x/y", "n=/x/y"])
def test_domain_specs(spec):
    d = parse_domain(spec)
    assert d.root == "/x/y" and d.format == ("nyud" if "nyud:" in spec else None)
