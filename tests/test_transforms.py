"""Joint transforms keep image and labels consistent (taskadapt.data.transforms)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from taskadapt.data.sample import IGNORE_INDEX
from taskadapt.data.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    PadTo,
    RandomHorizontalFlip,
    RandomScaleCrop,
    Resize,
    adjust_color,
    build_eval_transform,
    build_train_transform,
    hflip,
    nearest_index,
    resize_nearest,
)
from taskadapt.errors import ConfigError, DatasetError

LABELS = ("semseg", "parts", "depth", "normals", "edge", "saliency")


def make_sample(h: int = 24, w: int = 32, seed: int = 0) -> dict:
    """A random sample with every label, including some ignore pixels."""
    g = torch.Generator().manual_seed(seed)
    semseg = torch.randint(0, 6, (h, w), generator=g)
    semseg[0, :3] = IGNORE_INDEX
    parts = torch.randint(0, 7, (h, w), generator=g)
    depth = torch.rand(1, h, w, generator=g) * 9 + 0.5
    depth[0, -1, :4] = math.nan
    normals = F.normalize(torch.randn(3, h, w, generator=g), dim=0)
    normals[:, 2, 2] = math.nan
    edge = (torch.rand(1, h, w, generator=g) < 0.1).float()
    saliency = (torch.rand(1, h, w, generator=g) < 0.4).float()
    saliency[0, 1, 1] = math.nan
    return {
        "image": torch.rand(3, h, w, generator=g), "semseg": semseg, "parts": parts, "depth": depth,
        "normals": normals, "edge": edge, "saliency": saliency,
        "meta": {"id": f"s{seed}", "dataset": "synthetic", "split": "train", "size": (h, w)},
    }


def all_transforms(g: torch.Generator) -> list:
    return [
        Resize((13, 17)),
        Resize(48),
        RandomScaleCrop((20, 20), generator=g),
        RandomScaleCrop((40, 50), scale=(0.5, 0.8), generator=g),
        RandomScaleCrop(16, scale=(1.5, 2.0), scale_depth=True, generator=g),
        CenterCrop((10, 40)),
        PadTo((30, 30)),
        RandomHorizontalFlip(1.0, generator=g),
        ColorJitter(0.4, 0.4, 0.4, 0.1, generator=g),
        build_train_transform(20, generator=g),
        build_eval_transform((16, 16)),
    ]


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k].nan_to_num(nan=-7.0), b[k].nan_to_num(nan=-7.0)), k
        else:
            assert a[k] == b[k], k


# ------------------------------------------------------------------------------------------ flip


def test_flip_twice_is_identity():
    s = make_sample()
    assert_same(hflip(hflip(s)), s)
    t = RandomHorizontalFlip(p=1.0)
    assert_same(t(t(s)), s)


def test_flip_mirrors_every_map_and_negates_normals_x():
    s = make_sample()
    f = hflip(s)
    for key in ("image", "semseg", "parts", "depth", "edge", "saliency"):
        mirrored = s[key][..., torch.arange(31, -1, -1)]
        assert torch.equal(f[key].nan_to_num(nan=-1), mirrored.nan_to_num(nan=-1))
    n, fn = s["normals"], f["normals"]
    assert torch.equal(fn[0].nan_to_num(nan=9), (-n[0].flip(-1)).nan_to_num(nan=9))
    assert torch.equal(fn[1:].nan_to_num(nan=9), n[1:].flip(-1).nan_to_num(nan=9))
    assert f["meta"] is s["meta"]


def test_flip_probability_zero_and_draw_count():
    s = make_sample()
    g = torch.Generator().manual_seed(3)
    assert_same(RandomHorizontalFlip(p=0.0, generator=g)(s), s)
    # one number is drawn per call whatever the outcome
    ref = torch.Generator().manual_seed(3)
    torch.rand((), generator=ref)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=ref))


def test_random_flip_flips_about_half_the_time():
    s = make_sample(4, 6)
    t = RandomHorizontalFlip(0.5, generator=torch.Generator().manual_seed(0))
    flipped = sum(not torch.equal(t(s)["image"], s["image"]) for _ in range(200))
    assert 70 < flipped < 130


# ---------------------------------------------------------------------------- label consistency


@pytest.mark.parametrize("index", range(11))
def test_labels_never_interpolated_and_normals_stay_unit(index):
    s = make_sample()
    g = torch.Generator().manual_seed(index)
    t = all_transforms(g)[index]
    for _ in range(3):
        out = t(s)
        h, w = out["image"].shape[-2:]
        for key in LABELS:
            assert out[key].shape[-2:] == (h, w), key
        for key in ("semseg", "parts"):
            assert out[key].dtype == torch.int64
            allowed = set(s[key].unique().tolist()) | {IGNORE_INDEX}
            assert set(out[key].unique().tolist()) <= allowed, key
        for key in ("edge", "saliency"):
            vals = out[key][~torch.isnan(out[key])]
            assert set(vals.unique().tolist()) <= {0.0, 1.0}, key
        n = out["normals"]
        nan = torch.isnan(n)
        assert torch.equal(nan.any(0), nan.all(0)), "NaN must cover all three channels together"
        norms = n.norm(dim=0)[~nan.any(0)]
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
        img = out["image"]
        assert img.dtype == torch.float32 and img.min() >= 0 and img.max() <= 1


@pytest.mark.parametrize("seed", range(6))
def test_scale_crop_depth_values_are_original_values_or_nan(seed):
    s = make_sample(seed=seed)
    out = RandomScaleCrop((30, 30), generator=torch.Generator().manual_seed(seed))(s)
    d = out["depth"]
    original = set(s["depth"][~torch.isnan(s["depth"])].tolist())
    assert set(d[~torch.isnan(d)].tolist()) <= original


def test_scale_depth_divides_by_the_scale():
    s = make_sample()
    out = RandomScaleCrop(20, scale=(1.6, 1.6), scale_depth=True)(s)
    d = out["depth"][~torch.isnan(out["depth"])]
    expected = s["depth"][~torch.isnan(s["depth"])] / 1.6
    assert set(d.tolist()) <= set(expected.tolist())
    # default: metric depth untouched
    out = RandomScaleCrop(20, scale=(1.6, 1.6))(s)
    kept = out["depth"][~torch.isnan(out["depth"])]
    assert set(kept.tolist()) <= set(s["depth"][~torch.isnan(s["depth"])].tolist())


def _encoded_sample(h: int = 36, w: int = 44) -> dict:
    """Labels are functions of the image: channel 0 = class / 10, channel 1 = depth / 10.

    Classes form 6x6 blocks so there are interior pixels away from boundaries.
    """
    rows = torch.arange(h).div(6, rounding_mode="floor")
    cols = torch.arange(w).div(6, rounding_mode="floor")
    cls = (rows[:, None] * 3 + cols[None, :]) % 9
    depth = (cls.float() + 1.0)[None]
    image = torch.stack([cls.float() / 10, depth[0] / 10, torch.full((h, w), 0.5)])
    return {"image": image, "semseg": cls, "depth": depth, "meta": {"id": "enc"}}


@pytest.mark.parametrize("seed", range(8))
def test_scale_crop_keeps_image_and_labels_aligned_exactly_with_nearest_image(seed):
    s = _encoded_sample()
    g = torch.Generator().manual_seed(seed)
    out = RandomScaleCrop((32, 40), image_interpolation="nearest", generator=g)(s)
    valid = out["semseg"] != IGNORE_INDEX
    assert torch.equal((out["image"][0] * 10).round().long()[valid], out["semseg"][valid])
    assert torch.equal((out["image"][1] * 10)[valid], out["depth"][0][valid])
    # padded pixels: black image, ignore labels
    assert torch.equal(torch.isnan(out["depth"][0]), ~valid)
    assert (out["image"][:, ~valid] == 0).all()


@pytest.mark.parametrize("seed", range(8))
def test_scale_crop_bilinear_image_agrees_with_labels_away_from_boundaries(seed):
    s = _encoded_sample()
    out = RandomScaleCrop((32, 40), generator=torch.Generator().manual_seed(seed))(s)
    lab = out["semseg"]
    # interior = the 3x3 neighbourhood holds one class (no boundary, no padding next to it)
    padded = F.pad(lab[None, None].float(), (1, 1, 1, 1), value=-1.0)
    win = F.unfold(padded, 3).view(9, *lab.shape)
    interior = (win == lab[None].float()).all(0) & (lab != IGNORE_INDEX)
    assert interior.sum() > 30
    cls_from_image = (out["image"][0] * 10).round().long()
    assert torch.equal(cls_from_image[interior], lab[interior])


def test_padding_uses_zero_and_ignore_values():
    s = make_sample(20, 20)
    for key in ("semseg", "parts"):
        s[key].clamp_(max=5)  # no ignore in the source, so every 255 comes from padding
    s["depth"] = s["depth"].nan_to_num(nan=1.0)
    s["normals"] = s["normals"].nan_to_num(nan=0.0)
    s["normals"][2] = s["normals"][2].clamp(min=0.1)
    s["saliency"] = s["saliency"].nan_to_num(nan=0.0)
    out = RandomScaleCrop((30, 40), scale=(0.5, 0.5), generator=torch.Generator().manual_seed(0))(s)
    pad = out["semseg"] == IGNORE_INDEX
    assert pad.sum() == 30 * 40 - 10 * 10  # the scaled sample is 10x10
    assert torch.equal(out["parts"] == IGNORE_INDEX, pad)
    for key in ("depth", "normals", "edge", "saliency"):
        assert torch.equal(torch.isnan(out[key]).all(0), pad), key
        assert torch.equal(torch.isnan(out[key]).any(0), pad), key
    assert (out["image"][:, pad] == 0).all()
    assert (out["image"][:, ~pad] > 0).any()


@pytest.mark.parametrize("crop", [(16, 16), (20, 50), (64, 8), 7])
def test_output_shape_equals_crop_size(crop):
    s = make_sample()
    g = torch.Generator().manual_seed(1)
    want = (crop, crop) if isinstance(crop, int) else crop
    for scale in ((0.5, 2.0), (0.1, 0.1), (3.0, 3.0)):
        out = RandomScaleCrop(crop, scale=scale, generator=g)(s)
        assert out["image"].shape == (3, *want)
        assert out["semseg"].shape == want
        assert out["normals"].shape == (3, *want)
        assert out["depth"].shape == (1, *want)
    assert build_train_transform(crop, generator=g)(s)["image"].shape == (3, *want)


def test_scale_one_full_crop_is_identity():
    s = make_sample()
    assert_same(RandomScaleCrop((24, 32), scale=(1.0, 1.0))(s), s)


def test_determinism_with_a_fixed_generator():
    s = make_sample()
    a = build_train_transform(20, generator=torch.Generator().manual_seed(5))
    b = build_train_transform(20, generator=torch.Generator().manual_seed(5))
    c = build_train_transform(20, generator=torch.Generator().manual_seed(6))
    outs_a = [a(s) for _ in range(4)]
    outs_b = [b(s) for _ in range(4)]
    for x, y in zip(outs_a, outs_b, strict=True):
        assert_same(x, y)
    assert any(not torch.equal(x["image"], c(s)["image"]) for x in outs_a)


def test_global_rng_used_without_generator():
    s = make_sample()
    t = build_train_transform(20)
    torch.manual_seed(11)
    a = t(s)
    torch.manual_seed(11)
    assert_same(t(s), a)


def test_transforms_do_not_modify_their_input():
    s = make_sample()
    before = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
    for t in all_transforms(torch.Generator().manual_seed(0)):
        t(s)
    assert_same(s, before)


def test_unknown_keys_pass_through():
    s = make_sample()
    s["extra"] = "kept"
    assert build_train_transform(16)(s)["extra"] == "kept"


# ------------------------------------------------------------------------------------- resize


def test_nearest_resize_matches_nearest_exact_and_preserves_ignore():
    x = torch.randn(2, 17, 23)
    x[0, 3, 4] = math.nan
    for size in ((7, 9), (40, 50), (17, 23)):
        ref = F.interpolate(x[None], size=size, mode="nearest-exact")[0]
        assert torch.equal(resize_nearest(x, size).nan_to_num(nan=5), ref.nan_to_num(nan=5))
    assert nearest_index(4, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert nearest_index(8, 4).tolist() == [1, 3, 5, 7]


def test_resize_shrinks_image_with_antialias():
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float()
    s = {"image": checker.expand(3, 64, 64).clone(), "semseg": checker.long()}
    out = Resize(8)(s)
    # antialiasing averages the 1-px checkerboard to grey; plain bilinear at 8x would alias it
    assert torch.allclose(out["image"], torch.full((3, 8, 8), 0.5), atol=0.02)
    assert set(out["semseg"].unique().tolist()) <= {0, 1}


def test_resize_enlarging_labels_are_blocks():
    s = make_sample(4, 5)
    out = Resize((8, 10))(s)
    assert torch.equal(out["semseg"], s["semseg"].repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert build_eval_transform()(s)["image"] is s["image"]


def test_center_crop_and_pad_to():
    s = make_sample(24, 32)
    c = CenterCrop((10, 12))(s)
    assert torch.equal(c["semseg"], s["semseg"][7:17, 10:22])
    p = PadTo((30, 30))(s)
    assert p["image"].shape == (3, 30, 32)
    assert torch.equal(p["semseg"][:24], s["semseg"])
    assert (p["semseg"][24:] == IGNORE_INDEX).all() and torch.isnan(p["depth"][:, 24:]).all()
    big = CenterCrop((30, 36))(s)  # larger than the sample: centred padding
    assert torch.equal(big["semseg"][3:27, 2:34], s["semseg"])
    assert (big["semseg"][:3] == IGNORE_INDEX).all()


# ---------------------------------------------------------------------------------- colour


def test_color_jitter_changes_only_the_image():
    s = make_sample()
    out = ColorJitter(0.5, 0.5, 0.5, 0.2, generator=torch.Generator().manual_seed(0))(s)
    assert not torch.allclose(out["image"], s["image"])
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    for key in LABELS:
        assert out[key] is s[key]
    assert out["meta"] is s["meta"]


def test_adjust_color_components():
    img = torch.rand(3, 8, 8) * 0.5 + 0.25
    assert torch.equal(adjust_color(img), img)
    assert torch.allclose(adjust_color(img, brightness=1.5), (img * 1.5).clamp(0, 1))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    gray = (img * luma).sum(0)
    desat = adjust_color(img, saturation=0.0)
    assert torch.allclose(desat, gray.expand(3, 8, 8), atol=1e-6)
    flat = adjust_color(img, contrast=0.0)
    assert torch.allclose(flat, torch.full_like(img, float(gray.mean())), atol=1e-6)
    # a small hue rotation (no clamping) keeps luma, changes the colour, and a full turn is identity
    soft = img * 0.2 + 0.4
    rot = adjust_color(soft, hue=0.1)
    assert torch.allclose((rot * luma).sum(0), (soft * luma).sum(0), atol=1e-5)
    assert not torch.allclose(rot, soft, atol=1e-3)
    assert torch.allclose(adjust_color(adjust_color(soft, hue=0.25), hue=-0.25), soft, atol=1e-5)
    grey_img = torch.full((3, 4, 4), 0.3)
    assert torch.allclose(adjust_color(grey_img, hue=0.3, saturation=1.7), grey_img, atol=1e-6)


# ---------------------------------------------------------------------------------- errors


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="crop_size"):
        RandomScaleCrop(0)
    with pytest.raises(ConfigError, match="crop_size"):
        RandomScaleCrop("32")
    with pytest.raises(ConfigError, match="scale"):
        RandomScaleCrop(16, scale=(2.0, 1.0))
    with pytest.raises(ConfigError, match="p must"):
        RandomHorizontalFlip(1.5)
    with pytest.raises(ConfigError, match="hue"):
        ColorJitter(hue=0.7)
    with pytest.raises(ConfigError, match="image_interpolation"):
        Resize(8, image_interpolation="cubic")


def test_mismatched_label_raises_dataset_error_naming_sample_and_key():
    s = make_sample()
    s["depth"] = s["depth"][:, :10]
    with pytest.raises(DatasetError, match=r"'s0'.*'depth'"):
        Compose([Resize(8)])(s)
    with pytest.raises(DatasetError, match="image"):
        Resize(8)({"semseg": torch.zeros(4, 4, dtype=torch.long)})
