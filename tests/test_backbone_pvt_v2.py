"""PVTv2 backbones against reference outputs of real timm 1.0.31 (tests/fixtures/timm/make_pvt_v2.py).

The backbone contract every family keeps (step view, taps, attn_bias, replaceable norms, checkpoint round
trips, ...) is checked for every registered PVTv2 in test_backbone_contract.py; here what is PVTv2's own."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import test_backbone_contract as contract
import torch
from safetensors import safe_open
from torch import nn

from taskadapt.errors import ConfigError
from taskadapt.models.backbones import create_backbone, list_backbones
from taskadapt.models.backbones.pvt_v2 import Block, PyramidVisionTransformerV2

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors: one thread per pytest worker

FIXTURES = Path(__file__).parent / "fixtures" / "timm"
TAGS = ["sra", "linear"]
TOL = 1e-4


def _load(tag: str) -> dict:
    with safe_open(str(FIXTURES / f"pvt_v2_{tag}.safetensors"), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    sd = {k[3:]: v for k, v in tensors.items() if k.startswith("sd.")}
    stages = [tensors[f"stage.{i}"] for i in range(4)]
    return {
        "name": meta["name"],
        "kwargs": json.loads(meta["kwargs"]),
        "sd": sd,
        "input": tensors["input"],
        "features": tensors["features"],
        "stages": stages,
    }


@pytest.fixture(scope="module", params=TAGS)
def ref(request) -> dict:
    data = _load(request.param)
    img_size = tuple(data["input"].shape[-2:])
    model = create_backbone(data["name"], img_size=img_size, **data["kwargs"]).eval()
    model.load_state_dict(model.checkpoint_filter(data["sd"]), strict=True)
    data["model"] = model
    return data


def _states_after_each_step(model, x):
    """[state after step 0, state after step 1, ...] for input x."""
    out = []
    state = model.stem(x)
    for step in model.steps():
        state = step(state)
        out.append(state)
    return out


def test_registered_names_and_normalisation():
    assert {"pvt_v2_b0", "pvt_v2_b1", "pvt_v2_b2"} <= set(list_backbones("pvt_v2*"))
    model = create_backbone("pvt_v2_b0", embed_dims=(8, 8, 8, 8), depths=(1, 1, 1, 1), num_heads=1)
    assert model.mean == (0.485, 0.456, 0.406) and model.std == (0.229, 0.224, 0.225)


def test_state_dict_keys_equal_timm_without_classifier(ref):
    timm_keys = set(ref["sd"])
    assert any(k.startswith("head.") for k in timm_keys)
    assert set(ref["model"].state_dict()) == {k for k in timm_keys if not k.startswith("head.")}
    for k, v in ref["model"].state_dict().items():
        assert v.shape == ref["sd"][k].shape, k


def test_forward_features_equals_timm(ref):
    with torch.no_grad():
        out = ref["model"].forward_features(ref["input"])
    assert out.shape == ref["features"].shape
    assert (out - ref["features"]).abs().max().item() <= TOL


def test_step_view_taps_equal_timm_stage_outputs(ref):
    model, x = ref["model"], ref["input"]
    with torch.no_grad():
        states = _states_after_each_step(model, x)
        final = model.finalize(states[-1])
    assert (final - ref["features"]).abs().max().item() <= TOL
    taps = model.default_taps()
    assert taps[-1] == len(model.steps()) - 1  # the final norm
    B, _, H, W = x.shape
    for stage, (tap, expected) in enumerate(zip(taps, ref["stages"], strict=True)):
        fmap = model.feature_map(states[tap], tap)
        stride = model.tap_stride(tap)
        assert stride == 4 * 2**stage
        # any input size works: maps are ceil(size / stride) (the fixture inputs are no multiple of 32)
        assert fmap.shape == (B, model.tap_channels(tap), math.ceil(H / stride), math.ceil(W / stride))
        assert fmap.shape == expected.shape
        assert (fmap - expected).abs().max().item() <= TOL


def test_step_names_kinds_and_modules(ref):
    model = ref["model"]
    steps = model.steps()
    depths = ref["kwargs"]["depths"]
    assert len(steps) == sum(depths) + 4 + 3  # blocks, 4 stage norms, 3 downsamplings
    # names are submodules, one final norm, non-block steps refuse a bias: test_backbone_contract.py
    for step in steps:
        assert step.name.startswith(f"stages.{step.stage}.")
    kinds = [s.kind for s in steps]
    assert kinds.count("block") == sum(depths)
    assert [s.name for s in steps if s.kind == "transition"] == [
        "stages.0.norm",
        "stages.1.downsample",
        "stages.1.norm",
        "stages.2.downsample",
        "stages.2.norm",
        "stages.3.downsample",
    ]
    assert model.block_steps() == [i for i, s in enumerate(steps) if isinstance(s.module, Block)]


def test_attention_tokens_query_every_position(ref):
    # that a bias must be exactly (N_q, N_kv) and what it does: test_backbone_contract.py
    model, x = ref["model"], ref["input"]
    steps = model.steps()
    with torch.no_grad():
        states = [model.stem(x), *_states_after_each_step(model, x)]
    for i in model.block_steps():
        state, block = states[i], steps[i].module
        n_q, _ = block.attention_tokens(state)
        assert n_q == state.shape[1] * state.shape[2]  # N_kv after spatial reduction: the test below


def test_attention_tokens_follow_spatial_reduction():
    model = create_backbone("pvt_v2_b0", embed_dims=(8, 8, 8, 8), depths=(1, 1, 1, 1), num_heads=1)
    state = torch.zeros(1, 13, 19, 8)
    counts = [model.stages[i].blocks[0].attention_tokens(state) for i in range(4)]
    # sr 8, 4, 2, 1: floor(13/8)*floor(19/8), floor(13/4)*floor(19/4), floor(13/2)*floor(19/2), 13*19
    assert counts == [(247, 2), (247, 12), (247, 54), (247, 247)]
    linear = create_backbone("pvt_v2_b0", embed_dims=8, depths=(1, 1, 1, 1), num_heads=1, linear=True)
    assert linear.stages[0].blocks[0].attention_tokens(state) == (247, 49)


@pytest.fixture(scope="module")
def linear_variant() -> contract.Built:
    return contract.build("pvt_v2_b0", linear=True)


BLOCK_CONTRACT = [
    contract.test_attention_tokens_size_the_bias_exactly,
    contract.test_zero_constant_and_per_query_biases_change_nothing,
    contract.test_bias_changes_the_output_per_image_and_broadcasts,
    contract.test_bias_gets_gradients,
    contract.test_blocks_call_replaceable_norms,
]


@pytest.mark.parametrize("check", BLOCK_CONTRACT, ids=lambda check: check.__name__[len("test_") :])
def test_linear_attention_blocks_keep_the_contract(linear_variant, check):
    """No registered name has the linear variant (pooled keys/values, 49 of them, more than the last stage's
    queries): the contract's block checks run on it here."""
    block = linear_variant.model.stages[3].blocks[0]
    assert block.attn.linear_attn and block.attention_tokens(linear_variant.states[-2]) == (6, 49)
    check(linear_variant)


def test_checkpoint_filter_accepts_original_pvt_names():
    data = _load("sra")
    original = {}
    for k, v in data["sd"].items():  # timm names -> the original PVTv2 release's names
        k = k.replace("mlp.dwconv.", "mlp.dwconv.dwconv.").replace("patch_embed.", "patch_embed1.")
        for i in range(4):
            k = k.replace(f"stages.{i}.downsample.", f"patch_embed{i + 1}.")
            k = k.replace(f"stages.{i}.blocks.", f"block{i + 1}.")
            k = k.replace(f"stages.{i}.norm.", f"norm{i + 1}.")
        original[k] = v
    assert "block2.1.mlp.dwconv.dwconv.weight" in original and "norm4.bias" in original
    model = create_backbone(data["name"], **data["kwargs"]).eval()
    model.load_state_dict(model.checkpoint_filter(original), strict=True)
    with torch.no_grad():
        assert (model.forward_features(data["input"]) - data["features"]).abs().max().item() <= TOL


@pytest.mark.parametrize(
    ("name", "expected"),
    # from timm 1.0.31: sum(p.numel() for p in timm.create_model(name, num_classes=0).parameters())
    [("pvt_v2_b0", 3_409_760), ("pvt_v2_b1", 13_496_000), ("pvt_v2_b2", 24_849_856)],
)
def test_full_size_parameter_counts_equal_timm(name, expected):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = create_backbone(name)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.num_features == 256 if name == "pvt_v2_b0" else model.num_features == 512


def test_bad_per_stage_kwargs_are_config_errors():
    with pytest.raises(ConfigError, match="sr_ratios has 3 entries"):
        PyramidVisionTransformerV2(
            depths=(1, 1, 1, 1), embed_dims=(8, 8, 8, 8), num_heads=1, sr_ratios=(8, 4, 2)
        )
    with pytest.raises(ConfigError, match="not divisible"):
        create_backbone("pvt_v2_b0", embed_dims=(8, 8, 8, 10), depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 4))


def test_layernorm_eps_follow_timm():
    """Below the 1e-4 output tolerance, so checked directly: timm.layers.LayerNorm (1e-6) for the block
    and stage norms, torch's nn.LayerNorm (1e-5) in the patch embeddings and the spatial reduction."""
    model = create_backbone("pvt_v2_b0", embed_dims=(8, 8, 8, 8), depths=(1, 1, 1, 1), num_heads=1)
    eps = {n: m.eps for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    for name, value in eps.items():
        expected = 1e-5 if name.endswith(("patch_embed.norm", "downsample.norm", "attn.norm")) else 1e-6
        assert value == expected, name
    assert eps["stages.0.blocks.0.attn.norm"] == 1e-5 and eps["stages.3.norm"] == 1e-6
