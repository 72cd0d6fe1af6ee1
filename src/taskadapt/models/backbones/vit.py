"""Vision Transformer (Dosovitskiy et al. 2021) with timm's parameter names, and the DINOv2 family.

``forward_features`` returns (B, P + N, C) tokens after the final LayerNorm, equal to timm's
``VisionTransformer.forward_features``: P prefix tokens (the class token, then R register tokens),
then the N patch tokens; pre-norm blocks, LayerNorm eps 1e-6, exact GELU. The learned position
embedding covers the prefix tokens and the patches (the original ViT layout) or, with
``no_embed_class=True``, only the patches and is added before the prefix tokens are put in front.

DINOv2 (Oquab et al. 2024) is this ViT with 14-pixel patches, LayerScale (Touvron et al. 2021: a
learned per-channel factor ``gamma`` on each residual branch, ``ls1``/``ls2``), ImageNet input
normalisation and pretraining at 518 px (a 37 x 37 grid); its register variant (Darcet et al. 2024)
adds 4 register tokens and embeds positions for the patches only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from taskadapt.errors import CheckpointError, ConfigError
from taskadapt.models.backbones.base import Backbone, Step
from taskadapt.models.backbones.layers import Mlp, to_pair
from taskadapt.models.backbones.registry import register_backbone


class PatchEmbed(nn.Module):
    """Image (B, 3, H, W) -> patch tokens (B, H/p * W/p, C) by a stride-p convolution."""

    def __init__(self, img_size: tuple[int, int], patch_size: int, embed_dim: int):
        super().__init__()
        bad = [s for s in img_size if s % patch_size or s < patch_size]
        if bad:
            lo = max(patch_size, bad[0] // patch_size * patch_size)
            hi = -(-bad[0] // patch_size) * patch_size
            nearest = f"{lo} or {hi}" if lo != hi else f"{hi}"
            raise ConfigError(
                f"vit: img_size {tuple(img_size)} is not a multiple of the patch size {patch_size}; use a multiple "
                f"of {patch_size} (the nearest to {bad[0]}: {nearest}), e.g. data.crop_size or model.img_size"
            )
        self.img_size = img_size
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.img_size:
            raise ValueError(
                f"input is {tuple(x.shape[-2:])} but this ViT is built for {self.img_size}; resize the image "
                "or build the backbone with img_size=..."
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``.

    ``attn_bias`` (broadcastable to (B, heads, N, N)) is added to the pre-softmax logits (TAA).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)  # scale 1/sqrt(head_dim)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    """A learned per-channel factor ``gamma`` (C,) on a residual branch (CaiT/DeiT III, DINOv2)."""

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then + ls2(mlp(norm2(x))). State (B, N, C).

    ``ls1``/``ls2`` are :class:`LayerScale` when ``init_values`` is set (non-zero, as in timm), else
    parameter-free identities, so checkpoints without LayerScale keep their exact key set.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 init_values: float | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def attention_tokens(self, state: torch.Tensor) -> tuple[int, int]:
        return state.shape[1], state.shape[1]

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), attn_bias))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(Backbone):
    """ViT with a class token and optional register tokens. State: tokens (B, P + N, C), where
    ``num_prefix_tokens`` P = 1 + ``reg_tokens`` (class token first, then the registers, then patches).

    ``init_values`` turns LayerScale on (its initial gamma); ``no_embed_class`` makes ``pos_embed``
    (1, N, C), added to the patch tokens only, instead of (1, P + N, C) added to every token.
    """

    family = "vit"
    mean = (0.5, 0.5, 0.5)  # timm's augreg ViT weights expect inputs in [-1, 1]
    std = (0.5, 0.5, 0.5)

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        init_values: float | None = None,
        reg_tokens: int = 0,
        no_embed_class: bool = False,
        name: str = "vit",
    ):
        super().__init__()
        if reg_tokens < 0:
            raise ConfigError(f"vit: reg_tokens must be >= 0, got {reg_tokens}")
        self.name = name
        self.img_size = to_pair(img_size)
        self.patch_size = patch_size
        self.num_features = self.embed_dim = embed_dim
        self.num_reg_tokens = reg_tokens
        self.num_prefix_tokens = 1 + reg_tokens
        self.no_embed_class = no_embed_class
        self.patch_embed = PatchEmbed(self.img_size, patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        embed_len = self.patch_embed.num_patches + (0 if no_embed_class else self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, embed_dim))
        self.blocks = nn.Sequential(
            *[Block(embed_dim, num_heads, mlp_ratio, qkv_bias, init_values) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.patch_embed.grid_size

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        B = tokens.shape[0]
        prefix = [self.cls_token.expand(B, -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(B, -1, -1))
        if self.no_embed_class:  # positions for the patches only; the prefix tokens carry none
            return torch.cat([*prefix, tokens + self.pos_embed], dim=1)
        return torch.cat([*prefix, tokens], dim=1) + self.pos_embed

    def steps(self) -> list[Step]:
        blocks = [Step(f"blocks.{i}", "block", b) for i, b in enumerate(self.blocks)]
        return [*blocks, Step("norm", "norm", self.norm)]

    def finalize(self, state: torch.Tensor) -> torch.Tensor:
        return state  # the final norm is the last step

    def feature_map(self, state: torch.Tensor, step_index: int) -> torch.Tensor:
        gh, gw = self.grid_size
        patches = state[:, self.num_prefix_tokens :]  # drop the class and register tokens
        return patches.transpose(1, 2).reshape(state.shape[0], -1, gh, gw)

    def no_weight_decay(self) -> set[str]:
        return {n for n in ("pos_embed", "cls_token", "reg_token") if getattr(self, n) is not None}

    def default_taps(self) -> list[int]:
        depth = len(self.blocks)
        # the last block of each quarter: 12 blocks -> 2, 5, 8, 11 (as DPT); ceil keeps shallow
        # models in range (3 blocks -> 0, 1, 2, 2) where floor would give block -1
        return [-(-depth * (k + 1) // 4) - 1 for k in range(4)]

    def tap_channels(self, step_index: int) -> int:
        return self.embed_dim

    def tap_stride(self, step_index: int) -> int:
        return self.patch_size

    def checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the classifier and resample ``pos_embed`` to this model's patch grid (its prefix-token
        entries, if the layout has any, are kept as they are)."""
        state_dict = super().checkpoint_filter(state_dict)
        # old timm checkpoints carry an unused representation layer
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("pre_logits.")}
        if "pos_embed" in state_dict:
            num_prefix = 0 if self.no_embed_class else self.num_prefix_tokens
            state_dict["pos_embed"] = resample_pos_embed(state_dict["pos_embed"], self.grid_size, num_prefix)
        return state_dict


def resample_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix: int = 1) -> torch.Tensor:
    """Resize a learned position embedding (1, num_prefix + h*w, C) to (1, num_prefix + grid[0]*grid[1], C).

    The idea is the ViT paper's (Dosovitskiy et al. 2021, sec. 3.2): treat the patch embeddings as a 2D
    map and interpolate it to the new grid; the prefix tokens' embeddings (class token, and register
    tokens where the layout embeds them) are kept as they are. ``num_prefix=0`` for a layout whose
    embedding covers the patches only (``no_embed_class``). The source grid
    is taken to be square (every timm ViT checkpoint is); a checkpoint whose token count already equals
    the target's is left untouched. Bicubic with antialiasing and ``align_corners=False``, computed in
    float32, as timm's ``resample_abs_pos_embed`` does by default -- so weights resized here equal
    weights resized by timm.
    """
    gh, gw = grid
    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    n_old = patches.shape[1]
    if n_old == gh * gw:
        return pos_embed
    side = round(n_old**0.5)
    if side * side != n_old:
        raise CheckpointError(
            f"the checkpoint's position embedding has {n_old} patch tokens, not a square grid, and this "
            f"model needs a {gh}x{gw} grid; build the backbone with the img_size the checkpoint was trained at"
        )
    dtype = pos_embed.dtype
    fmap = patches.float().reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, C, h, w)
    fmap = F.interpolate(fmap, size=(gh, gw), mode="bicubic", align_corners=False, antialias=True)
    patches = fmap.permute(0, 2, 3, 1).reshape(1, gh * gw, -1).to(dtype)
    return torch.cat([prefix, patches], dim=1)


def _vit(name: str, defaults: dict, overrides: dict) -> VisionTransformer:
    """The named architecture with timm-style keyword overrides (e.g. ``depth=6`` for a smaller model)."""
    return VisionTransformer(name=name, **{**defaults, **overrides})


@register_backbone
def vit_tiny_patch16_224(**kwargs) -> VisionTransformer:
    """ViT-Ti/16: 192 wide, 12 blocks, 3 heads (5.7 M parameters)."""
    return _vit("vit_tiny_patch16_224", {"embed_dim": 192, "depth": 12, "num_heads": 3}, kwargs)


@register_backbone
def vit_small_patch16_224(**kwargs) -> VisionTransformer:
    """ViT-S/16: 384 wide, 12 blocks, 6 heads (22 M parameters)."""
    return _vit("vit_small_patch16_224", {"embed_dim": 384, "depth": 12, "num_heads": 6}, kwargs)


@register_backbone
def vit_base_patch16_224(**kwargs) -> VisionTransformer:
    """ViT-B/16: 768 wide, 12 blocks, 12 heads (86 M parameters)."""
    return _vit("vit_base_patch16_224", {"embed_dim": 768, "depth": 12, "num_heads": 12}, kwargs)


# -- DINOv2 (timm 1.0.31's vit_*_patch14_dinov2 and vit_*_patch14_reg4_dinov2) ------------------------
_DINOV2 = {"img_size": 518, "patch_size": 14, "init_values": 1e-5}
_REG4 = {"reg_tokens": 4, "no_embed_class": True}


def _dinov2(name: str, defaults: dict, overrides: dict) -> VisionTransformer:
    """A DINOv2 architecture: 14-pixel patches, LayerScale, 518 px by default, ImageNet normalisation."""
    model = _vit(name, {**_DINOV2, **defaults}, overrides)
    model.mean, model.std = Backbone.mean, Backbone.std  # ImageNet's: DINOv2 was trained on them
    return model


@register_backbone
def vit_small_patch14_dinov2(**kwargs) -> VisionTransformer:
    """DINOv2 ViT-S/14: 384 wide, 12 blocks, 6 heads, LayerScale, 518 px (22.06 M parameters)."""
    return _dinov2("vit_small_patch14_dinov2", {"embed_dim": 384, "depth": 12, "num_heads": 6}, kwargs)


@register_backbone
def vit_base_patch14_dinov2(**kwargs) -> VisionTransformer:
    """DINOv2 ViT-B/14: 768 wide, 12 blocks, 12 heads, LayerScale, 518 px (86.58 M parameters)."""
    return _dinov2("vit_base_patch14_dinov2", {"embed_dim": 768, "depth": 12, "num_heads": 12}, kwargs)


@register_backbone
def vit_large_patch14_dinov2(**kwargs) -> VisionTransformer:
    """DINOv2 ViT-L/14: 1024 wide, 24 blocks, 16 heads, LayerScale, 518 px (304.37 M parameters)."""
    return _dinov2("vit_large_patch14_dinov2", {"embed_dim": 1024, "depth": 24, "num_heads": 16}, kwargs)


@register_backbone
def vit_small_patch14_reg4_dinov2(**kwargs) -> VisionTransformer:
    """DINOv2 ViT-S/14 with 4 register tokens (positions embedded for the patches only), 518 px
    (22.06 M parameters)."""
    defaults = {"embed_dim": 384, "depth": 12, "num_heads": 6, **_REG4}
    return _dinov2("vit_small_patch14_reg4_dinov2", defaults, kwargs)


@register_backbone
def vit_base_patch14_reg4_dinov2(**kwargs) -> VisionTransformer:
    """DINOv2 ViT-B/14 with 4 register tokens (positions embedded for the patches only), 518 px
    (86.58 M parameters)."""
    defaults = {"embed_dim": 768, "depth": 12, "num_heads": 12, **_REG4}
    return _dinov2("vit_base_patch14_reg4_dinov2", defaults, kwargs)


@register_backbone
def vit_large_patch14_reg4_dinov2(**kwargs) -> VisionTransformer:
    """DINOv2 ViT-L/14 with 4 register tokens (positions embedded for the patches only), 518 px
    (304.37 M parameters)."""
    defaults = {"embed_dim": 1024, "depth": 24, "num_heads": 16, **_REG4}
    return _dinov2("vit_large_patch14_reg4_dinov2", defaults, kwargs)
