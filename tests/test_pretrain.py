"""The MAE pretraining recipe and the bundled default backbone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.optim.optimizer import register_optimizer_step_pre_hook

from taskadapt.errors import CheckpointError, ConfigError
from taskadapt.models.backbones import bundled, create_backbone
from taskadapt.pretrain import (
    MaskedAutoencoder,
    augment,
    normalized_targets,
    patchify,
    pretrain,
    random_masking,
    unpatchify,
)
from taskadapt.train.schedule import warmup_cosine

TINY = dict(embed_dim=24, depth=2, num_heads=2, img_size=32)  # 4 x 4 patches of 8 px


# -- masking and targets ------------------------------------------------------------------------------
def test_patchify_matches_the_vit_patch_grid_and_inverts() -> None:
    images = torch.arange(2 * 3 * 16 * 24, dtype=torch.float32).reshape(2, 3, 16, 24)
    patches = patchify(images, 8)
    assert patches.shape == (2, 6, 8 * 8 * 3)
    # patch 4 = grid row 1, column 1; its first value is pixel (8, 8) of channel 0, then channel 1
    assert patches[1, 4, 0] == images[1, 0, 8, 8] and patches[1, 4, 1] == images[1, 1, 8, 8]
    assert patches[0, 2, 3] == images[0, 0, 0, 17]  # (row 0, col 1, channel 0) of patch (0, 2)
    assert torch.equal(unpatchify(patches, 8, (2, 3)), images)
    # same order as the ViT's conv patch embedding: a conv that picks pixel (0, 0) of channel 0
    conv = torch.nn.Conv2d(3, 1, 8, stride=8, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0
    assert torch.equal(conv(images).flatten(1), patches[:, :, 0])


def test_normalized_targets_of_a_known_image() -> None:
    patch = torch.tensor([0.0, 1.0, 2.0, 3.0]).repeat(48)  # one 8x8x3 patch with mean 1.5, var 1.25
    target = normalized_targets(patch.view(1, 1, -1), eps=0.0)
    assert torch.allclose(target[0, 0, :4], (torch.tensor([0.0, 1.0, 2.0, 3.0]) - 1.5) / 1.25**0.5)
    flat = normalized_targets(torch.full((1, 1, 192), 0.7))  # constant patch: zeros, not NaN
    assert flat.abs().max() < 1e-3  # eps keeps a constant patch finite: ~0, not NaN or huge


def test_random_masking_hides_exactly_the_requested_fraction() -> None:
    gen = torch.Generator().manual_seed(0)
    keep, mask = random_masking(5, 64, 0.75, gen)
    assert keep.shape == (5, 16) and mask.shape == (5, 64)
    assert (mask.sum(dim=1) == 48).all()
    assert not mask.gather(1, keep).any()  # kept patches are exactly the unmasked ones
    assert (keep.diff(dim=1) > 0).all()
    assert not torch.equal(mask[0], mask[1])  # per-sample masks


def test_loss_counts_masked_patches_only_and_the_model_sees_only_visible_ones() -> None:
    torch.manual_seed(0)
    mae = MaskedAutoencoder(create_backbone("vit_tiny_patch8_64", **TINY), decoder_dim=16, decoder_heads=2)
    x = torch.randn(2, 3, 32, 32)
    keep, mask = random_masking(2, 16, 0.75, torch.Generator().manual_seed(3))
    pred = mae.decode(mae.encode_visible(x, keep), keep)
    # changing a masked patch's pixels changes neither the encoder's input nor the predictions
    masked = int(mask[0].nonzero()[0])
    r, c = divmod(masked, 4)
    x2 = x.clone()
    x2[0, :, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] += 5.0
    assert torch.allclose(mae.decode(mae.encode_visible(x2, keep), keep), pred)
    # the loss, recomputed by hand with the same mask
    loss, pred_f, mask_f = mae(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mask_f, mask)
    err = (pred_f - normalized_targets(patchify(x, 8))).pow(2).mean(-1)
    assert torch.allclose(loss, err[mask].mean())
    # the encoder's position embedding is frozen sine-cosine
    assert not mae.encoder.pos_embed.requires_grad and mae.encoder.pos_embed[0, 0].abs().sum() == 0


def test_visible_weight_adds_the_visible_patches_error() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    mae = MaskedAutoencoder(create_backbone("vit_tiny_patch8_64", **TINY), decoder_dim=16, decoder_heads=2)
    both = MaskedAutoencoder(create_backbone("vit_tiny_patch8_64", **TINY), decoder_dim=16, decoder_heads=2,
                             visible_weight=0.5)
    both.load_state_dict(mae.state_dict())
    loss, pred, mask = mae(x, generator=torch.Generator().manual_seed(3))
    loss_b, pred_b, mask_b = both(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mask, mask_b) and torch.allclose(pred, pred_b)
    err = (pred - normalized_targets(patchify(x, 8))).pow(2).mean(-1)
    assert torch.allclose(loss, err[mask].mean())
    assert torch.allclose(loss_b, err[mask].mean() + 0.5 * err[~mask].mean())
    # the visible term reaches the encoder through the visible tokens' own predictions
    assert loss_b > loss
    with pytest.raises(ConfigError, match="visible_weight"):
        MaskedAutoencoder(create_backbone("vit_tiny_patch8_64", **TINY), visible_weight=-1.0)


def test_augment_keeps_shape_range_and_the_identity_is_reachable() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 32, 32)
    out = augment(images, gen)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, images)
    # full-size square crops leave only the flips: every image comes back as itself or its mirror
    same = augment(images, torch.Generator().manual_seed(0), min_area=1.0, max_ratio=1.0)
    as_is = [torch.allclose(same[i], images[i], atol=1e-5) for i in range(16)]
    mirrored = [torch.allclose(same[i], images[i].flip(-1), atol=1e-5) for i in range(16)]
    assert all(a or m for a, m in zip(as_is, mirrored, strict=True)) and any(as_is) and any(mirrored)


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    assert warmup_cosine(0.0, 0.1, peak=1.0) == 0.0
    assert warmup_cosine(0.05, 0.1, peak=1.0) == pytest.approx(0.5)
    assert warmup_cosine(0.1, 0.1, peak=1.0) == pytest.approx(1.0)
    assert warmup_cosine(0.55, 0.1, peak=1.0) == pytest.approx(0.5)
    assert warmup_cosine(1.0, 0.1, peak=1.0) == pytest.approx(0.0, abs=1e-12)


def _former_learning_rate(progress: float, peak: float, warmup: float) -> float:
    """pretrain.learning_rate as it was before the schedule moved to taskadapt.train.schedule."""
    if progress < warmup:
        return peak * progress / warmup
    t = min(1.0, (progress - warmup) / max(1e-12, 1.0 - warmup))
    return peak * 0.5 * (1.0 + math.cos(math.pi * t))


def test_warmup_cosine_is_the_former_learning_rate_bit_for_bit() -> None:
    for peak in (1.0, 1.5e-3, 1e-3, 3e-3, 0.1, 0.0):
        for warmup in (0.0, 0.05, 0.1, 0.25, 1 / 3, 0.5, 1.0):
            for progress in [i / 997 for i in range(998)] + [k / 60 for k in range(61)] + [0.05, 0.1, 1.2]:
                assert warmup_cosine(progress, warmup, peak=peak) == _former_learning_rate(progress, peak, warmup)


def test_pretrain_sets_the_former_learning_rates_step_by_step(tmp_path: Path) -> None:
    seen: list[list[float]] = []
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append([g["lr"] for g in opt.param_groups])
    )
    try:
        pretrain(tmp_path / "lr.safetensors", steps=12, batch_size=2, lr=3e-3, warmup=0.4, pool_size=4,
                 refresh=1, progress=False, backbone_kwargs=TINY, decoder_dim=16, decoder_depth=1, seed=3)
    finally:
        hook.remove()
    # a step budget: the fraction of the budget before step k is k / 12, warm-up over the first 5 steps
    # (with these numbers 3 of the warm-up rates would differ in the last bit were peak applied outside)
    assert seen == [[_former_learning_rate(k / 12, 3e-3, 0.4)] * 2 for k in range(12)]


# -- the recipe end to end ----------------------------------------------------------------------------
def test_tiny_pretrain_lowers_the_loss_and_writes_a_strict_loadable_encoder(tmp_path: Path) -> None:
    out = tmp_path / "enc.safetensors"
    result = pretrain(
        out,
        steps=60,
        batch_size=16,
        lr=3e-3,
        pool_size=32,
        refresh=2,
        progress=False,
        backbone_kwargs=TINY,
        decoder_dim=16,
        decoder_depth=1,
        seed=7,
    )
    assert result == out and out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.json", "enc.safetensors"]  # no temp files
    weights = load_file(str(out))
    assert all(v.dtype == torch.float16 for v in weights.values())
    model = create_backbone("vit_tiny_patch8_64", pretrained=str(out), **TINY)  # strict keys
    assert set(weights) == set(model.state_dict())
    assert torch.equal(model.blocks[0].attn.qkv.weight, weights["blocks.0.attn.qkv.weight"].float())
    prov = json.loads(out.with_suffix(".json").read_text())
    assert prov["steps"] == 60 and prov["images_seen"] == 60 * 16 and prov["seed"] == 7
    assert prov["data"]["domain"] == "pretrain" and prov["data"]["scenes_rendered"] == 32 + 60 * 2
    for key in ("command", "duration_s", "final_loss", "torch_version", "taskadapt_version", "date"):
        assert key in prov
    assert prov["machine"]["cpu_cores"] >= 1
    curve = prov["loss_curve"]
    assert curve[-1][0] == 60 and curve[-1][2] < curve[0][2]  # smoothed loss fell


def test_pretrain_needs_a_budget_and_a_safetensors_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="budget"):
        pretrain(tmp_path / "w.safetensors", progress=False)
    with pytest.raises(ConfigError, match="safetensors"):
        pretrain(tmp_path / "w.pth", steps=1, progress=False)


def test_second_stage_starts_from_the_first_and_records_it(tmp_path: Path) -> None:
    common = dict(batch_size=8, pool_size=16, refresh=2, progress=False, backbone_kwargs=TINY,
                  decoder_dim=16, decoder_depth=1)
    first = pretrain(tmp_path / "stage1.safetensors", steps=5, lr=3e-3, seed=7, **common)
    # with a zero learning rate the second stage must hand back exactly the encoder it started from
    frozen = pretrain(tmp_path / "same.safetensors", steps=2, lr=0.0, seed=8, init_from=first, **common)
    a, b = load_file(str(first)), load_file(str(frozen))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    second = pretrain(tmp_path / "stage2.safetensors", steps=3, lr=3e-3, seed=8, init_from=first,
                      visible_weight=1.0, **common)
    c = load_file(str(second))
    assert not torch.equal(a["blocks.0.attn.qkv.weight"], c["blocks.0.attn.qkv.weight"])
    prov = json.loads(second.with_suffix(".json").read_text())
    assert prov["visible_weight"] == 1.0 and "visible patches" in prov["objective"]
    assert prov["init_from"]["file"] == "stage1.safetensors"
    assert prov["init_from"]["provenance"]["steps"] == 5 and prov["init_from"]["provenance"]["seed"] == 7
    assert len(prov["init_from"]["sha256"]) == 64
    with pytest.raises(ConfigError, match="init_from.*missing.safetensors"):
        pretrain(tmp_path / "x.safetensors", steps=1, init_from=tmp_path / "missing.safetensors", **common)


# -- the bundled weights ------------------------------------------------------------------------------
def test_bundled_weights_load_and_differ_from_random_init() -> None:
    path = bundled.bundled_weights_path("vit_tiny_patch8_64")
    assert path.stat().st_size <= 25e6
    prov = json.loads(bundled.provenance_path(path).read_text())
    assert prov["backbone"] == "vit_tiny_patch8_64" and prov["data"]["seed"] != 0
    # two stages, as docs/pretraining.md and the recreate command say: MAE, then MAE + visible loss
    stage1 = prov["init_from"]["provenance"]
    assert prov["visible_weight"] == 1.0 and stage1.get("visible_weight", 0.0) == 0.0
    assert stage1["data"]["seed"] != 0 and stage1["data"]["seed"] != prov["data"]["seed"]
    for flag in (f"--steps {prov['steps']}", f"--seed {prov['data']['seed']}", "--visible-weight 1",
                 f"--steps {stage1['steps']}", f"--seed {stage1['seed']}"):
        assert flag in bundled.RECREATE_COMMAND
    torch.manual_seed(0)
    pretrained = create_backbone("vit_tiny_patch8_64", pretrained="bundled").eval()
    torch.manual_seed(0)
    random = create_backbone("vit_tiny_patch8_64").eval()
    assert pretrained.img_size == (64, 64) and len(pretrained.blocks) == 12 and pretrained.embed_dim == 192
    expected = load_file(str(path))
    assert torch.equal(pretrained.norm.weight, expected["norm.weight"].float())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = pretrained(x), random(x)
    assert a.shape == b.shape == (2, 65, 192) and torch.isfinite(a).all()
    assert (a - b).abs().mean() > 0.1


def test_missing_bundled_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bundled.BUNDLED_WEIGHTS, "vit_tiny_patch8_64", "gone.safetensors")
    with pytest.raises(CheckpointError) as info:
        create_backbone("vit_tiny_patch8_64", pretrained="bundled")
    message = str(info.value)
    assert "gone.safetensors" in message and bundled.RECREATE_COMMAND in message


def test_bundled_for_a_backbone_without_shipped_weights_names_the_ones_that_have() -> None:
    with pytest.raises(CheckpointError, match="ships no weights.*vit_tiny_patch8_64"):
        create_backbone("vit_tiny_patch16_224", pretrained="bundled", depth=1, embed_dim=24, num_heads=3)
