"""configs/scenes_dinov2.yaml: the bundled scenes setup on a frozen DINOv2-S, trained and evaluated end to end.

The end-to-end test loads the real DINOv2 ViT-S/14 of ``../shared/assets/dinov2`` (skipped with the
reason when that folder is absent) and trains 2 steps on a few rendered scenes, then runs
``taskadapt eval`` on the checkpoint; every other test needs no shared file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from taskadapt.checkpoint import read_meta
from taskadapt.cli import main
from taskadapt.config import load_config
from taskadapt.models import create_model
from taskadapt.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "scenes_dinov2.yaml"
DINOV2 = REPO.parent / "shared" / "assets" / "dinov2" / "vit_small_patch14_dinov2.safetensors"
needs_dinov2 = pytest.mark.skipif(
    not DINOV2.is_file(),
    reason=f"the real DINOv2 weights are not here ({DINOV2}); they live in the project's shared/ folder",
)


def test_config_is_the_bundled_setup_with_only_the_backbone_changed():
    ours = load_config(CONFIG)
    bundled = load_config(REPO / "configs" / "scenes.yaml")
    assert (ours.model.backbone, ours.model.pretrained) == (
        "vit_small_patch14_dinov2", "hf-hub:timm/vit_small_patch14_dinov2.lvd142m")
    assert ours.data.crop_size == ours.data.scenes.size == 112 and 112 % 14 == 0
    # the same tasks, data, method and schedule as the bundled configuration, so the two compare
    assert ours.data.tasks == bundled.data.tasks
    assert (ours.data.scenes.domain, ours.data.scenes.train, ours.data.scenes.test) == (
        bundled.data.scenes.domain, bundled.data.scenes.train, bundled.data.scenes.test)
    assert ours.data.augment == bundled.data.augment
    assert ours.model.method == bundled.model.method == "adapters"
    assert ours.data.batch_size == bundled.data.batch_size
    assert (ours.train.steps, ours.train.lr, ours.train.warmup_steps) == (
        bundled.train.steps, bundled.train.lr, bundled.train.warmup_steps)
    assert ours.train.bf16 and ours.out_dir != bundled.out_dir
    assert ours.data.root != bundled.data.root  # 112 px scenes are their own folder


def test_config_builds_the_dinov2_architecture_at_112_px():
    cfg = load_config(CONFIG, ["model.pretrained=null"])
    model = create_model(cfg)
    backbone = model.backbone
    assert backbone.name == "vit_small_patch14_dinov2"
    assert backbone.grid_size == (8, 8) and backbone.pos_embed.shape == (1, 65, 384)
    assert backbone.mean == (0.485, 0.456, 0.406)  # ImageNet normalisation, as DINOv2 was trained
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 3, 112, 112))
    assert {k: tuple(v.shape[-2:]) for k, v in out.items()} == {t: (112, 112) for t in cfg.data.tasks}


@needs_dinov2
def test_trains_and_evaluates_end_to_end_on_the_real_weights(tmp_path):
    cfg = load_config(CONFIG, [
        f"model.pretrained={DINOV2}", f"data.root={tmp_path / 'scenes'}", "data.scenes.train=6",
        "data.scenes.test=2", "data.batch_size=2", "train.steps=2", "train.eval_every=2",
        "train.checkpoint_every=2", "train.val_max_images=2", f"out_dir={tmp_path / 'run'}"])
    frozen = create_model(cfg).backbone.blocks[0].attn.qkv.weight.detach().clone()
    result = train(cfg, progress=False)
    assert result.step == 2 and result.best is not None
    meta = read_meta(result.best)
    assert meta["backbone"] == "vit_small_patch14_dinov2" and meta["method"] == "adapters"
    # the backbone is frozen: the checkpoint holds the real DINOv2 weights unchanged
    with safe_open(str(result.best), framework="pt") as f:
        key = next(k for k in f.keys() if k.endswith("backbone.blocks.0.attn.qkv.weight"))  # noqa: SIM118
        assert torch.equal(f.get_tensor(key), frozen)
    out = tmp_path / "eval"
    assert main(["eval", str(result.best), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert set(metrics) == set(cfg.data.tasks)
    assert all(math.isfinite(v) for m in metrics.values() for v in m.values()), metrics
