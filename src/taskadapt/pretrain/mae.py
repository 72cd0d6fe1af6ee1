"""The masked autoencoder (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners") and its
pure tensor helpers: fixed 2D sine-cosine positions, patchify/unpatchify in the ViT's patch order,
per-patch-normalised targets, per-sample random masking, and :class:`MaskedAutoencoder`, which runs one
of our ViTs on the visible patches only and reconstructs every patch with a light decoder. No data,
no optimiser, no files: the recipe (:mod:`taskadapt.pretrain.recipe`) trains it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from taskadapt.errors import ConfigError
from taskadapt.models.backbones.vit import Block, VisionTransformer


def sincos_pos_embed(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding (MAE): (gh * gw, dim), half the channels encode the row,
    half the column, each as sin/cos of the position at geometrically spaced frequencies."""
    if dim % 4:
        raise ValueError(f"a 2D sine-cosine embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(
        torch.arange(grid[0], dtype=torch.float64), torch.arange(grid[1], dtype=torch.float64), indexing="ij"
    )
    parts = []
    for pos in (rows.reshape(-1), cols.reshape(-1)):
        angles = pos[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch * patch * C), patches in the row-major order of the ViT's patch
    grid, pixels of a patch ordered (row, column, channel)."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // patch) * (W // patch), patch * patch * C)


def unpatchify(patches: torch.Tensor, patch: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, N, patch * patch * C) -> (B, C, H, W)."""
    B, N, D = patches.shape
    gh, gw = grid
    C = D // (patch * patch)
    x = patches.reshape(B, gh, gw, patch, patch, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(B, C, gh * patch, gw * patch)


def normalized_targets(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch normalised pixels (MAE's ``norm_pix_loss``): (B, N, D) with zero mean and unit
    variance over each patch's D values. It removes each patch's brightness and contrast, so the
    model must predict structure (edges, texture) rather than colour averages."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True, unbiased=False)
    return (patches - mean) / (var + eps).sqrt()


def random_masking(
    batch: int, num_patches: int, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample uniform random masking. Returns ``keep`` (B, N_keep) int64, the visible patch
    indices in increasing order, and ``mask`` (B, N) bool, True where a patch is masked. Exactly
    ``round(N * (1 - mask_ratio))`` (at least 1) patches stay visible in every sample."""
    num_keep = max(1, round(num_patches * (1.0 - mask_ratio)))
    noise = torch.rand(batch, num_patches, generator=generator)
    keep = noise.argsort(dim=1)[:, :num_keep].sort(dim=1).values
    mask = torch.ones(batch, num_patches, dtype=torch.bool)
    mask.scatter_(1, keep, False)
    return keep, mask


class MaskedAutoencoder(nn.Module):
    """MAE around one of our ViTs: the encoder runs on the visible patches only; a light decoder
    reconstructs every patch from the encoded visible tokens plus shared mask tokens.

    Building it sets the encoder's position embedding to fixed 2D sine-cosine values (class token
    slot 0) and freezes it, as MAE does; the saved encoder keeps those values.
    """

    def __init__(
        self,
        encoder: VisionTransformer,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        mask_ratio: float = 0.75,
        visible_weight: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if not (math.isfinite(visible_weight) and visible_weight >= 0.0):
            raise ConfigError(f"visible_weight must be a finite number >= 0, got {visible_weight}")
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.visible_weight = visible_weight
        self.patch = encoder.patch_size
        self.grid = encoder.grid_size
        num_patches = self.grid[0] * self.grid[1]
        with torch.no_grad():
            encoder.pos_embed.zero_()
            encoder.pos_embed[0, 1:] = sincos_pos_embed(self.grid, encoder.embed_dim)
        encoder.pos_embed.requires_grad_(False)
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_pos", sincos_pos_embed(self.grid, decoder_dim)[None], persistent=False)
        blocks = [Block(decoder_dim, decoder_heads) for _ in range(decoder_depth)]
        self.decoder_blocks = nn.Sequential(*blocks)
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * 3)
        self.num_patches = num_patches

    def encode_visible(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) and visible indices (B, K) -> encoded (B, 1 + K, C)."""
        enc = self.encoder
        tokens = enc.patch_embed(x) + enc.pos_embed[:, 1:]
        tokens = tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        out = enc.blocks(torch.cat([cls, tokens], dim=1))
        return enc.norm(out)

    def decode(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Encoded (B, 1 + K, C) -> predicted pixels of every patch (B, N, patch * patch * 3)."""
        visible = self.decoder_embed(latent[:, 1:])  # the class token is not decoded
        B, _, D = visible.shape
        full = self.mask_token.expand(B, self.num_patches, D)
        full = full.scatter(1, keep[..., None].expand(-1, -1, D), visible) + self.decoder_pos
        return self.decoder_pred(self.decoder_norm(self.decoder_blocks(full)))

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised images (B, 3, H, W) -> (loss, predictions (B, N, D), mask (B, N) bool).

        loss = mean error over masked patches + ``visible_weight`` x mean error over visible ones.
        MAE uses the masked term only; the visible term (ours, for a *frozen* encoder) makes every
        token keep its own patch's structure through all blocks, which dense heads read but cannot
        recover once the frozen encoder has discarded it.
        """
        keep, mask = random_masking(x.shape[0], self.num_patches, self.mask_ratio, generator)
        keep, mask = keep.to(x.device), mask.to(x.device)
        pred = self.decode(self.encode_visible(x, keep), keep)
        target = normalized_targets(patchify(x, self.patch))
        per_patch = (pred - target).pow(2).mean(dim=-1)
        loss = _mean_where(per_patch, mask)
        if self.visible_weight > 0:
            loss = loss + self.visible_weight * _mean_where(per_patch, ~mask)
        return loss, pred, mask


def _mean_where(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, N) over the True entries of ``where`` (B, N) bool (0 if none)."""
    return (values * where).sum() / where.sum().clamp_min(1)
