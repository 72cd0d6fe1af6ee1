"""create_model for every method and backbone family: what trains, what is frozen, shapes, errors."""

from __future__ import annotations

import pytest
import torch
from conftest import plain_backbone

from taskadapt.cli import main
from taskadapt.config import load_config
from taskadapt.errors import ConfigError
from taskadapt.losses import MultiTaskLoss
from taskadapt.models import SingleTaskEnsemble, create_model
from taskadapt.models.adapters import TaskScaledNorm
from taskadapt.models.lora import LoRALinear, add_lora
from taskadapt.models.methods import list_methods
from taskadapt.models.params import count_trainable, parameter_table

TINY_VIT = ["data.crop_size=32", "model.backbone_kwargs={patch_size: 8, embed_dim: 32, depth: 6, num_heads: 2}",
            "model.decoder_channels=16", "model.task_embed_dim=8"]
TINY_SWIN = ["data.crop_size=64", "model.backbone=swin_tiny_patch4_window7_224",
             "model.backbone_kwargs={embed_dim: 16, depths: [1, 1, 2, 2], num_heads: [1, 2, 2, 4], window_size: 4}",
             "model.decoder_channels=16", "model.task_embed_dim=8"]
TINY_DINO = ["data.crop_size=28", "model.backbone=vit_small_patch14_reg4_dinov2",  # LayerScale, 4 registers
             "model.backbone_kwargs={embed_dim: 24, depth: 4, num_heads: 2}",
             "model.decoder_channels=16", "model.task_embed_dim=8"]
TINY_PVT = ["data.crop_size=64", "model.backbone=pvt_v2_b0",
            "model.backbone_kwargs={embed_dims: [16, 16, 32, 32], depths: [1, 1, 1, 2], num_heads: [1, 1, 2, 2]}",
            "model.decoder_channels=16", "model.task_embed_dim=8"]


def make(method="adapters", extra=(), base=TINY_VIT):
    torch.manual_seed(0)
    return create_model(load_config(None, [*base, f"model.method={method}", *extra]))


def batch(size=32, B=2):
    g = torch.Generator().manual_seed(1)
    return {"image": torch.rand(B, 3, size, size, generator=g),
            "semseg": torch.randint(0, 9, (B, size, size), generator=g),
            "depth": torch.rand(B, 1, size, size, generator=g) + 1,
            "normals": torch.nn.functional.normalize(torch.randn(B, 3, size, size, generator=g), dim=1),
            "edge": (torch.rand(B, 1, size, size, generator=g) > 0.9).float()}


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("base", "size"), [(TINY_VIT, 32), (TINY_DINO, 28)], ids=["vit", "dinov2_reg4"])
@pytest.mark.parametrize("method", list_methods())
def test_every_method_predicts_every_task_at_input_resolution(method, base, size):
    model = make(method, base=base).train()
    data = batch(size)
    out = model(data["image"])
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "semseg": (2, 9, size, size), "depth": (2, 1, size, size), "normals": (2, 3, size, size),
        "edge": (2, 1, size, size)}
    losses = MultiTaskLoss(model.tasks)(out, data)
    losses.total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)  # everything declared trainable gets a gradient
    assert torch.isfinite(losses.total)


def test_trainable_sets_per_method():
    names = {m: trainable_names(make(m)) for m in ("adapters", "frozen_heads", "mtl_finetune", "lora", "no_tsn")}
    decoder_heads = {n for n in names["frozen_heads"]}
    assert all(n.startswith(("decoder.", "heads.")) for n in decoder_heads)
    assert {n for n in names["lora"] if not n.startswith(("decoder.", "heads."))} == {
        n for n in names["lora"] if "lora_" in n}
    assert len([n for n in names["lora"] if "lora_A" in n]) == 2 * 6  # qkv and proj of 6 blocks
    ours = names["adapters"]
    assert "task_embeddings" in ours
    assert not any(n.startswith("backbone.blocks.0.") for n in ours)  # the prefix is frozen
    assert not any(n.endswith(("attn.qkv.weight", "mlp.fc1.weight")) for n in ours)  # pretrained weights frozen
    assert "backbone.blocks.5.norm1.film.1.weight" in ours  # TSN in adapter blocks
    assert not any(".norm1.film" in n or ".norm2.film" in n or "bottleneck.norm.film" in n for n in names["no_tsn"])
    assert any(".taa.film" in n for n in names["no_tsn"])
    assert all(n.startswith("backbone.") or n.startswith(("decoder.", "heads.")) for n in names["mtl_finetune"])
    # everything trains except the final norm, which sits after the last decoder tap and is unused
    assert "backbone.norm.weight" not in names["mtl_finetune"]
    assert len(names["mtl_finetune"]) == len(list(make("mtl_finetune").parameters())) - 2


def test_train_block_weights_unfreezes_only_the_adapter_blocks():
    names = trainable_names(make("adapters", ["model.train_block_weights=true"]))
    assert "backbone.blocks.5.attn.qkv.weight" in names
    assert "backbone.blocks.0.attn.qkv.weight" not in names


def test_stl_is_one_independent_model_per_task():
    model = make("stl")
    assert isinstance(model, SingleTaskEnsemble)
    assert model.tasks == ["semseg", "depth", "normals", "edge"]
    assert count_trainable(model) > 3 * count_trainable(make("mtl_finetune"))
    out = model(batch()["image"])
    assert out["semseg"].shape == (2, 9, 32, 32)


def test_lora_equals_the_base_layer_at_init_and_keeps_names():
    base = torch.nn.Linear(6, 4)
    lora = LoRALinear(base, rank=2, alpha=4.0)
    x = torch.randn(3, 6)
    torch.testing.assert_close(lora(x), base(x))
    assert set(dict(lora.named_parameters())) == {"weight", "bias", "lora_A", "lora_B"}
    with torch.no_grad():
        lora.lora_B.fill_(1.0)
    assert not torch.allclose(lora(x), base(x))
    model = torch.nn.Module()
    model.attn = torch.nn.Module()
    model.attn.qkv, model.attn.proj, model.mlp = torch.nn.Linear(4, 12), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    assert add_lora(model) == 2 and type(model.mlp) is torch.nn.Linear


@pytest.mark.parametrize("base", [TINY_SWIN, TINY_PVT], ids=["swin", "pvt_v2"])
def test_adapters_on_pyramid_backbones_are_exact_at_init(base):
    model = make("adapters", base=base).eval()
    reference = plain_backbone(model)  # TSN undone: plain LayerNorms with the same weights
    image = torch.rand(2, 3, 64, 64)
    feats, T = model.encode(image)
    state = reference.stem((image - model.pixel_mean) / model.pixel_std)
    for i, step in enumerate(reference.steps()[: model.last_step + 1]):
        state = step(state)
        if i in model.taps:
            expected = reference.feature_map(state, i)
            got = feats[i].view(T, 2, *feats[i].shape[1:])[-1] if i >= model.split else feats[i]
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    out = model(image)
    assert out["normals"].shape == (2, 3, 64, 64)


def test_default_adapters_follow_the_paper_figure_on_swin_small():
    from taskadapt.models import create_backbone
    from taskadapt.models.methods.adapters import default_adapter_blocks

    backbone = create_backbone("swin_small_patch4_window7_224")
    steps, blocks = backbone.steps(), backbone.block_steps()
    names = [steps[blocks[k]].name for k in default_adapter_blocks(backbone)]
    assert names == [f"layers.2.blocks.{j}" for j in range(14, 18)] + ["layers.3.blocks.0", "layers.3.blocks.1"]
    backbone = create_backbone("pvt_v2_b2")
    steps, blocks = backbone.steps(), backbone.block_steps()
    assert {steps[blocks[k]].stage for k in default_adapter_blocks(backbone)} == {3}


def test_swin_adapter_model_uses_the_window_for_taa():
    model = make("adapters", base=TINY_SWIN)
    steps = model.backbone.steps()
    assert [steps[i].name for i in model.adapter_steps] == ["layers.3.blocks.0", "layers.3.blocks.1"]
    assert model.task_embeddings.shape[1] == 8  # explicit task_embed_dim wins over window^3
    taa = model.adapter_layers[str(model.adapter_steps[0])].taa
    assert taa.num_tokens == 2 * 2 and taa.block_size == 2  # last stage 2x2 map: the window shrinks to it


def test_taa_on_spatially_reduced_attention_is_a_clear_error():
    with pytest.raises(ConfigError, match="TAA needs square attention"):
        make("adapters", ["model.adapter_blocks=[0]"], base=TINY_PVT)
    make("no_taa", ["model.adapter_blocks=[0]"], base=TINY_PVT)  # fine without TAA


def test_bad_backbone_kwargs_are_a_config_error():
    with pytest.raises(ConfigError, match="model.backbone_kwargs"):
        make("adapters", ["model.backbone_kwargs={depthh: 2}"])


def test_parameter_table_and_params_command(capsys):
    rows = {r.component: r for r in parameter_table(make("adapters"))}
    assert rows["backbone prefix"].trainable == 0 and rows["backbone prefix"].frozen > 0
    assert rows["adapter blocks (pretrained)"].trainable == 0
    assert rows["TSN"].trainable > 0 and rows["TAA"].trainable > 0 and rows["heads"].trainable > 0
    assert main(["params", *TINY_VIT]) == 0
    printed = capsys.readouterr().out
    share = float(printed.split("trainable share relative to mtl_finetune")[1].split(":")[1].split("%")[0])
    assert 0 < share < 100
    assert "TAA" in printed and "bottleneck" in printed


def test_every_tsn_offset_and_embedding_trains_without_weight_decay():
    from taskadapt.train.trainer import param_groups

    cfg = load_config(None, [*TINY_VIT, "model.tsn.task_offset=true"])
    model = create_model(cfg)
    decay = {id(p): g["weight_decay"] for g in param_groups(model, cfg) for p in g["params"]}
    offsets = [n for n, p in model.named_parameters() if n.endswith("task_offset")]
    assert any(n.startswith("adapter_layers.") for n in offsets) and any(n.startswith("backbone.") for n in offsets)
    named = dict(model.named_parameters())
    for n in [*offsets, "task_embeddings"]:
        assert decay[id(named[n])] == 0.0, n
    assert decay[id(named["heads.semseg.out.weight"])] == cfg.train.weight_decay > 0
    cfg = load_config(None, [*TINY_VIT, "model.method=mtl_finetune"])  # the backbone's embeddings train here
    model = create_model(cfg)
    decay = {id(p): g["weight_decay"] for g in param_groups(model, cfg) for p in g["params"]}
    named = dict(model.named_parameters())
    assert decay[id(named["backbone.pos_embed"])] == decay[id(named["backbone.cls_token"])] == 0.0
    assert decay[id(named["backbone.blocks.0.attn.qkv.weight"])] == cfg.train.weight_decay


def test_each_component_counts_exactly_its_own_parameters():
    """The network names its components by parameter identity: TSN (in the adapter blocks' norms), LoRA
    (the prefix's factors), TAA, bottlenecks and task embeddings each hold exactly their modules' weights."""
    from taskadapt.models.adapters import TaskScaledNorm
    from taskadapt.models.lora import LoRALinear

    model = make("adapters", ["model.prefix_lora=true"])
    rows = {r.component: r for r in parameter_table(model)}
    numel = lambda ps: sum(p.numel() for p in ps)  # noqa: E731
    tsn = [m for m in model.backbone.modules() if isinstance(m, TaskScaledNorm)]
    lora = [m for m in model.backbone.modules() if isinstance(m, LoRALinear)]
    assert tsn and lora
    assert rows["TSN"].trainable + rows["TSN"].frozen == numel(p for m in tsn for p in m.parameters())
    assert rows["LoRA"].trainable == numel(p for m in lora for p in (m.lora_A, m.lora_B))
    layers = list(model.adapter_layers.values())
    assert rows["TAA"].trainable == numel(p for layer in layers for p in layer.taa.parameters())
    assert rows["bottleneck"].trainable == numel(p for layer in layers for p in layer.bottleneck.parameters())
    assert rows["task embeddings"].trainable == model.task_embeddings.numel()
    assert sum(r.total for r in rows.values()) == numel(model.parameters()) and "other" not in rows


@pytest.mark.parametrize("method", ["adapters", "lora", "frozen_heads"])
def test_per_task_decoder_with_the_shared_weights_equals_the_shared_decoder(method):
    shared = make(method).eval()
    per_task = make(method, ["model.decoder=per_task"]).eval()
    state = shared.state_dict()
    for task in per_task.tasks:  # every task's decoder gets the shared decoder's weights
        state.update({f"decoders.{task}.{k}": v for k, v in shared.decoder.state_dict().items()})
    state = {k: v for k, v in state.items() if not k.startswith("decoder.")}
    per_task.load_state_dict(state, strict=True)
    image = batch()["image"]
    with torch.no_grad():
        a, b = shared(image), per_task(image)
    assert all(torch.allclose(a[t], b[t], atol=1e-5) for t in a)
    # parameters: one decoder more per extra task, counted as trainable
    decoder = sum(p.numel() for p in shared.decoder.parameters())
    assert count_trainable(per_task) == count_trainable(shared) + (len(shared.tasks) - 1) * decoder
    rows = {r.component: r for r in parameter_table(per_task)}
    assert rows["decoder"].trainable == len(shared.tasks) * decoder


def test_per_task_decoders_are_independent():
    model = make("adapters", ["model.decoder=per_task"]).eval()
    image = batch()["image"]
    with torch.no_grad():
        before = model(image)
        for p in model.decoders["depth"].parameters():
            p.add_(0.1)
        after = model(image)
    assert not torch.allclose(before["depth"], after["depth"])
    assert all(torch.equal(before[t], after[t]) for t in model.tasks if t != "depth")


def test_unknown_decoder_layout_is_a_config_error():
    with pytest.raises(ConfigError, match="model.decoder.*per_task"):
        load_config(None, ["model.decoder=separate"])


def test_task_embedding_scale_changes_nothing_at_init_but_the_conditioning():
    small, unit = make("adapters"), make("adapters", ["model.task_embed_std=1.0"])
    assert 0.8 < unit.task_embeddings.std().item() < 1.2
    assert torch.allclose(unit.task_embeddings, small.task_embeddings * 50)  # the same draw, scaled
    image = batch()["image"]
    with torch.no_grad():  # every task path starts at zero: the outputs do not depend on the scale
        a, b = small.eval()(image), unit.eval()(image)
    assert all(torch.allclose(a[t], b[t], atol=1e-5) for t in a)
    with pytest.raises(ConfigError, match="task_embed_std"):
        load_config(None, ["model.task_embed_std=0"])


def test_separable_decoder_predicts_the_same_shapes_with_fewer_weights():
    full, separable = make("frozen_heads"), make("frozen_heads", ["model.decoder_conv=separable"])
    image = batch()["image"]
    with torch.no_grad():
        a, b = full.eval()(image), separable.eval()(image)
    assert {t: v.shape for t, v in a.items()} == {t: v.shape for t, v in b.items()}
    convs = [m for m in separable.decoder.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs and all(m.groups == m.in_channels for m in convs)  # every 3x3 is depthwise
    c = 16  # TINY_VIT's decoder channels: each of the 5 decoder and 4 head 3x3 convs drops c*c*9 - (c*9 + c*c)
    assert count_trainable(full) - count_trainable(separable) == 9 * (c * c * 9 - (c * 9 + c * c))
    with pytest.raises(ConfigError, match="model.decoder_conv.*separable"):
        load_config(None, ["model.decoder_conv=sparse"])


def test_prefix_lora_adapts_the_shared_prefix_and_starts_exact():
    plain, adapted = make("adapters"), make("adapters", ["model.prefix_lora=true"])
    prefix = adapted.backbone.steps()[:adapted.split]
    wrapped = [m for st in prefix for m in st.module.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 2 * sum(1 for st in prefix if hasattr(st.module, "attn"))  # qkv and proj
    later = [m for st in adapted.backbone.steps()[adapted.split:] for m in st.module.modules()]
    assert not any(isinstance(m, LoRALinear) for m in later)  # the adapter blocks keep their own layers
    added = trainable_names(adapted) - trainable_names(plain)
    assert added and all("lora_" in n for n in added)
    assert not adapted._prefix_is_frozen()
    plain.load_state_dict(adapted.state_dict(), strict=False)  # the same draw of every shared weight
    image = batch()["image"]
    with torch.no_grad():
        a, b = plain.eval()(image), adapted.eval()(image)
    assert all(torch.allclose(a[t], b[t], atol=1e-6) for t in a)  # LoRA's B starts at zero
    adapted.train()
    data = batch()
    loss = MultiTaskLoss(adapted.tasks)(adapted(data["image"]), data).total
    loss.backward()
    assert all(m.lora_A.grad is not None for m in wrapped)
    assert any(m.lora_B.grad.abs().sum() > 0 for m in wrapped)
    for method in ("lora", "frozen_heads"):  # methods without adapter layers: the key changes nothing
        assert trainable_names(make(method, ["model.prefix_lora=true"])) == trainable_names(make(method))


def test_learned_resampling_starts_as_pooling_and_nearest_upsampling():
    from taskadapt.models.decoder import LevelResample

    x = torch.arange(64.0).view(1, 1, 8, 8)
    down = LevelResample(1, tap_stride=8, level_stride=32)  # 8x8 tokens -> the stride-32 level, 2x2
    torch.testing.assert_close(down(x, (2, 2)), torch.nn.functional.avg_pool2d(x, 4))  # every token counts
    up = LevelResample(1, tap_stride=8, level_stride=4)
    torch.testing.assert_close(up(x, (16, 16)), x.repeat_interleave(2, -1).repeat_interleave(2, -2))
    assert LevelResample(1, 8, 8).op is None and LevelResample(1, 8, 12).op is None  # nothing to learn
    assert down(torch.ones(1, 1, 3, 3), (1, 1)).shape == (1, 1, 1, 1)  # smaller than the window: bilinear
    model = make("adapters", ["model.decoder_resample=learned"])
    ops = [r.op for r in model.decoder.resample]
    assert [type(op).__name__ if op is not None else None for op in ops] == [
        "ConvTranspose2d", None, "Conv2d", "Conv2d"]  # taps at stride 8 placed at 4, 8, 16, 32
    data = batch()
    MultiTaskLoss(model.tasks)(model.train()(data["image"]), data).total.backward()
    assert all(op.weight.grad is not None and op.weight.grad.abs().sum() > 0 for op in ops if op is not None)
    with pytest.raises(ConfigError, match="model.decoder_resample"):
        load_config(None, ["model.decoder_resample=nearest"])


def test_taa_align_to_grid_uses_the_backbone_prefix_tokens():
    aligned = make("adapters", ["model.taa.align_to_grid=true"], base=TINY_DINO)  # 1 class + 4 registers
    taa = next(iter(aligned.adapter_layers.values())).taa
    support = (taa._cols >= 5) == (taa._rows >= 5)  # every pair sits on one side of the prefix boundary
    assert bool(support.all()) and int((taa._rows < 5).sum()) > 0
    plain = next(iter(make("adapters", base=TINY_DINO).adapter_layers.values())).taa
    assert not bool(((plain._cols >= 5) == (plain._rows >= 5)).all())


@pytest.mark.parametrize("method", ["adapters", "mtl_finetune", "lora", "stl"])
def test_the_model_names_its_pretrained_parameters_for_the_learning_rates(method):
    from taskadapt.train.trainer import param_groups

    cfg = load_config(None, [*TINY_VIT, f"model.method={method}", "model.prefix_lora=true",
                             "train.lr=0.002", "train.backbone_lr=0.0001"])
    torch.manual_seed(0)
    model = create_model(cfg)
    slow = {id(p) for g in param_groups(model, cfg) if g["lr"] == 0.0001 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in slow}
    assert names == model.pretrained_parameters()
    assert not any("lora_" in n or ".film." in n or "decoder" in n or "heads." in n for n in names)
    if method == "adapters":  # TSN's gamma'/beta' come from the pretrained LayerNorm: slow by default
        assert any(n.endswith("norm1.weight") for n in names)
        cfg_new = load_config(None, [*TINY_VIT, "model.tsn.lr=new"])
        tsn_new = create_model(cfg_new).pretrained_parameters()
        assert not tsn_new and not any(n.endswith("norm1.weight") for n in tsn_new)
    elif method in ("mtl_finetune", "stl"):
        assert any(n.endswith("qkv.weight") for n in names)
    else:
        assert not names  # lora: the backbone stays frozen
    with pytest.raises(ConfigError, match="model.tsn.lr"):
        load_config(None, ["model.tsn.lr=fast"])


def test_tsn_task_offset_starts_exact_and_makes_the_streams_differ():
    plain, offset = make("adapters"), make("adapters", ["model.tsn.task_offset=true"])
    norms = [m for m in offset.modules() if isinstance(m, TaskScaledNorm)]
    assert norms and all(m.task_offset.shape == (4, 2 * m.dim) for m in norms)
    assert count_trainable(offset) - count_trainable(plain) == sum(m.task_offset.numel() for m in norms)
    offset.load_state_dict(plain.state_dict(), strict=False)
    image = batch()["image"]
    with torch.no_grad():
        a, b = plain.eval()(image), offset.eval()(image)
        assert all(torch.allclose(a[t], b[t], atol=1e-6) for t in a)  # zero offsets: the same model
        norms[0].task_offset[offset.tasks.index("depth"), 0] = 1.0  # depth's stream only
        c = offset(image)
    assert not torch.allclose(c["depth"], b["depth"])
    assert all(torch.equal(c[t], b[t]) for t in offset.tasks if t != "depth")
    offset.freeze_tasks(["normals"])  # a zero-shot task's offset rows never move
    offset.train()
    data = batch()
    MultiTaskLoss(offset.tasks)(offset(data["image"]), data).total.backward()
    grad = norms[0].task_offset.grad  # a block norm (the bottleneck's feeds a zero up-projection at init)
    assert grad[offset.tasks.index("normals")].abs().sum() == 0 and grad.abs().sum() > 0
