"""Pyramid Vision Transformer v2 (Wang et al. 2022) with timm's parameter names.

``forward_features`` returns (B, C, H/32, W/32) after the last stage's LayerNorm, equal to timm's
``PyramidVisionTransformerV2.forward_features``: an overlapping 7x7/4 patch embedding, four stages of
pre-norm blocks whose attention reads keys/values from a spatially reduced map (a stride-``sr`` conv
+ LayerNorm, or 7x7 average pooling + 1x1 conv + LayerNorm + GELU for the ``linear`` variant) and
whose MLP has a depthwise 3x3 conv between its two linear layers; stages 2-4 start with an
overlapping 3x3/2 embedding, and every stage ends with a LayerNorm.

Step view: the state is (B, H, W, C) between steps; blocks flatten it to (B, H*W, C) internally.
Steps are, per stage: ``stages.<i>.downsample`` (stages > 0, kind ``transition``), the blocks
``stages.<i>.blocks.<j>``, then ``stages.<i>.norm`` (``transition``; the last stage's is ``norm``).
The state after a stage norm equals timm's stage output (``forward_intermediates``), permuted.

LayerNorm eps follows timm: 1e-6 for the block and stage norms (``timm.layers.LayerNorm``), 1e-5 for
the patch-embedding and spatial-reduction norms (``torch.nn.LayerNorm``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from taskadapt.errors import ConfigError
from taskadapt.models.backbones.base import Backbone, Step
from taskadapt.models.backbones.layers import per_stage, to_pair
from taskadapt.models.backbones.registry import register_backbone

_BLOCK_EPS = 1e-6  # timm.layers.LayerNorm default, used for norm1/norm2 and the stage norms
_LINEAR_POOL = 7  # the linear-attention variant pools keys/values to a fixed 7x7 grid


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: conv (kernel k, stride s, padding k // 2) then LayerNorm.

    Input (B, C_in, H, W) for the stem, or (B, H, W, C_in) when ``channels_last_input`` (the
    downsampling between stages, which reads the step-view state); output (B, H', W', C_out) with
    H' = ceil(H / s).
    """

    def __init__(
        self, patch_size: int, stride: int, in_chans: int, embed_dim: int, channels_last_input: bool
    ):
        super().__init__()
        self.channels_last_input = channels_last_input
        self.patch_size = (patch_size, patch_size)
        self.stride = stride
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)  # eps 1e-5, as timm (torch's LayerNorm here)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last_input:
            x = x.permute(0, 3, 1, 2)
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Attention(nn.Module):
    """Spatial-reduction attention: queries from all H*W tokens, keys/values from a reduced map.

    ``forward(x (B, N, C), feat_size (H, W), attn_bias)`` -> (B, N, C). ``attn_bias`` is added to
    the pre-softmax logits and must broadcast to (B, heads, N, N_kv) (see :meth:`kv_tokens`).
    """

    def __init__(
        self, dim: int, num_heads: int, sr_ratio: int = 1, linear_attn: bool = False, qkv_bias: bool = True
    ):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(
                f"pvt_v2: width {dim} is not divisible by {num_heads} heads; change embed_dims or num_heads"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.sr_ratio = sr_ratio
        self.linear_attn = linear_attn
        # registration order follows timm so state_dict keys come out in the same order
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.pool: nn.Module | None = None
        self.act: nn.Module | None = None
        self.sr: nn.Module | None = None
        self.norm: nn.Module | None = None
        if linear_attn:
            self.pool = nn.AdaptiveAvgPool2d(_LINEAR_POOL)
            self.sr = nn.Conv2d(dim, dim, kernel_size=1, stride=1)
            self.norm = nn.LayerNorm(dim)
            self.act = nn.GELU()
        elif sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def kv_tokens(self, feat_size: tuple[int, int]) -> int:
        """Number of key/value tokens for an (H, W) map: 49 (linear), floor(H/sr)*floor(W/sr), or H*W."""
        h, w = feat_size
        if self.linear_attn:
            return _LINEAR_POOL * _LINEAR_POOL
        if self.sr is not None:
            return (h // self.sr_ratio) * (w // self.sr_ratio)
        return h * w

    def forward(
        self, x: torch.Tensor, feat_size: tuple[int, int], attn_bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, N, C = x.shape
        h, w = feat_size
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        src = x
        if self.sr is not None:
            grid = x.transpose(1, 2).reshape(B, C, h, w)
            if self.pool is not None:
                grid = self.pool(grid)
            src = self.norm(self.sr(grid).flatten(2).transpose(1, 2))  # (B, N_kv, C)
            if self.act is not None:
                src = self.act(src)
        kv = self.kv(src).reshape(B, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)  # scale 1/sqrt(head_dim)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class MlpWithDepthwiseConv(nn.Module):
    """fc1 -> (ReLU if linear) -> depthwise 3x3 conv on the (H, W) grid -> GELU -> fc2; (B, N, C) in/out."""

    def __init__(self, dim: int, hidden: int, extra_relu: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.relu = nn.ReLU() if extra_relu else nn.Identity()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, feat_size: tuple[int, int]) -> torch.Tensor:
        x = self.fc1(x)
        B, N, C = x.shape
        x = self.relu(x.transpose(1, 2).reshape(B, C, feat_size[0], feat_size[1]))
        x = self.dwconv(x).flatten(2).transpose(1, 2)
        return self.fc2(self.act(x))


class Block(nn.Module):
    """Pre-norm PVTv2 block on the step-view state (B, H, W, C) -> (B, H, W, C).

    Inside, tokens are (B, H*W, C): x + attn(norm1(x)), then + mlp(norm2(x)).
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int, linear_attn: bool, qkv_bias: bool
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_BLOCK_EPS)
        self.attn = Attention(dim, num_heads, sr_ratio, linear_attn, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=_BLOCK_EPS)
        self.mlp = MlpWithDepthwiseConv(dim, int(dim * mlp_ratio), extra_relu=linear_attn)

    def attention_tokens(self, state: torch.Tensor) -> tuple[int, int]:
        """(N_q, N_kv) of this block's attention for a state (B, H, W, C)."""
        h, w = state.shape[1], state.shape[2]
        return h * w, self.attn.kv_tokens((h, w))

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        B, H, W, C = x.shape
        feat_size = (H, W)
        x = x.reshape(B, H * W, C)
        x = x + self.attn(self.norm1(x), feat_size, attn_bias)
        x = x + self.mlp(self.norm2(x), feat_size)
        return x.reshape(B, H, W, C)


class PyramidVisionTransformerStage(nn.Module):
    """One stage: optional ``downsample`` (3x3/2 overlapping embedding), ``blocks``, ``norm``."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        depth: int,
        downsample: bool,
        num_heads: int,
        sr_ratio: int,
        linear_attn: bool,
        mlp_ratio: float,
        qkv_bias: bool,
    ):
        super().__init__()
        self.downsample = (
            OverlapPatchEmbed(3, 2, dim, dim_out, channels_last_input=True) if downsample else None
        )
        self.blocks = nn.ModuleList(
            [Block(dim_out, num_heads, mlp_ratio, sr_ratio, linear_attn, qkv_bias) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim_out, eps=_BLOCK_EPS)


class PyramidVisionTransformerV2(Backbone):
    """PVTv2. State: (B, H, W, C) feature maps; strides 4, 8, 16, 32 for the four stages.

    Any input size works (no position embeddings); ``img_size`` only records the size the model is
    meant for. Each spatial size is ceil(H / stride) because the embeddings pad by k // 2.
    """

    family = "pvt_v2"

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        depths: Sequence[int] = (3, 4, 6, 3),
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        num_heads: int | Sequence[int] = (1, 2, 4, 8),
        sr_ratios: int | Sequence[int] = (8, 4, 2, 1),
        mlp_ratios: float | Sequence[float] = (8.0, 8.0, 4.0, 4.0),
        qkv_bias: bool = True,
        linear: bool = False,
        in_chans: int = 3,
        name: str = "pvt_v2",
    ):
        super().__init__()
        depths = tuple(int(d) for d in depths)
        n = len(depths)
        embed_dims = tuple(int(d) for d in per_stage(embed_dims, n, "embed_dims", "pvt_v2"))
        num_heads = per_stage(num_heads, n, "num_heads", "pvt_v2")
        sr_ratios = per_stage(sr_ratios, n, "sr_ratios", "pvt_v2")
        mlp_ratios = per_stage(mlp_ratios, n, "mlp_ratios", "pvt_v2")
        self.name = name
        self.img_size = to_pair(img_size)
        self.depths = depths
        self.embed_dims = embed_dims
        self.num_features = embed_dims[-1]
        self.patch_embed = OverlapPatchEmbed(7, 4, in_chans, embed_dims[0], channels_last_input=False)
        stages = []
        prev = embed_dims[0]
        for i in range(n):
            stages.append(
                PyramidVisionTransformerStage(
                    prev,
                    embed_dims[i],
                    depths[i],
                    i > 0,
                    int(num_heads[i]),
                    int(sr_ratios[i]),
                    linear,
                    float(mlp_ratios[i]),
                    qkv_bias,
                )
            )
            prev = embed_dims[i]
        self.stages = nn.Sequential(*stages)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # timm's scheme: truncated normal linears, He-style (fan-out) convs, zero biases
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # -- the step view ------------------------------------------------------------------------------
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) -> (B, ceil(H/4), ceil(W/4), C0)."""
        return self.patch_embed(x)

    def steps(self) -> list[Step]:
        out: list[Step] = []
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if stage.downsample is not None:
                out.append(Step(f"stages.{i}.downsample", "transition", stage.downsample, stage=i))
            out.extend(
                Step(f"stages.{i}.blocks.{j}", "block", b, stage=i) for j, b in enumerate(stage.blocks)
            )
            out.append(Step(f"stages.{i}.norm", "norm" if i == last else "transition", stage.norm, stage=i))
        return out

    def finalize(self, state: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, C, H, W), as timm's ``forward_features``."""
        return state.permute(0, 3, 1, 2).contiguous()

    def feature_map(self, state: torch.Tensor, step_index: int) -> torch.Tensor:
        return state.permute(0, 3, 1, 2)

    def default_taps(self) -> list[int]:
        """The stage norms: their outputs are timm's stage outputs (``forward_intermediates``)."""
        return [i for i, s in enumerate(self.steps()) if s.name == f"stages.{s.stage}.norm"]

    def _stage_of(self, step_index: int) -> int:
        steps = self.steps()
        if not 0 <= step_index < len(steps):
            raise IndexError(f"step index {step_index} out of range for {len(steps)} steps")
        return steps[step_index].stage

    def tap_channels(self, step_index: int) -> int:
        return self.embed_dims[self._stage_of(step_index)]

    def tap_stride(self, step_index: int) -> int:
        return 4 * 2 ** self._stage_of(step_index)

    def checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the classifier; also accept the original PVTv2 release's key names
        (``patch_embed2``, ``block1.0``, ``norm1``, ``mlp.dwconv.dwconv``) by renaming them to timm's."""
        if "patch_embed1.proj.weight" in state_dict:
            state_dict = {_rename_original_key(k): v for k, v in state_dict.items()}
        return super().checkpoint_filter(state_dict)


def _rename_original_key(key: str) -> str:
    """One key of the original PVTv2 checkpoints -> timm's name."""
    m = re.match(r"patch_embed(\d+)\.(.*)", key)
    if m:
        stage = int(m.group(1)) - 1
        return f"patch_embed.{m.group(2)}" if stage == 0 else f"stages.{stage}.downsample.{m.group(2)}"
    key = key.replace("dwconv.dwconv", "dwconv")
    key = re.sub(r"^block(\d+)\.(\d+)\.", lambda g: f"stages.{int(g.group(1)) - 1}.blocks.{g.group(2)}.", key)
    return re.sub(r"^norm(\d+)\.", lambda g: f"stages.{int(g.group(1)) - 1}.norm.", key)


def _pvt_v2(name: str, depths, embed_dims, num_heads, kwargs: dict) -> PyramidVisionTransformerV2:
    args = {"depths": depths, "embed_dims": embed_dims, "num_heads": num_heads, **kwargs}  # kwargs win
    return PyramidVisionTransformerV2(name=name, **args)


@register_backbone
def pvt_v2_b0(**kwargs) -> PyramidVisionTransformerV2:
    """PVTv2-B0: widths 32/64/160/256, depths 2/2/2/2 (3.4 M parameters without the classifier)."""
    return _pvt_v2("pvt_v2_b0", (2, 2, 2, 2), (32, 64, 160, 256), (1, 2, 5, 8), kwargs)


@register_backbone
def pvt_v2_b1(**kwargs) -> PyramidVisionTransformerV2:
    """PVTv2-B1: widths 64/128/320/512, depths 2/2/2/2 (13.5 M parameters without the classifier)."""
    return _pvt_v2("pvt_v2_b1", (2, 2, 2, 2), (64, 128, 320, 512), (1, 2, 5, 8), kwargs)


@register_backbone
def pvt_v2_b2(**kwargs) -> PyramidVisionTransformerV2:
    """PVTv2-B2: widths 64/128/320/512, depths 3/4/6/3 (24.8 M parameters without the classifier)."""
    return _pvt_v2("pvt_v2_b2", (3, 4, 6, 3), (64, 128, 320, 512), (1, 2, 5, 8), kwargs)
