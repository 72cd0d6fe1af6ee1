"""Swin Transformer (Liu et al. 2021) with timm's parameter names.

``forward_features`` returns (B, H/32, W/32, C) after the final LayerNorm, equal to timm 1.x's
``SwinTransformer.forward_features``: a 4x4/4 patch embedding + LayerNorm, four stages of pre-norm
blocks with window attention (relative-position bias; every odd block of a stage shifts its windows
by half a window and masks the wrapped-around regions with -100), a 2x2 patch merging at the start of
stages 1-3 (timm 1.x layout: ``layers.<i>.downsample``), LayerNorm eps 1e-5, exact GELU.

Like timm, a block whose feature map is no larger than the window shrinks its window to the map (and
then does not shift), and a map that is not a multiple of the window is zero-padded at the bottom and
right *after* the cyclic shift; the padded tokens take part in attention, as in timm.

Step view: the state is (B, H, W, C). Steps are, per stage, ``layers.<i>.downsample`` (stages > 0,
kind ``transition``) then the blocks ``layers.<i>.blocks.<j>``; the last step is the final ``norm``.
A block's ``attn_bias`` is broadcastable to (B, heads, N, N) with N = the block's window area; it is
shared by all windows of an image. Blocks call ``norm1``/``norm2`` on (B, H*W, C) tokens (the same
layout as ViT's), so a replacement norm written for (B, N, C) works for both families.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from taskadapt.errors import CheckpointError, ConfigError
from taskadapt.models.backbones.base import Backbone, Step
from taskadapt.models.backbones.layers import Mlp, per_stage, to_pair
from taskadapt.models.backbones.registry import register_backbone

_MASK_VALUE = -100.0  # timm's (and the original Swin's) logit penalty between shifted regions
_OLD_LAYOUT_KEY = "layers.0.downsample.reduction.weight"  # original checkpoints merge at stage ends


def _stage_windows(window_size, num_stages: int) -> list[tuple[int, int]]:
    """An int or (h, w) for every stage, or one int / (h, w) per stage -> one (h, w) per stage."""
    if isinstance(window_size, int):
        return [(window_size, window_size)] * num_stages
    window_size = list(window_size)
    if len(window_size) == 2 and all(isinstance(w, int) for w in window_size):
        return [to_pair(window_size)] * num_stages  # a pair of ints is one (h, w) window, as in timm
    if len(window_size) != num_stages:
        raise ConfigError(
            f"swin: window_size has {len(window_size)} entries but depths has {num_stages} stages; "
            "give one window size, an (h, w) pair, or one per stage"
        )
    return [to_pair(w) for w in window_size]


def window_partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of the window -> (B * nW, wh * ww, C), windows in row-major
    order within each image (so the leading dim is ordered (B, nW))."""
    B, H, W, C = x.shape
    wh, ww = window
    x = x.view(B, H // wh, wh, W // ww, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B * (H // wh) * (W // ww), wh * ww, C)


def window_reverse(windows: torch.Tensor, window: tuple[int, int], H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, wh * ww, C) -> (B, H, W, C)."""
    wh, ww = window
    C = windows.shape[-1]
    x = windows.view(-1, H // wh, W // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


def relative_position_index(window: tuple[int, int]) -> torch.Tensor:
    """(N, N) long, N = wh * ww: row of the (2wh-1) x (2ww-1) bias table for each query/key pair."""
    wh, ww = window
    ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + (wh - 1)  # offsets shifted to start at 0
    dx = xs[:, None] - xs[None, :] + (ww - 1)
    return dy * (2 * ww - 1) + dx


def shift_mask(padded: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]) -> torch.Tensor:
    """(nW, N, N) float: 0 where query and key come from the same region of the cyclically shifted
    (and padded) map, -100 otherwise. Regions follow timm: per axis [0, P - w), [P - w, P - s),
    [P - s, P) of the padded size P."""
    labels = []
    for size, w, s in zip(padded, window, shift, strict=True):
        pos = torch.arange(size)
        labels.append((pos >= size - w).long() + (pos >= size - s).long())  # 0, 1 or 2
    region = (labels[0][:, None] * 3 + labels[1][None, :]).float()  # (Hp, Wp)
    region = window_partition(region[None, :, :, None], window)[..., 0]  # (nW, N)
    diff = region[:, None, :] - region[:, :, None]
    return torch.zeros_like(diff).masked_fill_(diff != 0, _MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative-position bias.

    The relative-position bias, the shift mask and the caller's ``attn_bias`` are summed into one
    additive float mask for ``scaled_dot_product_attention`` (scale 1/sqrt(head_dim)).
    """

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"swin: width {dim} is not divisible by {num_heads} heads; change num_heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = window
        self.window_area = window[0] * window[1]
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1), num_heads)
        )
        # not persistent: derived from the window size, absent from timm's state_dict
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias gathered from the table (differentiable w.r.t. the table)."""
        n = self.window_area
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(
        self,
        x: torch.Tensor,
        num_windows: int,
        mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B * nW, N, C) windows ordered (B, nW); ``mask`` (nW, N, N) shift mask; ``attn_bias``
        broadcastable to (B, heads, N, N), shared by the nW windows of each image."""
        Bw, N, C = x.shape
        B = Bw // num_windows
        qkv = self.qkv(x).reshape(Bw, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        # combined mask laid out (B | 1, nW | 1, heads, N, N), broadcast before it is flattened
        bias = self.relative_position_bias().to(q.dtype)[None, None]
        if mask is not None:
            bias = bias + mask.to(q.dtype)[None, :, None]
        if attn_bias is not None:
            extra = attn_bias.to(q.dtype)
            if extra.dim() > 4:
                raise ValueError(f"attn_bias must broadcast to (B, heads, N, N), got {tuple(extra.shape)}")
            extra = extra.reshape((1,) * (4 - extra.dim()) + tuple(extra.shape))
            bias = bias + extra[:, None]
        if bias.shape[0] == 1 and bias.shape[1] == 1:
            attn_mask = bias[0]  # (1, heads, N, N): same for every window
        else:
            attn_mask = bias.expand(B, num_windows, -1, N, N).reshape(Bw, -1, N, N)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(x.transpose(1, 2).reshape(Bw, N, C))


class SwinBlock(nn.Module):
    """(Shifted-)window attention block on a (B, H, W, C) state built for one resolution (H, W)."""

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        num_heads: int,
        window: tuple[int, int],
        shifted: bool,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
    ):
        super().__init__()
        self.input_resolution = resolution
        # a map no larger than the window gets one window of its own size and no shift (timm's rule)
        self.window_size = tuple(r if r <= w else w for r, w in zip(resolution, window, strict=True))
        self.shift_size = tuple(
            0 if (not shifted or r <= w) else w // 2
            for r, w in zip(resolution, self.window_size, strict=True)
        )
        self.padded_resolution = tuple(
            -(-r // w) * w for r, w in zip(resolution, self.window_size, strict=True)
        )
        self.num_windows = (self.padded_resolution[0] // self.window_size[0]) * (
            self.padded_resolution[1] // self.window_size[1]
        )
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, self.window_size, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = (
            shift_mask(self.padded_resolution, self.window_size, self.shift_size)
            if any(self.shift_size)
            else None
        )
        self.register_buffer("attn_mask", mask, persistent=False)  # not in timm's state_dict either

    def attention_tokens(self, state: torch.Tensor) -> tuple[int, int]:
        n = self.window_size[0] * self.window_size[1]
        return n, n

    def _window_attention(self, x: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        B, H, W, C = x.shape
        if any(self.shift_size):
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        Hp, Wp = self.padded_resolution
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))  # after the shift, as timm
        windows = window_partition(x, self.window_size)
        windows = self.attn(windows, self.num_windows, mask=self.attn_mask, attn_bias=attn_bias)
        x = window_reverse(windows, self.window_size, Hp, Wp)[:, :H, :W]
        if any(self.shift_size):
            x = torch.roll(x, shifts=self.shift_size, dims=(1, 2))
        return x

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C); ``attn_bias`` broadcastable to (B, heads, N, N)."""
        B, H, W, C = x.shape
        if self.input_resolution != (H, W):
            raise ValueError(
                f"swin block built for a {self.input_resolution} map got {(H, W)}; build the backbone with "
                "the img_size of the input"
            )
        y = self.norm1(x.reshape(B, H * W, C)).reshape(B, H, W, C)
        x = x + self._window_attention(y, attn_bias)
        tokens = x.reshape(B, H * W, C)
        return (tokens + self.mlp(self.norm2(tokens))).reshape(B, H, W, C)


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> one token: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out_dim).

    Odd sizes are zero-padded at the bottom/right. The 4C features are ordered (0,0), (1,0), (0,1),
    (1,1) as (row, col) offsets, the original Swin's concatenation order that timm's weights expect.
    """

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        H2, W2 = x.shape[1] // 2, x.shape[2] // 2
        # (B, H2, dy, W2, dx, C) -> (B, H2, W2, dx, dy, C): dy varies fastest among the 4 neighbours
        x = x.view(B, H2, 2, W2, 2, C).permute(0, 1, 3, 4, 2, 5).reshape(B, H2, W2, 4 * C)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Image (B, 3, H, W) -> (B, H/p, W/p, C): stride-p convolution, then LayerNorm."""

    def __init__(self, img_size: tuple[int, int], patch_size: int, embed_dim: int):
        super().__init__()
        self.img_size = img_size
        self.grid_size = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"input is {tuple(x.shape[-2:])} but this Swin is built for {self.img_size}; resize the "
                "image or build the backbone with img_size=..."
            )
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SwinStage(nn.Module):
    """Optional patch merging (``downsample``), then the blocks (alternately unshifted / shifted)."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        resolution: tuple[int, int],
        depth: int,
        downsample: bool,
        num_heads: int,
        window: tuple[int, int],
        mlp_ratio: float,
        qkv_bias: bool,
    ):
        super().__init__()
        if downsample:
            self.downsample = PatchMerging(dim, out_dim)
            resolution = ((resolution[0] + 1) // 2, (resolution[1] + 1) // 2)
        else:
            self.downsample = nn.Identity()
        self.output_resolution = resolution
        self.blocks = nn.Sequential(
            *[
                SwinBlock(out_dim, resolution, num_heads, window, i % 2 == 1, mlp_ratio, qkv_bias)
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class SwinTransformer(Backbone):
    """Swin Transformer. State: (B, H, W, C), channels last, as in timm 1.x."""

    family = "swin"

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence = 7,
        mlp_ratio: float | Sequence[float] = 4.0,
        qkv_bias: bool = True,
        name: str = "swin",
    ):
        super().__init__()
        self.name = name
        self.img_size = to_pair(img_size)
        self.patch_size = patch_size
        if self.img_size[0] % patch_size or self.img_size[1] % patch_size:
            raise ConfigError(
                f"swin: img_size {self.img_size} is not a multiple of the patch size {patch_size}; "
                f"use a multiple of {patch_size}"
            )
        num_stages = len(depths)
        num_heads = per_stage(num_heads, num_stages, "num_heads", "swin")
        mlp_ratio = per_stage(mlp_ratio, num_stages, "mlp_ratio", "swin")
        windows = _stage_windows(window_size, num_stages)
        self.embed_dims = [int(embed_dim * 2**i) for i in range(num_stages)]
        self.num_features = self.embed_dims[-1]
        self.patch_embed = PatchEmbed(self.img_size, patch_size, embed_dim)
        resolution = self.patch_embed.grid_size
        stages = []
        for i in range(num_stages):
            stage = SwinStage(
                self.embed_dims[max(i - 1, 0)],
                self.embed_dims[i],
                resolution,
                depths[i],
                i > 0,
                num_heads[i],
                windows[i],
                mlp_ratio[i],
                qkv_bias,
            )
            resolution = stage.output_resolution
            stages.append(stage)
        self.layers = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(self.num_features)
        self._init_weights()
        self._steps = self._build_steps()

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("relative_position_bias_table"):
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _build_steps(self) -> list[Step]:
        steps = []
        for i, stage in enumerate(self.layers):
            if i > 0:
                steps.append(Step(f"layers.{i}.downsample", "transition", stage.downsample, stage=i))
            steps += [Step(f"layers.{i}.blocks.{j}", "block", b, stage=i) for j, b in enumerate(stage.blocks)]
        steps.append(Step("norm", "norm", self.norm, stage=len(self.layers) - 1))
        return steps

    # -- the step view ------------------------------------------------------------------------------
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x)

    def steps(self) -> list[Step]:
        return list(self._steps)

    def finalize(self, state: torch.Tensor) -> torch.Tensor:
        return state  # the final norm is the last step

    def feature_map(self, state: torch.Tensor, step_index: int) -> torch.Tensor:
        return state.permute(0, 3, 1, 2)

    def default_taps(self) -> list[int]:
        last_of_stage: dict[int, int] = {}
        for i, step in enumerate(self._steps):
            if step.kind == "block":
                last_of_stage[step.stage] = i
        return [last_of_stage[s] for s in sorted(last_of_stage)]

    def tap_channels(self, step_index: int) -> int:
        return self.embed_dims[self._steps[step_index].stage]

    def tap_stride(self, step_index: int) -> int:
        return self.patch_size * 2 ** self._steps[step_index].stage

    # -- checkpoints --------------------------------------------------------------------------------
    def checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the classifier and the derived buffers, move the patch mergings of original
        (Microsoft) checkpoints to the start of the next stage, and resize relative-position tables
        made for another window size (timm's resampling, :func:`resize_rel_pos_bias_table`)."""
        state_dict = super().checkpoint_filter(state_dict)
        old_layout = _OLD_LAYOUT_KEY in state_dict
        out = {}
        for key, value in state_dict.items():
            if key.endswith(("relative_position_index", "attn_mask")):
                continue  # recomputed from the window size, never stored by timm
            if old_layout:
                key = re.sub(
                    r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key
                )
            if key.endswith("relative_position_bias_table"):
                value = self._resize_table(key, value)
            out[key] = value
        return out

    def _resize_table(self, key: str, table: torch.Tensor) -> torch.Tensor:
        try:
            attn = self.get_submodule(key.rsplit(".", 1)[0])
        except AttributeError:
            return table  # not one of ours: the strict load names it
        if table.shape == attn.relative_position_bias_table.shape:
            return table
        if table.dim() != 2 or table.shape[1] != attn.num_heads:
            raise CheckpointError(
                f"{key}: checkpoint table has shape {tuple(table.shape)} but this model needs "
                f"(*, {attn.num_heads}) (one column per head); the checkpoint is for another architecture"
            )
        return resize_rel_pos_bias_table(table, attn.window_size)


def _geometric_offsets(src: int, dst: int) -> torch.Tensor:
    """Source positions for table resampling (BEiT's scheme, as timm): around the centre the source
    offsets keep unit spacing and grow by a ratio q chosen by bisection so that the outermost one
    lands near the target's outermost offset dst // 2. (src,) float32, symmetric about 0."""
    lo, hi = 1.01, 1.5
    q = lo
    while hi - lo > 1e-6:
        q = (lo + hi) / 2.0
        if (1.0 - q ** (src // 2)) / (1.0 - q) > dst // 2:
            hi = q
        else:
            lo = q
    offsets, cur = [], 1.0
    for i in range(src // 2):
        offsets.append(cur)
        cur += q ** (i + 1)
    return torch.tensor([-o for o in reversed(offsets)] + [0.0] + offsets)


def _linear_weights(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear interpolation on a sorted, uneven grid ``src`` at points ``dst``, clamped to the end
    values outside it: returns (left index, right index, weight of the right value), each (len(dst),)."""
    right = torch.bucketize(dst, src).clamp(max=src.numel() - 1)
    left = (right - 1).clamp(min=0)
    d_left = (dst - src[left]).clamp(min=0)
    d_right = (src[right] - dst).clamp(min=0)
    total = d_left + d_right
    w_right = torch.where(total > 0, d_left / total.clamp(min=1e-12), torch.full_like(total, 0.5))
    return left, right, w_right


def resize_rel_pos_bias_table(table: torch.Tensor, new_window: tuple[int, int]) -> torch.Tensor:
    """Resample a flat relative-position table ((2w-1)^2, heads) made for a square window w to
    ((2h'-1)(2w'-1), heads) for ``new_window`` (h', w'), the way timm does when it loads a checkpoint
    (``timm.layers.resize_rel_pos_bias_table``: source positions on a geometric progression, then
    per-head bilinear interpolation with edge clamping; not a plain bicubic resize)."""
    dst = (2 * new_window[0] - 1, 2 * new_window[1] - 1)
    num_pos, heads = table.shape
    side = round(num_pos**0.5)
    if side * side != num_pos:
        if num_pos == dst[0] * dst[1]:
            return table  # a non-square window of the same size: nothing to resample
        raise CheckpointError(
            f"relative-position table with {num_pos} rows is not for a square window and does not match "
            f"the {new_window} window of this model; build the model with the checkpoint's window_size"
        )
    if (side, side) == dst:
        return table
    grid = table.detach().float().cpu().t().reshape(heads, side, side)
    rows = _linear_weights(_geometric_offsets(side, dst[0]), torch.arange(dst[0]) - float(dst[0] // 2))
    cols = _linear_weights(_geometric_offsets(side, dst[1]), torch.arange(dst[1]) - float(dst[1] // 2))
    left, right, w = rows
    grid = grid[:, left] * (1 - w)[None, :, None] + grid[:, right] * w[None, :, None]  # (heads, dst_h, side)
    left, right, w = cols
    grid = grid[:, :, left] * (1 - w) + grid[:, :, right] * w  # (heads, dst_h, dst_w)
    return grid.reshape(heads, -1).t().contiguous().to(device=table.device, dtype=table.dtype)


def _swin(name: str, defaults: dict, kwargs: dict) -> SwinTransformer:
    """timm-style kwargs (img_size, embed_dim, depths, num_heads, window_size, mlp_ratio, ...) override
    the variant's defaults, as in ``timm.create_model(name, **kwargs)``."""
    return SwinTransformer(name=name, **{"patch_size": 4, "window_size": 7, **defaults, **kwargs})


@register_backbone
def swin_tiny_patch4_window7_224(**kwargs) -> SwinTransformer:
    """Swin-T: 96 wide, depths (2, 2, 6, 2), heads (3, 6, 12, 24), window 7 (27.5 M parameters)."""
    return _swin(
        "swin_tiny_patch4_window7_224",
        dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        kwargs,
    )


@register_backbone
def swin_small_patch4_window7_224(**kwargs) -> SwinTransformer:
    """Swin-S: 96 wide, depths (2, 2, 18, 2), heads (3, 6, 12, 24), window 7 (48.8 M parameters)."""
    return _swin(
        "swin_small_patch4_window7_224",
        dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
        kwargs,
    )


@register_backbone
def swin_base_patch4_window7_224(**kwargs) -> SwinTransformer:
    """Swin-B: 128 wide, depths (2, 2, 18, 2), heads (4, 8, 16, 32), window 7 (86.7 M parameters)."""
    return _swin(
        "swin_base_patch4_window7_224",
        dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
        kwargs,
    )
