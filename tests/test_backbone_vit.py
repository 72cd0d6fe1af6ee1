"""ViT (DINOv2 included) equals timm: reference outputs in tests/fixtures/timm/vit_*.safetensors (made by
make_vit.py) and dinov2_*.safetensors (make_dinov2.py; DINOv2-only checks in test_backbone_dinov2.py).

The backbone contract every family keeps (step view, taps, attn_bias, checkpoint round trips, ...) is
checked for every registered ViT in test_backbone_contract.py; here what is ViT's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from taskadapt.errors import CheckpointError
from taskadapt.models.backbones import create_backbone
from taskadapt.models.backbones.vit import VisionTransformer, resample_pos_embed

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors: one thread per pytest worker

FIXTURES = Path(__file__).parent / "fixtures" / "timm"
CASES = ["vit_tiny", "vit_small", "vit_base", "dinov2_small", "dinov2_reg4", "dinov2_regcls"]  # make_*.py
TOL = 1e-4


def load_fixture(tag: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """-> (metadata with decoded kwargs, timm state dict in float32, the other tensors)."""
    with safe_open(str(FIXTURES / f"{tag}.safetensors"), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    kwargs = json.loads(meta["kwargs"])
    if isinstance(kwargs["img_size"], list):
        kwargs["img_size"] = tuple(kwargs["img_size"])
    meta["kwargs"] = kwargs
    params = {k[len("param.") :]: v for k, v in tensors.items() if k.startswith("param.")}
    rest = {k: v for k, v in tensors.items() if not k.startswith("param.")}
    return meta, params, rest


def build_loaded(tag: str) -> tuple[VisionTransformer, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    meta, params, rest = load_fixture(tag)
    model = create_backbone(meta["model"], **meta["kwargs"]).eval()
    model.load_state_dict(model.checkpoint_filter(params), strict=True)
    return model, params, rest


@pytest.mark.parametrize("tag", CASES)
def test_state_dict_keys_and_shapes_match_timm(tag: str) -> None:
    meta, params, _ = load_fixture(tag)
    model = create_backbone(meta["model"], **meta["kwargs"])
    ours = model.state_dict()
    timm_backbone = {k for k in params if not k.startswith("head.")}
    assert "head.weight" in params  # the fixture keeps the classifier so the filter is exercised
    assert set(ours) == timm_backbone
    assert all(ours[k].shape == params[k].shape for k in ours)
    assert set(model.checkpoint_filter(params)) == timm_backbone


@pytest.mark.parametrize("tag", CASES)
def test_forward_features_equals_timm(tag: str) -> None:
    model, _, rest = build_loaded(tag)
    with torch.no_grad():
        out = model.forward_features(rest["input"])
    assert out.shape == rest["forward_features"].shape
    assert (out - rest["forward_features"]).abs().max().item() <= TOL


@pytest.mark.parametrize("tag", CASES)
def test_step_view_matches_timm_and_feature_maps(tag: str) -> None:
    model, _, rest = build_loaded(tag)
    x = rest["input"]
    steps = model.steps()
    assert [s.kind for s in steps] == ["block"] * len(model.blocks) + ["norm"]
    assert model.block_steps() == list(range(len(model.blocks)))
    with torch.no_grad():
        state = model.stem(x)
        for i, step in enumerate(steps):
            state = step(state)
            if step.kind == "block":  # timm forward_intermediates: block output, NCHW, no class token
                fmap = model.feature_map(state, i)
                assert fmap.shape == rest[f"intermediate.{i}"].shape
                assert (fmap - rest[f"intermediate.{i}"]).abs().max().item() <= TOL
        out = model.finalize(state)
    assert (out - rest["forward_features"]).abs().max().item() <= TOL


@pytest.mark.parametrize("tag", CASES)
def test_default_taps_are_blocks_up_to_the_last(tag: str) -> None:
    # four sorted taps whose maps have the shape tap_stride/tap_channels say: test_backbone_contract.py
    meta, _, _ = load_fixture(tag)
    model = create_backbone(meta["model"], **meta["kwargs"])
    taps = model.default_taps()
    assert set(taps) <= set(model.block_steps())
    assert taps[-1] == len(model.blocks) - 1


def test_default_taps_of_full_depth_models() -> None:
    assert create_backbone("vit_tiny_patch16_224", img_size=32).default_taps() == [2, 5, 8, 11]
    shallow = create_backbone("vit_tiny_patch16_224", depth=2, embed_dim=24, img_size=32)
    assert shallow.default_taps() == [0, 0, 1, 1]


def test_attention_bias_is_additive_on_the_logits() -> None:
    model, _, rest = build_loaded("vit_tiny")
    block = model.blocks[0]
    with torch.no_grad():
        state = model.stem(rest["input"])
        nq, nkv = block.attention_tokens(state)
        assert (nq, nkv) == (state.shape[1], state.shape[1])
        heads = block.attn.num_heads
        plain = block(state)
        bias = torch.randn(state.shape[0], heads, nq, nkv, generator=torch.Generator().manual_seed(0))
        biased = block(state, attn_bias=bias)
        assert (biased - plain).abs().max().item() > 1e-2
        # reference: softmax(q k^T / sqrt(d) + bias) v, written out
        attn = block.attn
        h = block.norm1(state)
        B, N, C = h.shape
        q, k, v = attn.qkv(h).reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) * (C // heads) ** -0.5 + bias).softmax(-1)
        h = attn.proj((weights @ v).transpose(1, 2).reshape(B, N, C))
        x = state + h
        expected = x + block.mlp(block.norm2(x))
        assert (biased - expected).abs().max().item() <= 1e-5
    # a zero bias, broadcasting, the Step wrapper and non-block steps refusing a bias: test_backbone_contract.py


def test_timm_checkpoint_loads_through_create_backbone(tmp_path: Path) -> None:
    meta, params, rest = load_fixture("vit_small")
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in params.items()}, str(path))
    model = create_backbone(meta["model"], pretrained=str(path), **meta["kwargs"]).eval()
    with torch.no_grad():
        out = model(rest["input"])
    assert (out - rest["forward_features"]).abs().max().item() <= TOL


# -- position-embedding resampling against timm's checkpoint_filter_fn ------------------------------
def _resize_fixture() -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    meta, params, rest = load_fixture("vit_resize")
    meta["targets"] = {k: tuple(v) for k, v in json.loads(meta["targets"]).items()}
    return meta, params, rest


@pytest.mark.parametrize("target", ["down", "up", "mixed"])
def test_pos_embed_resampling_equals_timm(target: str) -> None:
    meta, params, rest = _resize_fixture()
    size = meta["targets"][target]
    model = create_backbone(meta["model"], **{**meta["kwargs"], "img_size": size})
    filtered = model.checkpoint_filter(params)
    expected = rest[f"resize.{target}.pos_embed"]
    assert filtered["pos_embed"].shape == model.pos_embed.shape == expected.shape
    assert (filtered["pos_embed"] - expected).abs().max().item() <= 1e-5
    assert torch.equal(filtered["pos_embed"][:, 0], params["pos_embed"][:, 0])  # class token kept


def test_resized_model_equals_timm(tmp_path: Path) -> None:
    meta, params, rest = _resize_fixture()
    target = meta["forward_target"]
    path = tmp_path / "weights.safetensors"
    save_file(params, str(path))
    kwargs = {**meta["kwargs"], "img_size": meta["targets"][target]}
    model = create_backbone(meta["model"], pretrained=str(path), **kwargs)
    with torch.no_grad():
        out = model.eval()(rest[f"resize.{target}.input"])
    assert (out - rest[f"resize.{target}.forward_features"]).abs().max().item() <= TOL


def test_resample_pos_embed_identity_and_errors() -> None:
    pos = torch.randn(1, 1 + 12, 8)
    assert resample_pos_embed(pos, (3, 4)) is pos  # same token count: left alone (non-square grids too)
    half = resample_pos_embed(pos.half()[:, :10], (2, 2))  # 3x3 -> 2x2, dtype kept
    assert half.dtype == torch.float16 and half.shape == (1, 5, 8)
    with pytest.raises(CheckpointError, match="not a square grid"):
        resample_pos_embed(pos, (5, 5))
    # a constant map stays constant (interpolation weights sum to one)
    const = torch.cat([torch.zeros(1, 1, 4), torch.full((1, 16, 4), 0.7)], dim=1)
    assert torch.allclose(resample_pos_embed(const, (7, 3))[:, 1:], torch.full((1, 21, 4), 0.7), atol=1e-6)
