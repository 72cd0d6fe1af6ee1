"""Shared light multi-scale decoder and per-task heads (method.md §7, ours).

[paper] "the decoders are shared but have different task heads". [ours] An FPN-style top-down fuse:
every tapped backbone feature is projected to ``channels`` by a 1x1 conv and placed on a pyramid
level; from the coarsest level down, the running map is upsampled and added to the next level, then
refined by a 3x3 conv. Plain ViTs have one stride (16) for every tap, so, as DPT does, the taps are
resampled to strides 4, 8, 16, 32 (earliest tap finest). Normalisation is GroupNorm, never
BatchNorm: BatchNorm statistics would mix the task streams folded into the batch (which TROA's
gradient reading and the stream independence rely on). Prediction happens at stride 4 and is
upsampled to the input size late (decoding at full resolution per stream was a large share of the
cost in our prototypes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: model.decoder values: one decoder shared by the tasks, or one decoder per task
DECODER_LAYOUTS = {
    "shared": "one multi-scale decoder for every task (each task stream decoded by the same weights)",
    "per_task": "one multi-scale decoder per task, each reading its own task's stream",
}


#: model.decoder_conv values: the 3x3 convolutions of the decoder and heads
DECODER_CONVS = {
    "full": "dense 3x3 convolutions (C*C*9 weights each)",
    "separable": "depthwise 3x3 then pointwise 1x1 (C*9 + C*C weights each): about 1/8 of a dense one at 64 ch",
}


#: model.decoder_resample values: how a tap reaches its pyramid level's size (single-stride backbones)
DECODER_RESAMPLING = {
    "interpolate": "bilinear interpolation (shrinking a map this way samples a few of its points)",
    "learned": "a depthwise strided convolution (down) or transposed convolution (up) per tap [ours]",
}


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ConvNormAct(nn.Sequential):
    """3x3 conv (dense, or depthwise-separable [ours]), GroupNorm, GELU. (S, cin, h, w) -> (S, cout, h, w)."""

    def __init__(self, cin: int, cout: int, k: int = 3, conv: str = "full"):
        if conv == "separable":
            layers: list[nn.Module] = [nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False),
                                       nn.Conv2d(cin, cout, 1, bias=False)]
        elif conv == "full":
            layers = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)]
        else:
            raise ValueError(f"decoder convolution '{conv}' is unknown; use one of {', '.join(DECODER_CONVS)}")
        super().__init__(*layers, _norm(cout), nn.GELU())


class LevelResample(nn.Module):
    """Learned move of a projected tap (S, ch, h, w) from stride ``tap_stride`` to ``level_stride`` [ours].

    An integer ratio f > 1 down: a depthwise f x f convolution of stride f, initialised as average pooling
    (every token contributes, where bilinear interpolation reads about one in f^2); up: a depthwise f x f
    transposed convolution of stride f, initialised as nearest-neighbour upsampling. Equal strides, or a
    ratio that is not an integer: nothing to learn (bilinear). A size off by the rounding of odd inputs is
    finished by bilinear interpolation, and so is a map smaller than the window. ``forward(x, size)`` -> (S, ch, *size).
    """

    def __init__(self, channels: int, tap_stride: int, level_stride: int):
        super().__init__()
        self.op: nn.Module | None = None
        if level_stride > tap_stride and level_stride % tap_stride == 0:
            f = level_stride // tap_stride
            self.op = nn.Conv2d(channels, channels, f, stride=f, groups=channels, bias=False)
            nn.init.constant_(self.op.weight, 1.0 / (f * f))
        elif tap_stride > level_stride and tap_stride % level_stride == 0:
            f = tap_stride // level_stride
            self.op = nn.ConvTranspose2d(channels, channels, f, stride=f, groups=channels, bias=False)
            nn.init.constant_(self.op.weight, 1.0)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        op = self.op
        # a map smaller than the pooling window (a tiny input) falls back to interpolation
        if op is not None and (isinstance(op, nn.ConvTranspose2d) or min(x.shape[-2:]) >= op.kernel_size[0]):
            x = op(x)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


class MultiScaleDecoder(nn.Module):
    """Fuse taps (S, C_i, H/s_i, W/s_i) into one (S, channels, H/4, W/4) map.

    in_channels / strides: per tap, in the backbone's order. ``level_strides`` (derived) is where each
    tap is placed: its own stride for pyramids, 4 * 2^k for single-stride (ViT) backbones.
    """

    def __init__(self, in_channels: list[int], strides: list[int], channels: int = 64, out_stride: int = 4,
                 conv: str = "full", resample: str = "interpolate"):
        super().__init__()
        if resample not in DECODER_RESAMPLING:
            raise ValueError(f"decoder resampling '{resample}' is unknown; use one of {', '.join(DECODER_RESAMPLING)}")
        if len(in_channels) != len(strides) or not in_channels:
            raise ValueError("the decoder needs one stride per tapped feature")
        self.out_stride = out_stride
        if len(set(strides)) == 1 and len(strides) > 1:
            self.level_strides = [out_stride * 2**k for k in range(len(strides))]
        else:
            self.level_strides = list(strides)
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = nn.ModuleList(ConvNormAct(channels, channels, conv=conv) for _ in in_channels)
        self.refine = ConvNormAct(channels, channels, conv=conv)
        self.resample = None
        if resample == "learned":
            self.resample = nn.ModuleList(LevelResample(channels, s, level)
                                          for s, level in zip(strides, self.level_strides, strict=True))

    def project(self, index: int, feature: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """1x1 projection of tap ``index`` placed at its pyramid level's size. (S, C_i, h, w) -> (S, ch, h', w')."""
        x = self.lateral[index](feature)
        size = self.level_size(index, image_hw)
        if self.resample is not None:
            return self.resample[index](x, size)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def level_size(self, index: int, image_hw: tuple[int, int]) -> tuple[int, int]:
        s = self.level_strides[index]
        return (max(1, -(-image_hw[0] // s)), max(1, -(-image_hw[1] // s)))

    def fuse_levels(self, projected: list[torch.Tensor], image_hw: tuple[int, int]) -> torch.Tensor:
        """Top-down fuse of already projected levels (all with the same batch S)."""
        order = sorted(range(len(projected)), key=lambda i: -self.level_strides[i])  # coarsest first
        x = None
        for i in order:
            level = projected[i]
            if x is not None:
                level = level + F.interpolate(x, size=level.shape[-2:], mode="bilinear", align_corners=False)
            x = self.fuse[i](level)
        out_size = (max(1, -(-image_hw[0] // self.out_stride)), max(1, -(-image_hw[1] // self.out_stride)))
        if x.shape[-2:] != out_size:
            x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
        return self.refine(x)


class TaskHead(nn.Module):
    """Per-task head: 3x3 conv (dense or separable), GELU, 1x1 conv to the task's output channels.
    (S, ch, h, w) -> (S, out, h, w)."""

    def __init__(self, channels: int, out_channels: int, conv: str = "full"):
        super().__init__()
        self.conv = ConvNormAct(channels, channels, conv=conv)
        self.out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x))
