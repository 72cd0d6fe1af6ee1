"""TSN, TAA, bottleneck and the adapter model's exactness at initialisation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from taskadapt.models import MultiTaskModel, create_backbone, get_method
from taskadapt.models.adapters import Bottleneck, TaskAttentionBias, TaskConditioning, TaskScaledNorm

TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 6, "num_heads": 2}
TASKS = ["semseg", "depth", "normals", "edge"]


def tiny_model(method="adapters", tasks=TASKS, **kwargs) -> MultiTaskModel:
    torch.manual_seed(0)
    backbone = create_backbone("vit_tiny_patch16_224", **TINY)
    return get_method(method).build(backbone, tasks, {"semseg": 5}, decoder_channels=16, task_embed_dim=8, **kwargs)


def record_streams(model: MultiTaskModel) -> dict:
    """Make the model keep the expanded stream tensor (T, B, ...) of its next forward in the dict."""
    captured: dict = {}
    original = model.affinity.watch

    def watch(streams):
        captured["z_exp"] = streams
        original(streams)

    model.affinity.watch = watch
    return captured


def perturbed_tiny_model() -> MultiTaskModel:
    """A tiny model whose adapters are no longer the identity (so gradients are not trivial)."""
    model = tiny_model().train()
    with torch.no_grad():
        for p in model.adapter_layers.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_tsn_equals_pretrained_layernorm_at_init():
    ln = nn.LayerNorm(6, eps=1e-6)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    ctx = TaskConditioning()
    tsn = TaskScaledNorm.from_layernorm(ln, cond_dim=4, conditioning=ctx)
    ctx.w = torch.randn(3, 4)  # 3 tasks
    x = torch.randn(3 * 2, 5, 6)  # 3 streams x batch 2
    torch.testing.assert_close(tsn(x), ln(x), rtol=0, atol=1e-6)
    assert set(dict(tsn.named_parameters())) == {"weight", "bias", "film.0.weight", "film.0.bias",
                                                 "film.1.weight", "film.1.bias"}


def test_tsn_scales_each_task_stream_by_its_own_vector():
    ctx = TaskConditioning()
    tsn = TaskScaledNorm(4, cond_dim=2, conditioning=ctx, hidden=2)
    with torch.no_grad():
        tsn.film[0].weight.copy_(torch.eye(2))
        tsn.film[0].bias.zero_()
        tsn.film[1].weight.zero_()
        tsn.film[1].weight[0, 0] = 1.0  # gamma_t[0] = w~_t[0] = w_t[0]
    ctx.w = torch.tensor([[0.0, 0.0], [1.0, 0.0]])  # task 1 doubles channel 0
    x = torch.randn(2 * 3, 4)
    out = tsn(x).view(2, 3, 4)
    ref = torch.nn.functional.layer_norm(x, (4,), eps=1e-6).view(2, 3, 4)
    torch.testing.assert_close(out[0], ref[0])
    torch.testing.assert_close(out[1, :, 0], 2 * ref[1, :, 0])
    torch.testing.assert_close(out[1, :, 1:], ref[1, :, 1:])


def test_taa_bias_is_block_diagonal_with_a_cut_last_block():
    taa = TaskAttentionBias(num_tokens=7, block_size=3, cond_dim=2, num_heads=2, per_head=False)
    with torch.no_grad():
        taa.A.copy_(torch.arange(1, 7 * 3 + 1, dtype=torch.float32).view(1, 7, 3))
    bias = taa(torch.zeros(2, 2), batch=3)
    assert bias.shape == (2 * 3, 1, 7, 7)
    b = bias[0, 0]
    expected = torch.zeros(7, 7)
    for i in range(7):
        start = (i // 3) * 3
        for j in range(3):
            if start + j < 7:
                expected[i, start + j] = taa.A[0, i, j]
    torch.testing.assert_close(b, expected)
    assert b[0, 3] == 0 and b[3, 0] == 0  # nothing off the diagonal blocks
    assert torch.equal(bias[0], bias[5])  # the same bias for every stream while w is equal


def test_taa_modulation_is_per_task_and_zero_at_init():
    taa = TaskAttentionBias(num_tokens=4, block_size=2, cond_dim=3, num_heads=2, per_head=True)
    w = torch.randn(2, 3)
    assert torch.count_nonzero(taa(w, batch=1)) == 0  # A and the modulation start at zero
    with torch.no_grad():
        taa.A.fill_(1.0)
        taa.film.bias[:2].fill_(1.0)  # layout per head: [gamma (b), beta (b)]; head 0 gamma = 1 -> 2 A
    bias = taa(w, batch=1).detach()
    assert bias.shape == (2, 2, 4, 4)
    assert bias[0, 0, 0, 0] == pytest.approx(2.0) and bias[0, 1, 0, 0] == pytest.approx(1.0)


def test_bottleneck_is_identity_at_init():
    bn = Bottleneck(8, ratio=4, norm=nn.LayerNorm(8))
    x = torch.randn(3, 5, 8)
    assert torch.equal(bn(x), x)
    assert bn.down.out_features == 2


@pytest.mark.parametrize("method", ["adapters", "no_taa", "no_tsn", "no_troa"])
def test_adapter_layers_compute_the_pretrained_blocks_at_init(method):
    model = tiny_model(method).eval()
    reference = copy.deepcopy(create_backbone("vit_tiny_patch16_224", **TINY))
    reference.load_state_dict({k: v for k, v in model.backbone.state_dict().items() if "film" not in k},
                              strict=False)
    image = torch.rand(2, 3, 32, 32)
    feats, T = model.encode(image)
    assert len(TASKS) == T
    x = (image - model.pixel_mean) / model.pixel_std
    state = reference.stem(x)
    for i, step in enumerate(reference.steps()):
        state = step(state)
        if i in model.taps:
            expected = reference.feature_map(state, i)
            got = feats[i]
            if i >= model.split:  # adapted taps hold T identical streams at init
                got = got.view(T, 2, *got.shape[1:])
                for t in range(T):
                    torch.testing.assert_close(got[t], expected, rtol=0, atol=1e-5)
            else:
                torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_default_adapter_blocks_are_the_last_quarter():
    model = tiny_model()
    assert model.adapter_steps == [4, 5]  # 6 blocks -> the last ceil(6 / 4) = 2
    assert model.split == 4
    model = tiny_model(adapter_blocks=[3, 5])
    assert model.adapter_steps == [3, 5] and model.split == 3


def test_streams_are_independent():
    """Task t's output depends on nothing in another task's stream (TROA's premise)."""
    model = perturbed_tiny_model()
    with torch.no_grad():
        model.task_embeddings.normal_()
    captured = record_streams(model)
    out = model(torch.rand(2, 3, 32, 32))
    z_exp = captured["z_exp"]
    for t, task in enumerate(TASKS):
        (grad,) = torch.autograd.grad(out[task].square().mean(), z_exp, retain_graph=True)
        for j in range(len(TASKS)):
            if j != t:
                assert torch.count_nonzero(grad[j]) == 0, (task, j)
        assert torch.count_nonzero(grad[t]) > 0


def test_frozen_prefix_runs_without_autograd_and_gets_no_gradient():
    model = tiny_model().train()
    out = model(torch.rand(2, 3, 32, 32))
    sum(o.mean() for o in out.values()).backward()
    prefix = model.backbone.blocks[: model.split]
    assert all(p.grad is None for p in prefix.parameters())
    assert model.backbone.patch_embed.proj.weight.grad is None
    assert model.adapter_layers["4"].bottleneck.up.weight.grad is not None


def test_wrong_adapter_block_index_is_a_clear_error():
    from taskadapt.config import load_config
    from taskadapt.errors import ConfigError
    from taskadapt.models import create_model

    # model code raises ValueError naming its option; the factory names the config key
    with pytest.raises(ValueError, match=r"out of range: .* has 6 blocks \(0..5\)"):
        tiny_model(adapter_blocks=[2, 9])
    cfg = load_config(None, ["model.backbone=vit_tiny_patch16_224", "model.backbone_kwargs={depth: 6}",
                             "data.crop_size=32", "model.adapter_blocks=[2,9]", "data.tasks=[depth]"])
    with pytest.raises(ConfigError, match=r"config key 'model.adapter_blocks': indices \[9\] are out of range"):
        create_model(cfg)


def test_taa_blocks_aligned_to_the_grid_give_the_prefix_tokens_a_block_of_their_own():
    # 1 class token + a 2x2 patch grid, b = grid width 2: blocks {0}, {1, 2}, {3, 4} -- rows of patches
    taa = TaskAttentionBias(num_tokens=5, block_size=2, cond_dim=2, prefix_tokens=1)
    with torch.no_grad():
        taa.A.fill_(1.0)
    support = taa(torch.zeros(1, 2), batch=1)[0, 0] != 0
    expected = torch.zeros(5, 5, dtype=torch.bool)
    for block in ([0], [1, 2], [3, 4]):
        for i in block:
            expected[i, block] = True
    assert torch.equal(support, expected)
    unaligned = TaskAttentionBias(num_tokens=5, block_size=2, cond_dim=2)
    with torch.no_grad():
        unaligned.A.fill_(1.0)
    assert unaligned(torch.zeros(1, 2), batch=1)[0, 0, 1, 2] == 0  # without: token 1 and 2 sit in two blocks
    with pytest.raises(ValueError, match="prefix tokens"):
        TaskAttentionBias(num_tokens=5, block_size=2, cond_dim=2, prefix_tokens=5)
