"""Loading pretrained weights: local safetensors/torch files, hub repos offline, and every failure."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch
from conftest import put_in_hub_cache
from safetensors.torch import save_file

from taskadapt.errors import CheckpointError
from taskadapt.models.backbones import create_backbone
from taskadapt.models.backbones.pretrained import load_pretrained, read_state_dict

NAME = "vit_tiny_patch16_224"
SMALL = dict(depth=1, embed_dim=24, num_heads=3, img_size=32)
REPO = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def small_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_backbone(NAME, **{**SMALL, **overrides})


def timm_like_state_dict(seed: int = 1) -> dict[str, torch.Tensor]:
    """A small model's weights plus a classifier, as timm checkpoints have."""
    sd = {k: v.clone() for k, v in small_model(seed).state_dict().items()}
    sd["head.weight"] = torch.randn(10, 24)
    sd["head.bias"] = torch.zeros(10)
    return sd


def assert_loaded(model, sd: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in got)


def raises_checkpoint_error(source, *patterns: str, model=None) -> CheckpointError:
    """Load ``source`` and return the CheckpointError, checking its message and that no torch
    traceback is chained to it."""
    with pytest.raises(CheckpointError) as info:
        if model is None:
            read_state_dict(source)
        else:
            load_pretrained(model, source)
    message = str(info.value)
    for pattern in patterns:
        assert pattern in message, f"{pattern!r} not in {message!r}"
    err = info.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return err


# -- good files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt", ".bin"])
def test_round_trip_drops_the_classifier(tmp_path: Path, suffix: str) -> None:
    sd = timm_like_state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    assert set(read_state_dict(path)) == set(sd)
    model = small_model(seed=5)
    assert not torch.equal(model.pos_embed, sd["pos_embed"])
    load_pretrained(model, str(path))
    assert_loaded(model, sd)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {"checkpoint": 1, "model": {"state_dict": sd}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # saved from DistributedDataParallel
    ],
    ids=["state_dict", "model", "nested", "ddp"],
)
def test_training_containers_are_unwrapped(tmp_path: Path, wrap) -> None:
    sd = timm_like_state_dict()
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(sd), path)
    model = small_model(seed=5)
    load_pretrained(model, path)
    assert_loaded(model, sd)


def test_hub_snapshot_folder_is_accepted(tmp_path: Path) -> None:
    sd = timm_like_state_dict()
    save_file(sd, str(tmp_path / "model.safetensors"))
    assert set(read_state_dict(tmp_path)) == set(sd)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    raises_checkpoint_error(empty, "empty_folder", "model.safetensors")


# -- missing and corrupt files -----------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    raises_checkpoint_error(tmp_path / "nope.safetensors", "nope.safetensors", "does not exist")


def test_corrupt_safetensors(tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    save_file(timm_like_state_dict(), str(good))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    raises_checkpoint_error(truncated, "truncated.safetensors", "corrupt")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    raises_checkpoint_error(garbage, "garbage.safetensors", "corrupt")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    raises_checkpoint_error(empty, "empty.safetensors", "corrupt")


def test_corrupt_torch_files(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save(timm_like_state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:300])
    raises_checkpoint_error(truncated, "truncated.pth", "corrupt")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(7, 256)) * 8)
    raises_checkpoint_error(garbage, "garbage.pth", "corrupt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    raises_checkpoint_error(empty, "empty.pt", "corrupt")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "train.pth"
    torch.save({"model": timm_like_state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    raises_checkpoint_error(path, "train.pth", "argparse.Namespace", "weights_only", "save_file")


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    raises_checkpoint_error(path, "list.pth", "not a state dict")
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "best": 0.5}, path)
    raises_checkpoint_error(path, "epoch", "not a state dict")


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    path.write_bytes(b"x")
    raises_checkpoint_error(path, "weights.npz", ".safetensors")


# -- checkpoints of another architecture ------------------------------------------------------------
def test_wrong_depth_lists_the_unexpected_keys(tmp_path: Path) -> None:
    path = tmp_path / "deeper.safetensors"
    save_file(small_model(depth=2).state_dict(), str(path))
    err = raises_checkpoint_error(
        path, "deeper.safetensors", "unexpected", "blocks.1.attn.qkv.weight (72, 24)", NAME, model=small_model()
    )
    assert "missing" not in str(err)
    path = tmp_path / "shallower.safetensors"
    save_file(small_model().state_dict(), str(path))
    raises_checkpoint_error(path, "missing", "blocks.1.norm1.weight (24,)", model=small_model(depth=2))


def test_wrong_width_lists_the_shapes(tmp_path: Path) -> None:
    path = tmp_path / "wide.safetensors"
    save_file(small_model(embed_dim=48).state_dict(), str(path))
    raises_checkpoint_error(
        path, "wrong shape", "pos_embed: checkpoint (1, 5, 48), model (1, 5, 24)", "backbone name", model=small_model()
    )


def test_failed_load_leaves_the_model_untouched(tmp_path: Path) -> None:
    sd = small_model(seed=3).state_dict()
    sd["blocks.0.mlp.fc2.bias"] = torch.zeros(7)
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path))
    model = small_model(seed=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    raises_checkpoint_error(path, "blocks.0.mlp.fc2.bias: checkpoint (7,), model (24,)", model=model)
    assert_loaded(model, before)


# -- the Hugging Face hub, offline -------------------------------------------------------------------
def test_hub_offline_names_the_file_and_the_fix(offline_hub: Path) -> None:
    url = f"https://huggingface.co/{REPO}/resolve/main/model.safetensors"
    raises_checkpoint_error(f"hf-hub:{REPO}", REPO, url, "HF_HUB_OFFLINE", "pretrained=")
    # through create_backbone too: one CheckpointError, not a hub exception
    with pytest.raises(CheckpointError, match="pretrained="):
        create_backbone(NAME, pretrained=f"hf-hub:{REPO}", **SMALL)


def test_hub_offline_uses_the_local_cache(offline_hub: Path) -> None:
    sd = timm_like_state_dict()
    put_in_hub_cache(offline_hub, REPO, sd)
    model = small_model(seed=5)
    load_pretrained(model, f"hf-hub:{REPO}")
    assert_loaded(model, sd)


def test_hub_name_must_be_owner_slash_repo(offline_hub: Path) -> None:
    raises_checkpoint_error("hf-hub:vit_small_patch16_224", "hf-hub:<owner>/<repo>")


def test_filter_errors_name_the_file(tmp_path: Path) -> None:
    sd = small_model().state_dict()
    sd["pos_embed"] = torch.zeros(1, 1 + 6, 24)  # 6 patch tokens: no square grid to resize from
    path = tmp_path / "odd_grid.safetensors"
    save_file(sd, str(path))
    raises_checkpoint_error(
        path, "odd_grid.safetensors", "not a square grid", "img_size", model=small_model(img_size=48)
    )
