"""The backbone contract (src/taskadapt/models/backbones/base.py), checked for every registered backbone.

Every test is parametrised over ``list_backbones()``: a newly registered backbone is checked without
touching this file. Each model is built small -- its family's architecture overrides in ``SMALL`` (a
family not listed there is built at full size) at a 2 x 3 grid of its coarsest tap stride -- once per
test process, with seeded random weights pushed far from their init (so LayerScale's 1e-5, zero biases and
small attention logits hide nothing); what needs no forward pass is also checked on the full-size default
architecture, built on the meta device (no memory). Parity with timm and what only one family has stay in
test_backbone_<family>.py.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from taskadapt.models.backbones import Backbone, create_backbone, list_backbones

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads cost more than they give

NAMES = list_backbones()
#: family -> architecture overrides that make a model small (create_backbone(name, **kw), as in timm);
#: two heads so per-head biases mean something, stages deep enough for shifted and merged Swin windows
SMALL: dict[str, dict] = {
    "vit": {"depth": 4, "embed_dim": 32, "num_heads": 2},
    "swin": {"embed_dim": 8, "depths": (2, 2, 1, 1), "num_heads": (2, 2, 2, 2)},
    "pvt_v2": {"embed_dims": (8, 16, 24, 32), "depths": (1, 2, 1, 1), "num_heads": (2, 2, 2, 2)},
}
B = 2  # batch of the test images
STEP_KINDS = {"block", "transition", "norm"}


@dataclass
class Built:
    name: str
    full: Backbone  # the registered default architecture, on the meta device
    kwargs: dict  # img_size and the SMALL overrides the small model is built with
    model: Backbone  # small, eval, random weights
    x: torch.Tensor  # (B, 3, H, W) at the small model's img_size
    states: list[torch.Tensor]  # [stem(x), state after step 0, after step 1, ...]
    out: torch.Tensor  # forward_features(x)


def small_kwargs(full: Backbone) -> dict:
    stride = max(full.tap_stride(t) for t in full.default_taps())
    return {"img_size": (2 * stride, 3 * stride), **SMALL.get(full.family, {})}


def build_small(name: str, kwargs: dict, seed: int = 0) -> Backbone:
    """``create_backbone(name, **kwargs)`` with every parameter moved by N(0, 0.2^2) noise (seeded)."""
    torch.manual_seed(seed)
    model = create_backbone(name, **kwargs).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def run_steps(model: Backbone, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        states = [model.stem(x)]
        for step in model.steps():
            states.append(step(states[-1]))
    return states


def build(name: str, **overrides) -> Built:
    """Backbone ``name`` built small (``overrides`` added to its SMALL kwargs), its test images and states."""
    with torch.device("meta"):
        full = create_backbone(name)
    kwargs = {**small_kwargs(full), **overrides}
    model = build_small(name, kwargs)
    x = torch.randn(B, 3, *kwargs["img_size"], generator=torch.Generator().manual_seed(1))
    states = run_steps(model, x)
    with torch.no_grad():
        out = model.forward_features(x)
    return Built(name, full, kwargs, model, x, states, out)


@pytest.fixture(scope="module")
def cache() -> dict[str, Built]:
    return {}


@pytest.fixture(params=NAMES)
def bb(request: pytest.FixtureRequest, cache: dict[str, Built]) -> Built:
    """Backbone ``request.param``, built once per test process (module-scoped cache)."""
    if request.param not in cache:
        cache[request.param] = build(request.param)
    return cache[request.param]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def blocks(bb: Built):
    """(step index, step, block input state, block output state) of every block."""
    steps = bb.model.steps()
    return [(i, steps[i], bb.states[i], bb.states[i + 1]) for i in bb.model.block_steps()]


def expected_map_shape(model: Backbone, step_index: int, batch: int, size: tuple[int, int]) -> tuple:
    stride = model.tap_stride(step_index)
    return (batch, model.tap_channels(step_index), math.ceil(size[0] / stride), math.ceil(size[1] / stride))


# -- what a backbone is --------------------------------------------------------------------------------------
def test_name_family_and_class(bb: Built) -> None:
    model, full = bb.model, bb.full
    assert isinstance(model, Backbone) and isinstance(model, nn.Module)
    assert model.name == full.name == bb.name  # the registered name, also with architecture overrides
    assert isinstance(model.family, str) and model.family and model.family != Backbone.family
    assert type(model) is type(full) and model.family == full.family == type(model).family


def test_img_size_is_an_hw_pair(bb: Built) -> None:
    model, full = bb.model, bb.full
    assert model.img_size == bb.kwargs["img_size"] and isinstance(model.img_size, tuple)
    h, w = full.img_size
    assert isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0
    # the default size fits the patch grid, and the stem takes an image of it (the adapter model's dry run)
    first = full.tap_stride(full.default_taps()[0])
    assert h % first == 0 and w % first == 0
    assert full.stem(torch.zeros(1, 3, h, w, device="meta")).shape[0] == 1
    side = bb.kwargs["img_size"][0]
    with torch.device("meta"):
        square = create_backbone(bb.name, **{**bb.kwargs, "img_size": side})
    assert square.img_size == (side, side)  # an int is a square size


def test_mean_and_std(bb: Built) -> None:
    for model in (bb.model, bb.full):
        for values in (model.mean, model.std):
            assert isinstance(values, tuple) and len(values) == 3
            assert all(isinstance(v, float) for v in values)
        assert all(0 < m < 1 for m in model.mean) and all(0 < s <= 1 for s in model.std)
    # architecture overrides keep the normalisation the pretrained weights expect
    assert (bb.model.mean, bb.model.std) == (bb.full.mean, bb.full.std)


# -- the step view -------------------------------------------------------------------------------------------
def test_steps_are_named_submodules_in_order(bb: Built) -> None:
    model = bb.model
    steps = model.steps()
    assert steps and all(step.kind in STEP_KINDS for step in steps)
    names = [step.name for step in steps]
    assert len(set(names)) == len(names)
    for step in steps:  # the name is the dotted parameter prefix of the step's module
        assert model.get_submodule(step.name) is step.module
    kinds = [step.kind for step in steps]
    assert kinds[-1] == "norm" and kinds.count("norm") == 1  # the final norm, last
    stages = [step.stage for step in steps]
    assert stages[0] >= 0 and stages == sorted(stages)
    # no parameter belongs to two steps (the adapter model splits parameters by step)
    owned = [id(p) for step in steps for p in step.module.parameters()]
    assert len(owned) == len(set(owned))
    # every call gives the same steps, in a fresh list the caller may change
    steps.clear()
    again = model.steps()
    assert [s.name for s in again] == names
    assert all(a.module is b.module for a, b in zip(again, model.steps(), strict=True))


def test_block_steps_and_block_modules(bb: Built) -> None:
    model = bb.model
    steps = model.steps()
    assert model.block_steps() == [i for i, s in enumerate(steps) if s.kind == "block"]
    assert model.block_steps()
    keys = []
    for i, step, state, _ in blocks(bb):
        block = step.module
        # timm's norm1/norm2 LayerNorms (the adapter model swaps them for TSN) and attn.num_heads
        for norm in (block.norm1, block.norm2):
            assert isinstance(norm, nn.LayerNorm) and norm.normalized_shape == (model.tap_channels(i),)
        assert isinstance(block.attn.num_heads, int) and block.attn.num_heads >= 1
        n_q, n_kv = block.attention_tokens(state)
        assert isinstance(n_q, int) and isinstance(n_kv, int) and n_q >= 1 and n_kv >= 1
        keys.append(n_kv)
    # the test images give every block more than one key to weigh, so the bias tests below have teeth
    assert min(keys) > 1


def test_stem_steps_finalize_is_forward_features(bb: Built) -> None:
    model = bb.model
    with torch.no_grad():
        for i, step in enumerate(model.steps()):  # a step is a function of its input: no hidden state
            assert torch.equal(step(bb.states[i]), bb.states[i + 1]), step.name
        final = model.finalize(bb.states[-1])
        assert max_diff(final, bb.out) <= 1e-6
        assert max_diff(model(bb.x), bb.out) <= 1e-6  # forward == forward_features
        # images are independent: task streams are folded into the batch
        single = model.forward_features(bb.x[1:])
    assert bb.out.shape[0] == B
    assert max_diff(single, bb.out[1:]) <= 1e-4 * (1 + bb.out.abs().max().item())


def test_feature_map_after_every_step(bb: Built) -> None:
    model = bb.model
    for i in range(len(model.steps())):
        fmap = model.feature_map(bb.states[i + 1], i)
        assert isinstance(model.tap_stride(i), int) and model.tap_stride(i) >= 1
        assert fmap.shape == expected_map_shape(model, i, B, model.img_size), model.steps()[i].name


def test_default_taps(bb: Built) -> None:
    for model in (bb.model, bb.full):
        taps = model.default_taps()
        blocks_ = model.block_steps()
        assert len(taps) == 4 and taps == sorted(taps)
        assert all(isinstance(t, int) and 0 <= t < len(model.steps()) for t in taps)
        assert taps[0] >= blocks_[0] and taps[-1] >= blocks_[-1]  # the last tap has seen every block
        strides = [model.tap_stride(t) for t in taps]
        assert strides == sorted(strides)  # coarser with depth (or constant)
        assert model.num_features == model.tap_channels(taps[-1])


def test_non_block_steps_refuse_attn_bias(bb: Built) -> None:
    steps = bb.model.steps()
    others = [i for i, s in enumerate(steps) if s.kind != "block"]
    assert others  # at least the final norm
    for i in others:
        with pytest.raises(ValueError, match="takes no attention bias"):
            steps[i](bb.states[i], attn_bias=torch.zeros(1))


# -- attn_bias: an additive bias on the pre-softmax logits, broadcastable to (B, heads, N_q, N_kv) ------------
def test_attention_tokens_size_the_bias_exactly(bb: Built) -> None:
    with torch.no_grad():
        for _, step, state, plain in blocks(bb):
            n_q, n_kv = step.module.attention_tokens(state)
            heads = step.module.attn.num_heads
            assert step(state, attn_bias=torch.zeros(B, heads, n_q, n_kv)).shape == plain.shape
            with pytest.raises(RuntimeError):  # one key too many
                step(state, attn_bias=torch.zeros(1, 1, n_q, n_kv + 1))
            with pytest.raises(RuntimeError):  # one query too many
                step(state, attn_bias=torch.zeros(1, 1, n_q + 1, n_kv))


def test_zero_constant_and_per_query_biases_change_nothing(bb: Built) -> None:
    """softmax over the keys ignores what is the same for every key of a query: a zero bias, a constant, and
    a bias that varies along the queries only (which also fixes the orientation: (..., N_q, N_kv))."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, step, state, plain in blocks(bb):
            n_q, n_kv = step.module.attention_tokens(state)
            heads = step.module.attn.num_heads
            tol = 1e-5 * (1 + plain.abs().max().item())
            assert max_diff(step(state, attn_bias=torch.zeros(B, heads, n_q, n_kv)), plain) <= tol
            assert max_diff(step(state, attn_bias=torch.full((B, heads, n_q, n_kv), 3.0)), plain) <= tol
            per_query = 3 * torch.randn(B, heads, n_q, 1, generator=g)
            assert max_diff(step(state, attn_bias=per_query.expand(-1, -1, -1, n_kv)), plain) <= tol
            if n_kv > 1:  # varying along the keys it does change the output
                per_key = 3 * torch.randn(B, heads, 1, n_kv, generator=g)
                assert max_diff(step(state, attn_bias=per_key.expand(-1, -1, n_q, -1)), plain) > 1e-3


def test_bias_changes_the_output_per_image_and_broadcasts(bb: Built) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _, step, state, plain in blocks(bb):
            block = step.module
            n_q, n_kv = block.attention_tokens(state)
            heads = block.attn.num_heads
            tol = 1e-5 * (1 + plain.abs().max().item())
            bias = torch.randn(B, heads, n_q, n_kv, generator=g)
            out = step(state, attn_bias=bias)
            assert torch.equal(out, block(state, attn_bias=bias))  # the Step passes the bias through
            if n_kv > 1:  # a single key gets softmax weight 1 whatever the bias
                assert max_diff(out, plain) > 1e-3
            # image b gets bias[b]: a zero bias for image 1 leaves it alone
            mixed = torch.cat([bias[:1], torch.zeros_like(bias[1:])])
            out_mixed = step(state, attn_bias=mixed)
            assert max_diff(out_mixed[1:], plain[1:]) <= tol
            assert max_diff(out_mixed[:1], out[:1]) <= tol
            # broadcastable forms: (heads, N_q, N_kv), (N_q, N_kv), (1, 1, N_q, N_kv)
            per_head = torch.randn(heads, n_q, n_kv, generator=g)
            full = step(state, attn_bias=per_head.expand(B, -1, -1, -1))
            assert max_diff(step(state, attn_bias=per_head), full) <= tol
            shared = torch.randn(n_q, n_kv, generator=g)
            full = step(state, attn_bias=shared.expand(B, heads, -1, -1))
            assert max_diff(step(state, attn_bias=shared), full) <= tol
            assert max_diff(step(state, attn_bias=shared[None, None]), full) <= tol
            assert max_diff(step(state, attn_bias=shared[None, None].expand(B, 1, -1, -1)), full) <= tol


def test_bias_gets_gradients(bb: Built) -> None:
    """TAA learns the bias: gradients reach it through every block (with more than one key to weigh)."""
    checked = 0
    for _, step, state, _ in blocks(bb):
        n_q, n_kv = step.module.attention_tokens(state)
        bias = torch.zeros(1, step.module.attn.num_heads, n_q, n_kv, requires_grad=True)
        (grad,) = torch.autograd.grad(step(state, attn_bias=bias).square().mean(), bias)  # (no .grad on the model)
        assert grad.shape == bias.shape, step.name
        if n_kv > 1:  # softmax over a single key is 1 whatever its bias: no gradient
            assert grad.abs().sum() > 0, step.name
            checked += 1
    assert checked


def test_blocks_call_replaceable_norms(bb: Built) -> None:
    """The adapter model swaps norm1/norm2 (TSN) for modules with the call ``norm(x) -> x``: blocks must call
    the submodules, once each per forward, on tokens (B, N, C), and use what they return."""
    model = copy.deepcopy(bb.model).requires_grad_(False)
    calls: dict[str, list[tuple[int, ...]]] = {}

    class Recorder(nn.Module):
        """The wrapped norm plus a zero shift, whose gradient shows that the output is used."""

        def __init__(self, inner: nn.LayerNorm, key: str):
            super().__init__()
            self.inner, self.key = inner, key
            self.shift = nn.Parameter(torch.zeros(inner.normalized_shape))

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            calls.setdefault(self.key, []).append(tuple(t.shape))
            return self.inner(t) + self.shift

    recorders = []
    for i in model.block_steps():
        step = model.steps()[i]
        for attr in ("norm1", "norm2"):
            recorders.append(Recorder(getattr(step.module, attr), f"{step.name}.{attr}"))
            setattr(step.module, attr, recorders[-1])
    out = model.forward_features(bb.x)
    assert max_diff(out, bb.out) <= 1e-6  # (autograd on may pick other attention kernels)
    assert set(calls) == {r.key for r in recorders}
    for r in recorders:
        shapes = calls[r.key]
        assert len(shapes) == 1 and len(shapes[0]) == 3 and shapes[0][0] == B, r.key
        assert shapes[0][2] == r.inner.normalized_shape[0], r.key
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    (out * weights).sum().backward()
    for r in recorders:  # the block computes with what the replacement returns
        assert r.shift.grad is not None and r.shift.grad.abs().sum() > 0, r.key


# -- weights: parameter names, checkpoint filter, pretrained loading --------------------------------------------
CLASSIFIER = ("head.weight", "head.bias", "head.fc.weight", "head.fc.bias", "fc_norm.weight", "fc_norm.bias")


def with_classifier(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {**sd, **{k: torch.randn(10, 4) if k.endswith("weight") else torch.randn(10) for k in CLASSIFIER}}


def test_checkpoint_filter_and_state_dict_round_trip(bb: Built) -> None:
    sd = bb.model.state_dict()
    assert sd and not any(k.startswith(("head.", "fc_norm.")) for k in sd)  # no classifier
    own = bb.model.checkpoint_filter(dict(sd))
    assert list(own) == list(sd)  # its own weights pass unchanged: nothing dropped, renamed or resized
    assert all(torch.equal(own[k], sd[k]) for k in sd)
    timm_like = with_classifier(sd)
    assert list(bb.model.checkpoint_filter(timm_like)) == list(sd)  # the classifier is dropped...
    assert set(timm_like) == set(sd) | set(CLASSIFIER)  # ...from a new dict
    # a strict load into another model of the architecture makes it compute the same
    other = build_small(bb.name, bb.kwargs, seed=1)
    with torch.no_grad():
        assert max_diff(other.forward_features(bb.x), bb.out) > 1e-3
        other.load_state_dict(other.checkpoint_filter(timm_like), strict=True)
        assert max_diff(other.forward_features(bb.x), bb.out) <= 1e-6
    assert all(torch.equal(v, sd[k]) for k, v in other.state_dict().items())


def test_pretrained_file_loads_through_create_backbone(bb: Built, tmp_path: Path) -> None:
    """A timm-style checkpoint file (classifier included) -> create_backbone(pretrained=...) computes the same."""
    sd = with_classifier({k: v.contiguous() for k, v in bb.model.state_dict().items()})
    path = tmp_path / "weights.safetensors"
    save_file(sd, str(path))
    model = create_backbone(bb.name, pretrained=str(path), **bb.kwargs).eval()
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert max_diff(model(bb.x), bb.out) <= 1e-6
    # (files that do not fit, other formats, the hub: test_pretrained.py)


def test_float64_matches_float32(bb: Built) -> None:
    model = copy.deepcopy(bb.model).double()
    with torch.no_grad():
        out64 = model(bb.x.double())
    assert out64.dtype == torch.float64
    assert max_diff(out64.float(), bb.out) <= 1e-4 * (1 + bb.out.abs().max().item())
