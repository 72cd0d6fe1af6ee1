"""The real-data presets in configs/: they state the field's protocol and train end to end.

Each preset is trained for 2 steps on a fixture folder in the real on-disk format, with overrides that
only shrink it (tiny backbone, small crop, 2 steps, batch 2, no pretrained download); everything else
(tasks, splits, loss weights, augmentation, schedule kind, method) is the preset's own. bf16 autocast is
slow on a CPU, so it stays on (as the presets ship it, for GPUs) in one preset only.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from dataset_fixtures import write_nyud, write_pascal

from taskadapt.checkpoint import read_meta
from taskadapt.cli import main
from taskadapt.config import load_config
from taskadapt.errors import ConfigError
from taskadapt.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
PRESETS = [f"{ds}_{bb}" for ds in ("nyud", "pascal") for bb in ("swin_t", "vit_s", "vit_b")]
PRETRAINED = {
    "swin_t": ("swin_tiny_patch4_window7_224", "hf-hub:timm/swin_tiny_patch4_window7_224.ms_in1k"),
    "vit_s": ("vit_small_patch16_224", "hf-hub:timm/vit_small_patch16_224.augreg_in21k_ft_in1k"),
    "vit_b": ("vit_base_patch16_224", "hf-hub:timm/vit_base_patch16_224.augreg_in21k_ft_in1k"),
}
FIELD = {
    "nyud": {"tasks": ["semseg", "depth", "normals", "edge"], "crop": 448,
             "weights": {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0}},
    "pascal": {"tasks": ["semseg", "parts", "saliency", "normals", "edge"], "crop": 512,
               "weights": {"semseg": 1.0, "parts": 2.0, "saliency": 5.0, "normals": 10.0, "edge": 50.0}},
}
BF16_PRESET = "pascal_vit_s"
TINY = {
    "swin_t": "model.backbone_kwargs={embed_dim: 16, depths: [1, 1, 2, 2], num_heads: [1, 2, 2, 4], window_size: 4}",
    "vit_s": "model.backbone_kwargs={patch_size: 8, embed_dim: 32, depth: 4, num_heads: 2}",
    "vit_b": "model.backbone_kwargs={patch_size: 8, embed_dim: 48, depth: 4, num_heads: 3}",
}


def preset_path(name: str) -> Path:
    return REPO / "configs" / f"{name}.yaml"


def test_the_six_presets_are_shipped():
    shipped = {p.stem for p in (REPO / "configs").glob("*.yaml")}
    assert set(PRESETS) <= shipped


@pytest.mark.parametrize("name", PRESETS)
def test_preset_states_the_field_protocol(name):
    dataset, backbone = name.split("_", 1)
    raw = yaml.safe_load(preset_path(name).read_text())
    assert raw["data"]["root"] is None  # the user says where the dataset is
    cfg = load_config(preset_path(name), ["data.root=/datasets/x"])
    field = FIELD[dataset]
    assert cfg.data.format == dataset
    assert cfg.data.tasks == field["tasks"]
    assert cfg.data.crop_size == field["crop"]
    assert cfg.data.train_split == "train"
    assert cfg.data.val_split is None  # model selection on images carved from training
    assert cfg.data.test_split == "val"  # NYUD's 654 and PASCAL-Context's 5,105 test images
    assert cfg.model.loss_weights == field["weights"]
    assert (cfg.model.backbone, cfg.model.pretrained) == PRETRAINED[backbone]
    assert cfg.model.method == "adapters"
    t = cfg.train
    assert (t.steps, cfg.data.batch_size, t.lr) == (40000, 8, 1e-4)
    assert 0 < t.warmup_steps < t.steps
    assert t.bf16 and t.schedule == "cosine"
    assert cfg.out_dir == f"runs/{name}"


@pytest.mark.parametrize("name", PRESETS)
def test_config_show_validates_the_preset(name, capsys):
    assert main(["config", "show", str(preset_path(name)), "data.root=/datasets/x"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["data"]["root"] == "/datasets/x"
    assert shown["train"]["steps"] == 40000


def test_a_preset_without_a_dataset_folder_says_so():
    with pytest.raises(ConfigError, match=r"data.root.*data.root=/path"):
        load_config(preset_path("nyud_vit_s"))


def _fixture(dataset: str, backbone: str, root: Path) -> Path:
    if dataset == "pascal":
        write_pascal(root)  # 2 train images (1 carved for validation), 1 test image
    else:
        # both NYUD layouts the presets name: NYUD_MT (jpg + npy) and the NYUDv2 tarball (png)
        write_nyud(root, variant="nyudv2" if backbone == "vit_b" else "nyud_mt", splits={"train": 4, "val": 2})
    return root


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_end_to_end_on_a_fixture(name, tmp_path):
    dataset, backbone = name.split("_", 1)
    root = _fixture(dataset, backbone, tmp_path / dataset)
    cfg = load_config(preset_path(name), [
        f"data.root={root}", "model.pretrained=null", TINY[backbone], "data.crop_size=32",
        "model.decoder_channels=16", "model.task_embed_dim=8", "data.num_workers=0",
        "train.steps=2", "data.batch_size=2", "train.eval_every=2", "train.checkpoint_every=2",
        f"out_dir={tmp_path / 'run'}", *([] if name == BF16_PRESET else ["train.bf16=false"]),
    ])
    assert cfg.train.bf16 == (name == BF16_PRESET)
    result = train(cfg, progress=False)
    assert result.step == 2
    assert result.last.is_file() and result.best is not None and result.best.is_file()
    meta = read_meta(result.last)
    assert meta["tasks"] == FIELD[dataset]["tasks"] and meta["method"] == "adapters"
    assert meta["backbone"] == PRETRAINED[backbone][0]
    assert meta["config"]["model"]["loss_weights"] == FIELD[dataset]["weights"]
    metrics = result.metrics
    assert set(FIELD[dataset]["tasks"]) <= set(metrics)
    assert math.isfinite(metrics["val_loss"]) and metrics["val_loss"] > 0
    for task in FIELD[dataset]["tasks"]:
        assert metrics[task] and all(math.isfinite(v) for v in metrics[task].values()), (task, metrics[task])
