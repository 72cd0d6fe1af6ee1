"""Swin equals timm: reference outputs in tests/fixtures/timm/swin_*.safetensors (made by make_swin.py).

The backbone contract every family keeps (step view, taps, attn_bias, checkpoint round trips, float64, ...)
is checked for every registered Swin in test_backbone_contract.py; here what is Swin's own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from taskadapt.errors import ConfigError
from taskadapt.models.backbones import create_backbone, list_backbones
from taskadapt.models.backbones.pretrained import load_pretrained
from taskadapt.models.backbones.swin import SwinBlock, SwinTransformer, resize_rel_pos_bias_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors: one thread per pytest worker

FIXTURES = Path(__file__).parent / "fixtures" / "timm"
CASES = ["swin_tiny", "swin_small"]
NAMES = ["swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224", "swin_base_patch4_window7_224"]
TOL = 1e-4


def load_fixture(tag: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """-> (metadata with decoded kwargs, timm state dict in float32, the other tensors)."""
    with safe_open(str(FIXTURES / f"{tag}.safetensors"), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    meta["kwargs"] = json.loads(meta["kwargs"])
    params = {k[len("param.") :]: v for k, v in tensors.items() if k.startswith("param.")}
    rest = {k: v for k, v in tensors.items() if not k.startswith("param.")}
    return meta, params, rest


def build_loaded(
    tag: str, **overrides
) -> tuple[SwinTransformer, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    meta, params, rest = load_fixture(tag)
    model = create_backbone(meta["model"], **{**meta["kwargs"], **overrides}).eval()
    model.load_state_dict(model.checkpoint_filter(params), strict=True)
    return model, params, rest


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def test_registered_names() -> None:
    assert set(NAMES) <= set(list_backbones("swin*"))


@pytest.mark.parametrize("tag", CASES)
def test_state_dict_keys_and_shapes_match_timm(tag: str) -> None:
    meta, params, _ = load_fixture(tag)
    model = create_backbone(meta["model"], **meta["kwargs"])
    ours = model.state_dict()
    timm_backbone = {k for k in params if not k.startswith("head.fc.")}
    assert "head.fc.weight" in params  # the fixture keeps the classifier so the filter is exercised
    assert set(ours) == timm_backbone  # buffers (relative_position_index, attn_mask) are not persistent
    assert all(ours[k].shape == params[k].shape for k in ours)
    with_buffers = {**params, "layers.0.blocks.1.attn_mask": torch.zeros(9, 49, 49)}
    with_buffers["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    assert set(model.checkpoint_filter(with_buffers)) == timm_backbone


@pytest.mark.parametrize("tag", CASES)
def test_windows_and_shifts_match_timm(tag: str) -> None:
    meta, _, _ = load_fixture(tag)
    model = create_backbone(meta["model"], **meta["kwargs"])
    ours = [[list(b.window_size), list(b.shift_size)] for stage in model.layers for b in stage.blocks]
    assert ours == json.loads(meta["block_windows"])


@pytest.mark.parametrize("tag", CASES)
def test_forward_features_equals_timm(tag: str, tmp_path: Path) -> None:
    meta, params, rest = load_fixture(tag)
    model = create_backbone(meta["model"], **meta["kwargs"]).eval()
    path = tmp_path / "timm.safetensors"  # through the real loader: file -> filter -> strict load
    save_file({k: v.contiguous() for k, v in params.items()}, str(path))
    load_pretrained(model, path)
    with torch.no_grad():
        out = model.forward_features(rest["input"])
    assert max_diff(out, rest["forward_features"]) <= TOL


@pytest.mark.parametrize("tag", CASES)
def test_step_view_matches_timm_and_feature_maps(tag: str) -> None:
    model, _, rest = build_loaded(tag)
    x = rest["input"]
    steps = model.steps()
    depths = [len(stage.blocks) for stage in model.layers]
    expected_names = []
    for i, depth in enumerate(depths):
        expected_names += [f"layers.{i}.downsample"] if i > 0 else []
        expected_names += [f"layers.{i}.blocks.{j}" for j in range(depth)]
    assert [s.name for s in steps] == [*expected_names, "norm"]
    assert [s.kind for s in steps].count("transition") == 3
    assert all(re.fullmatch(rf"layers\.{s.stage}\..*", s.name) for s in steps[:-1])
    taps = model.default_taps()
    assert [steps[t].name for t in taps] == [f"layers.{i}.blocks.{d - 1}" for i, d in enumerate(depths)]
    with torch.no_grad():
        state = model.stem(x)
        for i, step in enumerate(steps):
            state = step(state)
            if i in taps:  # timm forward_intermediates: stage outputs, NCHW, before the final norm
                stage = steps[i].stage
                fmap = model.feature_map(state, i)
                assert max_diff(fmap, rest[f"intermediate.{stage}"]) <= TOL
                assert model.tap_stride(i) == 4 * 2**stage
        out = model.finalize(state)
    assert max_diff(out, rest["forward_features"]) <= TOL


def test_tap_strides_and_channels_double_per_stage() -> None:
    # that the feature maps have these shapes: test_backbone_contract.py
    model = create_backbone(
        "swin_tiny_patch4_window7_224", img_size=64, embed_dim=6, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4)
    )
    taps = model.default_taps()
    assert [model.tap_stride(t) for t in taps] == [4, 8, 16, 32]
    assert [model.tap_channels(t) for t in taps] == [6, 12, 24, 48] and model.num_features == 48


def _block_input(model: SwinTransformer, x: torch.Tensor, target: int) -> torch.Tensor:
    state = model.stem(x)
    for step in model.steps()[:target]:
        state = step(state)
    return state


def test_attention_tokens_are_the_window_area() -> None:
    # what a bias of that size does (zero, constant, broadcast forms, per image): test_backbone_contract.py
    model, _, rest = build_loaded("swin_tiny")
    windows = set()
    with torch.no_grad():
        for index in model.block_steps():
            block = model.steps()[index].module
            n_q, n_kv = block.attention_tokens(_block_input(model, rest["input"], index))
            assert n_q == n_kv == block.window_size[0] * block.window_size[1]
            windows.add(block.window_size)
    assert windows == {(7, 7), (4, 4), (2, 2)}  # the window shrinks to maps smaller than it


def test_attn_bias_query_key_orientation() -> None:
    """A bias that lets every query see only the first (top-left) token of its window makes the
    attention output there proj(v(top-left token)), padded windows included (that image 1, with a zero
    bias, is unaffected: test_backbone_contract.py)."""
    model, _, rest = build_loaded("swin_tiny")
    index = model.block_steps()[0]  # layers.0.blocks.0: 16x16 map, window 7, padded to 21x21
    block = model.steps()[index].module
    assert isinstance(block, SwinBlock) and block.padded_resolution == (21, 21)
    with torch.no_grad():
        state = _block_input(model, rest["input"], index)
        n, _ = block.attention_tokens(state)
        bias = torch.zeros(2, 1, n, n)
        bias[0, :, :, 1:] = -1e4  # image 0: every query attends to key 0 only
        out = block(state, attn_bias=bias)

        B, H, W, C = state.shape
        y = block.norm1(state.reshape(B, H * W, C)).view(B, H, W, C)
        v = F.linear(y, block.attn.qkv.weight[2 * C :], block.attn.qkv.bias[2 * C :])
        rows = (torch.arange(H) // 7) * 7  # the top-left token of each token's window
        cols = (torch.arange(W) // 7) * 7
        attended = block.attn.proj(v[:, rows][:, :, cols])
        x1 = state + attended
        expected = x1 + block.mlp(block.norm2(x1.reshape(B, H * W, C))).view(B, H, W, C)
    assert max_diff(out[0], expected[0]) <= 1e-4


def test_relative_position_table_gets_gradients_through_the_mask() -> None:
    model, _, rest = build_loaded("swin_small")
    block = model.layers[0].blocks[1]  # shifted and padded
    state = _block_input(model, rest["input"], model.block_steps()[1]).detach()
    bias = torch.zeros(1, block.attn.num_heads, *block.attention_tokens(state))
    block(state, attn_bias=bias).square().mean().backward()
    assert block.attn.relative_position_bias_table.grad.abs().sum() > 0  # the bias's gradient: contract tests


def test_resize_table_equals_timm() -> None:
    meta, _, rest = load_fixture("swin_resize")
    source = rest["table.source"]
    for tag, window in json.loads(meta["table_targets"]).items():
        ours = resize_rel_pos_bias_table(source, tuple(window))
        assert max_diff(ours, rest[f"table.{tag}"]) <= 1e-5
    assert resize_rel_pos_bias_table(source, (7, 7)) is source


@pytest.mark.parametrize("tag", ["up", "down"])
def test_checkpoint_with_window_7_loads_into_other_window(tag: str) -> None:
    meta, _, rest = load_fixture("swin_resize")
    window = json.loads(meta["windows"])[tag]
    model, _, tiny = build_loaded("swin_tiny", window_size=window)
    sd = model.state_dict()
    tables = {k[len(f"resize.{tag}.") :]: v for k, v in rest.items() if k.startswith(f"resize.{tag}.layers.")}
    assert tables and set(tables) == {k for k in sd if k.endswith("relative_position_bias_table")}
    for key, expected in tables.items():
        assert max_diff(sd[key], expected) <= 1e-5, key
    assert model.layers[0].blocks[0].window_size == (window, window)
    with torch.no_grad():
        out = model(tiny["input"])
    assert max_diff(out, rest[f"resize.{tag}.forward_features"]) <= TOL


def test_original_checkpoint_layout_is_converted() -> None:
    """Microsoft's checkpoints merge patches at the END of stages 0-2 and name the classifier head.*."""
    model, params, rest = build_loaded("swin_small")
    old = {}
    for key, value in params.items():
        key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        old[key.replace("head.fc.", "head.")] = value
    assert "layers.0.downsample.reduction.weight" in old
    fresh = create_backbone("swin_small_patch4_window7_224", **load_fixture("swin_small")[0]["kwargs"]).eval()
    fresh.load_state_dict(fresh.checkpoint_filter(old), strict=True)
    with torch.no_grad():
        assert max_diff(fresh(rest["input"]), rest["forward_features"]) <= TOL


def test_full_size_parameter_counts_equal_timm() -> None:
    meta, _, _ = load_fixture("swin_tiny")
    counts = json.loads(meta["full_param_counts"])  # timm 1.0.31: (total incl. 1000-class head, head)
    assert counts["swin_tiny_patch4_window7_224"][0] == 28_288_354  # also verified by hand with timm
    for name in NAMES:
        with torch.device("meta"):
            model = create_backbone(name)
        total, head = counts[name]
        assert sum(p.numel() for p in model.parameters()) == total - head, name
        assert model.num_features == (768 if name != "swin_base_patch4_window7_224" else 1024)


def test_user_errors() -> None:
    with pytest.raises(ConfigError, match="num_heads"):
        create_backbone("swin_tiny_patch4_window7_224", img_size=64, num_heads=(3, 6))
    with pytest.raises(ConfigError, match="divisible"):
        create_backbone("swin_tiny_patch4_window7_224", img_size=64, embed_dim=10, depths=(1, 1, 1, 1))
    with pytest.raises(ConfigError, match="window_size"):
        create_backbone("swin_tiny_patch4_window7_224", img_size=64, window_size=(7, 7, 7))
    model = create_backbone(
        "swin_tiny_patch4_window7_224", img_size=64, embed_dim=6, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4)
    )
    with pytest.raises(ValueError, match="img_size"):
        model(torch.zeros(1, 3, 96, 96))
