"""DINOv2 (LayerScale, register tokens, patch 14) equals timm; the real ViT-S/14 file loads; every method
builds on it.

Reference outputs: tests/fixtures/timm/dinov2_*.safetensors (made with real timm by make_dinov2.py).
The real pretrained file is shared/assets/dinov2/vit_small_patch14_dinov2.safetensors next to the
repository (README there); tests that need it are skipped when it is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import plain_backbone, put_in_hub_cache
from safetensors import safe_open
from safetensors.torch import save_file
from test_backbone_vit import FIXTURES, TOL, build_loaded, load_fixture
from test_model import TINY_DINO

from taskadapt.config import load_config
from taskadapt.errors import CheckpointError, ConfigError
from taskadapt.models import create_model
from taskadapt.models.backbones import create_backbone, list_backbones
from taskadapt.models.backbones.pretrained import read_state_dict
from taskadapt.models.backbones.vit import LayerScale, VisionTransformer
from taskadapt.models.lora import LoRALinear
from taskadapt.models.params import parameter_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors: one thread per pytest worker

CASES = ["dinov2_small", "dinov2_reg4", "dinov2_regcls"]
REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "assets" / "dinov2"
REAL_FILE = REAL_DIR / "vit_small_patch14_dinov2.safetensors"
needs_real_file = pytest.mark.skipif(
    not REAL_FILE.is_file(), reason=f"the real DINOv2 ViT-S/14 weights are not at {REAL_FILE} (shared/assets)"
)
DINOV2_NAMES = [
    "vit_small_patch14_dinov2", "vit_base_patch14_dinov2", "vit_large_patch14_dinov2",
    "vit_small_patch14_reg4_dinov2", "vit_base_patch14_reg4_dinov2", "vit_large_patch14_reg4_dinov2",
]
HUB_REPO = "timm/vit_small_patch14_dinov2.lvd142m"


def _read(tag: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safe_open(str(FIXTURES / f"{tag}.safetensors"), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    return meta, tensors


def _kwargs(kwargs: dict) -> dict:
    if isinstance(kwargs["img_size"], list):
        kwargs["img_size"] = tuple(kwargs["img_size"])
    return kwargs


# -- the registered architectures are timm's ----------------------------------------------------------------
def test_registered_names() -> None:
    assert sorted(list_backbones("*dinov2")) == sorted(DINOV2_NAMES)


@pytest.mark.parametrize("name", DINOV2_NAMES)
def test_full_size_architecture_equals_timm(name: str) -> None:
    meta, _ = _read("dinov2_small")
    timm_arch = json.loads(meta["architectures"])[name]
    with torch.device("meta"):  # full size (ViT-L is 304 M parameters) without allocating it
        model = create_backbone(name)
    block = model.blocks[0]
    ours = {
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "num_heads": block.attn.num_heads,
        "mlp_hidden": block.mlp.fc1.out_features,
        "patch_size": model.patch_size,
        "img_size": list(model.img_size),
        "num_prefix_tokens": model.num_prefix_tokens,
        "num_reg_tokens": model.num_reg_tokens,
        "no_embed_class": model.no_embed_class,
        "pos_embed": list(model.pos_embed.shape),
        "num_tensors": len(model.state_dict()),
        "num_params": sum(p.numel() for p in model.parameters()),
        "mean": list(model.mean),
        "std": list(model.std),
    }
    assert ours == {k: timm_arch[k] for k in ours}
    assert timm_arch["input_size"] == [3, *ours["img_size"]] == [3, 518, 518]
    assert isinstance(block.ls1, LayerScale) and isinstance(block.ls2, LayerScale)
    # LayerScale starts at timm's init_values (checked on a small copy: meta tensors hold no values)
    small = create_backbone(name, depth=1, embed_dim=16, num_heads=2, img_size=28)
    assert timm_arch["init_values"] == 1e-5
    assert torch.equal(small.blocks[0].ls1.gamma, torch.full((16,), 1e-5))
    assert torch.equal(small.blocks[0].ls2.gamma, torch.full((16,), 1e-5))


def test_plain_vits_keep_their_layout_and_normalisation() -> None:
    vit = create_backbone("vit_tiny_patch16_224", depth=1, embed_dim=24, img_size=32)
    assert vit.num_prefix_tokens == 1 and vit.reg_token is None and not vit.no_embed_class
    assert not any(".ls1." in k or ".ls2." in k for k in vit.state_dict())
    assert (vit.mean, vit.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


# -- reduced models against timm ---------------------------------------------------------------------------
# keys, forward_features, the step view and the taps are checked against timm for these fixtures with the
# other ViTs' (test_backbone_vit.py: CASES), the backbone contract for every registered DINOv2 in
# test_backbone_contract.py; here what only DINOv2 has
@pytest.mark.parametrize("tag", CASES)
def test_layerscale_and_prefix_tokens_as_timm(tag: str) -> None:
    model, params, rest = build_loaded(tag)
    meta, _, _ = load_fixture(tag)
    assert "blocks.0.ls1.gamma" in params and "blocks.0.ls2.gamma" in params
    assert model.num_prefix_tokens == int(meta["num_prefix_tokens"])
    gh, gw = model.grid_size
    with torch.no_grad():
        state = model.stem(rest["input"])
    assert state.shape == (rest["input"].shape[0], model.num_prefix_tokens + gh * gw, model.embed_dim)
    assert model.tap_stride(0) == 14


def test_feature_map_drops_the_register_tokens() -> None:
    model, _, rest = build_loaded("dinov2_reg4")
    assert model.num_prefix_tokens == 5 and model.reg_token.shape == (1, 4, 24)
    gh, gw = model.grid_size
    state = torch.randn(2, 5 + gh * gw, 24)
    fmap = model.feature_map(state, 0)
    assert torch.equal(fmap, state[:, 5:].transpose(1, 2).reshape(2, 24, gh, gw))
    changed = state.clone()
    changed[:, :5] += 1.0  # class and register tokens do not reach the map
    assert torch.equal(model.feature_map(changed, 0), fmap)
    # timm's token order: class token, then the registers, then the patches (position-embedded only)
    with torch.no_grad():
        tokens = model.stem(rest["input"])
    assert torch.equal(tokens[:, 0], model.cls_token[0].expand(2, -1))
    assert torch.equal(tokens[:, 1:5], model.reg_token.expand(2, -1, -1))


def test_layerscale_scales_the_residual_branches() -> None:
    model, _, rest = build_loaded("dinov2_small")
    block = model.blocks[0]
    with torch.no_grad():
        x = model.stem(rest["input"])
        h = x + block.ls1.gamma * block.attn(block.norm1(x))
        expected = h + block.ls2.gamma * block.mlp(block.norm2(h))
        assert (block(x) - expected).abs().max().item() <= 1e-5
        block.ls1.gamma.zero_()
        block.ls2.gamma.zero_()
        assert torch.equal(block(x), x)  # both branches switched off


# -- the input size --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "nearest"), [(128, "126 or 140"), ((112, 100), "98 or 112"), (10, "14")])
def test_image_size_not_a_multiple_of_14_is_a_clear_error(size, nearest) -> None:
    with pytest.raises(ConfigError, match=f"multiple of the patch size 14.*{nearest}"):
        create_backbone("vit_small_patch14_reg4_dinov2", img_size=size)


def test_crop_size_not_a_multiple_of_14_fails_when_the_model_is_built() -> None:
    with pytest.raises(ConfigError, match="28 or 42"):
        create_model(load_config(None, [*TINY_DINO[1:], "data.crop_size=32"]))


# -- position-embedding resampling against timm's checkpoint_filter_fn ---------------------------------
def _resize_fixture() -> tuple[dict, dict[str, torch.Tensor]]:
    meta, tensors = _read("dinov2_resize")
    meta["sources"] = json.loads(meta["sources"])
    for source in meta["sources"].values():
        _kwargs(source["kwargs"])
    meta["targets"] = {k: tuple(v) for k, v in json.loads(meta["targets"]).items()}
    return meta, tensors


def _source_params(tensors: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    prefix = f"{layout}.param."
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


LAYOUTS = {"cls": 1, "reg4": 0, "regcls": 3}  # layout -> prefix entries in pos_embed


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("target", ["g3x3", "g8x8", "g4x6"])
def test_pos_embed_resampling_equals_timm(layout: str, target: str) -> None:
    meta, tensors = _resize_fixture()
    source, params = meta["sources"][layout], _source_params(tensors, layout)
    size = meta["targets"][target]
    model = create_backbone(source["model"], **{**source["kwargs"], "img_size": size})
    assert params["pos_embed"].shape[1] == LAYOUTS[layout] + 25  # made at 70 px: a 5x5 grid
    filtered = model.checkpoint_filter(params)
    expected = tensors[f"{layout}.resize.{target}.pos_embed"]
    assert filtered["pos_embed"].shape == model.pos_embed.shape == expected.shape
    assert (filtered["pos_embed"] - expected).abs().max().item() <= 1e-5
    n = LAYOUTS[layout]
    assert torch.equal(filtered["pos_embed"][:, :n], params["pos_embed"][:, :n])  # prefix entries kept


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_resized_model_equals_timm(layout: str, tmp_path: Path) -> None:
    meta, tensors = _resize_fixture()
    source, target = meta["sources"][layout], meta["forward_target"]
    path = tmp_path / "weights.safetensors"
    save_file(_source_params(tensors, layout), str(path))
    kwargs = {**source["kwargs"], "img_size": meta["targets"][target]}
    model = create_backbone(source["model"], pretrained=str(path), **kwargs).eval()
    with torch.no_grad():
        out = model(tensors[f"{layout}.resize.{target}.input"])
    expected = tensors[f"{layout}.resize.{target}.forward_features"]
    assert out.shape == expected.shape
    assert (out - expected).abs().max().item() <= TOL


# -- the hub name of the official weights -------------------------------------------------------------------
def test_hub_repo_with_a_pretrained_tag_offline_is_a_clear_error(offline_hub: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        create_backbone("vit_small_patch14_dinov2", pretrained=f"hf-hub:{HUB_REPO}", img_size=28, depth=1)
    message = str(info.value)
    assert f"'{HUB_REPO}'" in message and "HF_HUB_OFFLINE" in message
    assert f"https://huggingface.co/{HUB_REPO}/resolve/main/model.safetensors" in message


def test_hub_repo_with_a_pretrained_tag_loads_from_the_cache(offline_hub: Path) -> None:
    meta, params, rest = load_fixture("dinov2_small")
    put_in_hub_cache(offline_hub, HUB_REPO, params)
    model = create_backbone(meta["model"], pretrained=f"hf-hub:{HUB_REPO}", **meta["kwargs"]).eval()
    with torch.no_grad():
        out = model(rest["input"])
    assert (out - rest["forward_features"]).abs().max().item() <= TOL


# -- the real DINOv2 ViT-S/14 weights --------------------------------------------------------------------
@needs_real_file
def test_real_checkpoint_is_timm_format() -> None:
    sd = read_state_dict(REAL_FILE)
    assert len(sd) == 174
    assert sum(v.numel() for v in sd.values()) == 22_056_192  # 22.06 M
    assert sd["pos_embed"].shape == (1, 1 + 37 * 37, 384) and sd["blocks.0.ls1.gamma"].shape == (384,)


def _semantic_gap(model: VisionTransformer, images: torch.Tensor, semseg: torch.Tensor) -> float:
    """Mean over images of (cosine similarity of same-class patch pairs - of different-class pairs)."""
    x = (images - torch.tensor(model.mean).view(1, 3, 1, 1)) / torch.tensor(model.std).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = model.forward_features(x)
    assert torch.isfinite(feats).all()
    fmap = model.feature_map(feats, len(model.steps()) - 1)
    labels = F.interpolate(F.one_hot(semseg).permute(0, 3, 1, 2).float(), size=fmap.shape[-2:], mode="area")
    labels = labels.argmax(1).flatten(1)
    f = F.normalize(fmap.flatten(2).transpose(1, 2), dim=-1)
    gaps = []
    for b in range(images.shape[0]):
        sim, same = f[b] @ f[b].T, labels[b][:, None] == labels[b][None, :]
        gaps.append(sim[same].mean() - sim[~same].mean())
    return torch.stack(gaps).mean().item()


@needs_real_file
def test_real_checkpoint_loads_strictly_and_gives_semantic_features() -> None:
    from taskadapt.data.scenes import render_scenes

    model = create_backbone("vit_small_patch14_dinov2", pretrained=str(REAL_FILE), img_size=224).eval()
    assert model.grid_size == (16, 16) and model.pos_embed.shape == (1, 1 + 256, 384)
    # the 37x37 position embedding resampled to 16x16: 1113 fewer positions than the file's 22.06 M
    assert sum(p.numel() for p in model.parameters()) == 22_056_192 - (37 * 37 - 16 * 16) * 384
    # lit, textured scenes: in the flat-coloured "studio" domain pixel colour alone separates the classes
    scenes = render_scenes("dusk", "val", range(4), size=224, seed=0)
    gap = _semantic_gap(model, scenes["image"], scenes["semseg"])
    torch.manual_seed(0)
    untrained = _semantic_gap(create_backbone("vit_small_patch14_dinov2", img_size=224).eval(),
                              scenes["image"], scenes["semseg"])
    # pretrained patch features group by object class far more than an untrained ViT's (about 0.45 vs
    # 0.14 when written): the weights are loaded where they belong and the resampled positions work
    assert gap > 0.3 and gap > untrained + 0.15, (gap, untrained)


@needs_real_file
@pytest.mark.parametrize("size", [112, (126, 98)])
def test_real_checkpoint_loads_at_other_sizes(size) -> None:
    model = create_backbone("vit_small_patch14_dinov2", pretrained=str(REAL_FILE), img_size=size).eval()
    h, w = (size, size) if isinstance(size, int) else size
    assert model.grid_size == (h // 14, w // 14)
    with torch.no_grad():
        out = model(torch.rand(1, 3, h, w))
    assert out.shape == (1, 1 + (h // 14) * (w // 14), 384) and torch.isfinite(out).all()


# -- every method on a reduced DINOv2 with registers ----------------------------------------------------
# every method builds, predicts and trains on it: tests/test_model.py (TINY_DINO among the bases)


def make(method: str = "adapters", extra=()):
    torch.manual_seed(0)
    return create_model(load_config(None, [*TINY_DINO, f"model.method={method}", *extra]))


def batch(size: int = 28, B: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"image": torch.rand(B, 3, size, size, generator=g),
            "semseg": torch.randint(0, 9, (B, size, size), generator=g),
            "depth": torch.rand(B, 1, size, size, generator=g) + 1,
            "normals": F.normalize(torch.randn(B, 3, size, size, generator=g), dim=1),
            "edge": (torch.rand(B, 1, size, size, generator=g) > 0.9).float()}


def test_adapters_on_dinov2_with_registers_tap_and_bias_all_tokens() -> None:
    model = make("adapters").eval()
    backbone = model.backbone
    assert (backbone.mean, backbone.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert backbone.grid_size == (2, 2) and backbone.num_prefix_tokens == 5
    assert model.taps == [0, 1, 2, 3] and model.adapter_steps == [3]
    taa = model.adapter_layers["3"].taa
    assert taa.num_tokens == 5 + 4  # class + 4 registers + 2x2 patches
    assert taa.block_size == 2  # one patch row, as without registers
    # parameter table: the register tokens belong to the frozen backbone prefix with the class token
    rows = {r.component: r for r in parameter_table(model)}
    assert rows["backbone prefix"].trainable == 0
    prefix_params = backbone.cls_token.numel() + backbone.reg_token.numel() + backbone.pos_embed.numel()
    assert rows["backbone prefix"].frozen >= prefix_params

    # at init the adapters are exact: every stream's taps equal the plain backbone's feature maps
    reference = plain_backbone(model)  # TSN undone: plain LayerNorms with the same weights
    image = batch()["image"]
    T = len(model.tasks)
    with torch.no_grad():
        feats, streams = model.encode(image)
        assert streams == T
        state = reference.stem((image - model.pixel_mean) / model.pixel_std)
        for i, step in enumerate(reference.steps()[: model.last_step + 1]):
            state = step(state)
            expected = reference.feature_map(state, i)
            got = feats[i]
            if i >= model.split:
                assert got.shape == (T * 2, 24, 2, 2)
                got = got.view(T, 2, *got.shape[1:])[-1]
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        # a non-zero TAA bias reaches the prefix tokens too and changes the predictions
        before = model(image)["depth"]
        torch.nn.init.normal_(taa.A, std=1.0)
        after = model(image)["depth"]
    assert not torch.allclose(before, after)


def test_lora_on_dinov2_equals_the_frozen_model_at_init() -> None:
    frozen = make("frozen_heads").eval()
    lora = make("lora").eval()
    wrapped = [m for m in lora.backbone.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 2 * 4  # qkv and proj of 4 blocks
    missing, unexpected = lora.load_state_dict(frozen.state_dict(), strict=False)
    assert not unexpected and missing and all("lora_" in k for k in missing)
    image = batch()["image"]
    with torch.no_grad():
        expected, got = frozen(image), lora(image)
        for task in expected:
            torch.testing.assert_close(got[task], expected[task], rtol=0, atol=1e-6)
        for m in wrapped:
            m.lora_B.fill_(0.05)
        changed = lora(image)
    assert not torch.allclose(changed["depth"], expected["depth"])
