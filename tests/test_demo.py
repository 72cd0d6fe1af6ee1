"""`taskadapt demo` end to end on a tiny schedule (the real one is measured in docs/results.md)."""

from __future__ import annotations

import json

import pytest

from taskadapt.demo import DEMO, demo_config, run_demo
from taskadapt.errors import ConfigError

TINY = ["data.scenes.train=40", "data.scenes.test=6", "data.scenes.size=32", "data.crop_size=32",
        "model.backbone_kwargs={depth: 4, embed_dim: 32, num_heads: 2}", "model.decoder_channels=16",
        "train.eval_every=3", "train.val_max_images=4", "data.batch_size=4"]


def test_demo_writes_the_report_with_every_part(tmp_path):
    report = run_demo(tmp_path / "demo", backbone_init="random", steps=3, progress=False, extra=TINY)
    text = report.read_text()
    for heading in ("## Test metrics", "## Parameters", "## Task affinity (TROA)", "## Predictions"):
        assert heading in text
    for row in ("studio (training domain)", "dusk (unseen)", "fog (unseen)", "trivial predictor"):
        assert row in text
    for name in ("predictions_studio.png", "predictions_dusk.png", "predictions_fog.png"):
        assert (report.parent / name).is_file() and name in text
    summary = json.loads((report.parent / "demo.json").read_text())
    assert set(summary["results"]) == {"studio", "dusk", "fog"}
    assert 0 <= summary["results"]["fog"]["semseg"]["mIoU"] <= 1
    assert summary["steps"] == 3
    with pytest.raises(ConfigError, match="--overwrite"):
        run_demo(tmp_path / "demo", backbone_init="random", steps=3, progress=False, extra=TINY)


def test_demo_config_uses_the_bundled_backbone_unless_random(tmp_path):
    assert "model.pretrained=bundled" in DEMO
    assert demo_config(tmp_path).model.pretrained == "bundled"
    assert demo_config(tmp_path, "random").model.pretrained is None
    with pytest.raises(ConfigError, match="'pretrained' or 'random'"):
        demo_config(tmp_path, "imagenet")


def test_configs_demo_yaml_is_the_demo_configuration(tmp_path):
    import dataclasses
    from pathlib import Path

    from taskadapt.config import load_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    shipped = load_config(configs / "demo.yaml")
    demo = demo_config(tmp_path)
    same_paths = {"data": dataclasses.replace(demo.data, root=shipped.data.root)}
    assert dataclasses.replace(demo, out_dir=shipped.out_dir, **same_paths) == shipped
    # configs/scenes.yaml, the reference of the comparisons, is the demo with the shared dense decoder
    reference = load_config(configs / "scenes.yaml", ["model.decoder=per_task", "model.decoder_conv=separable",
                                                      "model.prefix_lora=true", f"out_dir={shipped.out_dir}"])
    assert reference == shipped
