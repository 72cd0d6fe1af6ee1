"""Self-supervised pretraining of taskadapt's default backbone (``vit_tiny_patch8_64``).

Recipe (docs/pretraining.md argues the choices): a masked autoencoder (He et al. 2022, "Masked
Autoencoders Are Scalable Vision Learners") on procedural scenes of the ``pretrain`` appearance
domain, which no downstream label and no demo scene ever enters:

* images: 64 px scenes rendered on the fly into a pool that is partly re-rendered every step (fresh
  scenes at a fraction of the rendering cost), random resized crops and horizontal flips;
* the encoder sees only the 25 % visible patches (16 of 64 tokens + the class token): this is what
  makes MAE cheap enough for a CPU;
* a light decoder (2 blocks, 128 wide) fills in mask tokens and predicts every patch's pixels; the
  loss is the MSE on the *masked* patches of per-patch-normalised pixels (MAE's ``norm_pix_loss``);
* AdamW (betas 0.9/0.95, weight decay 0.05), linear warm-up then cosine decay, on a step or a
  wall-clock budget.

Only the encoder is saved (timm parameter names, float16 safetensors, strict-loadable by
``create_backbone("vit_tiny_patch8_64", pretrained=<file>)``) with a provenance JSON next to it.

    python -m taskadapt.pretrain --out weights.safetensors --minutes 20 --seed 1000
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from taskadapt.errors import ConfigError
from taskadapt.io import atomic_open, write_json
from taskadapt.models.backbones import create_backbone
from taskadapt.models.backbones.bundled import provenance_path
from taskadapt.models.backbones.vit import Block, VisionTransformer

BACKBONE = "vit_tiny_patch8_64"
DOMAIN = "pretrain"
SPLIT = "train"


# -- model --------------------------------------------------------------------------------------------
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


# -- data ---------------------------------------------------------------------------------------------
class ScenePool:
    """A ring buffer of ``pool_size`` rendered scenes; :meth:`refresh` replaces the oldest ``count``
    with never-seen scenes (consecutive indices of ``split`` under ``seed``). Images (P, 3, S, S)."""

    def __init__(self, pool_size: int, size: int = 64, seed: int = 1000, domain: str = DOMAIN):
        from taskadapt.data.scenes import render_scenes

        self._render = render_scenes
        self.size, self.seed, self.domain = size, seed, domain
        self.next_index = 0
        self.slot = 0
        self.images = self._next(pool_size)

    def _next(self, count: int) -> torch.Tensor:
        indices = range(self.next_index, self.next_index + count)
        self.next_index += count
        return self._render(self.domain, SPLIT, indices, size=self.size, seed=self.seed)["image"]

    def refresh(self, count: int) -> None:
        if count <= 0:
            return
        fresh = self._next(count)
        slots = (torch.arange(count) + self.slot) % len(self.images)
        self.images[slots] = fresh
        self.slot = int(slots[-1] + 1) % len(self.images)

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        return self.images[torch.randint(len(self.images), (batch,), generator=generator)]


def augment(
    images: torch.Tensor, generator: torch.Generator, min_area: float = 0.4, max_ratio: float = 4 / 3
) -> torch.Tensor:
    """Random resized crop (area fraction in [min_area, 1], aspect ratio in [1/max_ratio, max_ratio])
    and horizontal flip, resampled bilinearly to the input size: (B, 3, H, W) -> (B, 3, H, W). One
    affine grid for the whole batch, no per-image loop."""
    B = images.shape[0]
    u = torch.rand(B, 4, generator=generator)
    area = min_area + (1.0 - min_area) * u[:, 0]
    log_ratio = (u[:, 1] * 2 - 1) * math.log(max_ratio)
    sx = (area * log_ratio.exp()).sqrt().clamp(max=1.0)  # crop width / image width
    sy = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    tx = (u[:, 2] * 2 - 1) * (1 - sx)  # centre, in [-1, 1] grid units, crop inside the image
    ty = (u[:, 3] * 2 - 1) * (1 - sy)
    flip = torch.where(torch.rand(B, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def normalize(images: torch.Tensor, backbone: VisionTransformer) -> torch.Tensor:
    """[0, 1] images -> the input range the backbone expects."""
    mean = torch.tensor(backbone.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


# -- schedule and saving ------------------------------------------------------------------------------
def learning_rate(progress: float, peak: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction of the budget, then cosine decay to 0."""
    if progress < warmup:
        return peak * progress / warmup
    t = min(1.0, (progress - warmup) / max(1e-12, 1.0 - warmup))
    return peak * 0.5 * (1.0 + math.cos(math.pi * t))


def save_encoder(encoder: VisionTransformer, path: Path) -> str:
    """Write the encoder's state dict as float16 safetensors, atomically; returns its sha256."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in encoder.state_dict().items()}
    metadata = {"format": "pt", "backbone": encoder.name, "producer": "taskadapt.pretrain"}
    data = save(tensors, metadata=metadata)
    with atomic_open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


# -- the recipe ---------------------------------------------------------------------------------------
def pretrain(
    out: str | os.PathLike,
    minutes: float | None = None,
    steps: int | None = None,
    seed: int = 1000,
    batch_size: int = 64,
    lr: float = 1.5e-3,
    weight_decay: float = 0.05,
    warmup: float = 0.05,
    mask_ratio: float = 0.75,
    pool_size: int = 2048,
    refresh: int | None = None,
    progress: bool = True,
    device: str = "cpu",
    figure: str | os.PathLike | None = None,
    command: str | None = None,
    backbone_kwargs: dict | None = None,
    decoder_dim: int = 128,
    decoder_depth: int = 2,
    visible_weight: float = 0.0,
    init_from: str | os.PathLike | None = None,
) -> Path:
    """Pretrain ``vit_tiny_patch8_64`` with MAE and save its encoder to ``out``.

    Stops after ``minutes`` of wall-clock time or ``steps`` optimiser steps, whichever comes first
    (at least one is required); the learning-rate schedule follows the same budget. Scene geometry
    comes from ``seed`` (keep it different from the demo's seed 0). ``refresh`` new scenes replace
    pool entries every step (default ``batch_size // 2``: each scene is seen about twice, each
    time with another crop and mask; rendering is then ~10 % of a step). ``figure``: also write a
    PNG of masked inputs and reconstructions of held-out scenes. ``backbone_kwargs`` override the
    architecture (tests use a tiny model). ``visible_weight``: weight of the loss on the visible
    patches (0 = MAE's masked-only loss). ``init_from``: continue from an encoder written by an earlier
    run (a second stage; the MAE decoder starts afresh, the earlier provenance is embedded in the new
    one). Writes ``out`` (float16 safetensors) and ``out`` with
    suffix ``.json`` (provenance) atomically and returns ``out``.
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"pretrain writes safetensors; name the output file *.safetensors, not {out.name}")
    if minutes is None and steps is None:
        raise ConfigError("give a budget: minutes=... (wall clock) and/or steps=... (optimiser steps)")
    if (minutes is not None and minutes <= 0) or (steps is not None and steps < 1):
        raise ConfigError(f"the budget must be positive, got minutes={minutes}, steps={steps}")
    if batch_size < 1 or pool_size < 1:
        raise ConfigError(f"batch_size and pool_size must be >= 1, got {batch_size} and {pool_size}")
    refresh = max(1, batch_size // 2) if refresh is None else refresh
    budget_s = None if minutes is None else 60.0 * minutes
    stage_before = _previous_stage(init_from) if init_from is not None else None

    torch.manual_seed(seed)
    encoder = create_backbone(BACKBONE, pretrained=None if init_from is None else str(init_from),
                              **(backbone_kwargs or {}))
    model = MaskedAutoencoder(encoder, decoder_dim, decoder_depth, mask_ratio=mask_ratio,
                              visible_weight=visible_weight).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    # no weight decay on norms, biases, tokens (MAE / timm convention)
    decay = [p for p in params if p.ndim >= 2 and p is not model.mask_token and p is not encoder.cls_token]
    no_decay = [p for p in params if all(p is not q for q in decay)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(seed)

    start = time.perf_counter()
    pool = ScenePool(pool_size, size=encoder.img_size[0], seed=seed)
    train_start = time.perf_counter()
    step, ema, curve = 0, None, []
    bar = _ProgressBar(progress, budget_s, steps)
    with bar:
        while True:
            elapsed = time.perf_counter() - train_start
            frac = max(elapsed / budget_s if budget_s else 0.0, step / steps if steps else 0.0)
            if frac >= 1.0:
                break
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(frac, lr, warmup)
            images = augment(pool.sample(batch_size, gen), gen).to(device)
            loss, _, _ = model(normalize(images, encoder), generator=gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            pool.refresh(refresh)
            step += 1
            value = loss.item()
            if not math.isfinite(value):
                raise RuntimeError(f"pretraining diverged at step {step} (loss {value}); lower lr (now {lr})")
            ema = value if ema is None else 0.98 * ema + 0.02 * value
            if step == 1 or step % 25 == 0:
                curve.append([step, round(elapsed, 1), round(ema, 5)])
            bar.update(step, time.perf_counter() - train_start, ema)
    duration = time.perf_counter() - start
    curve.append([step, round(time.perf_counter() - train_start, 1), round(ema, 5)])

    sha = save_encoder(encoder.cpu(), out)
    if figure is not None:
        save_reconstructions(model.cpu(), figure, seed=seed)
    provenance = {
        "backbone": encoder.name,
        "architecture": {
            "img_size": list(encoder.img_size),
            "patch_size": encoder.patch_size,
            "embed_dim": encoder.embed_dim,
            "depth": len(encoder.blocks),
            "num_heads": encoder.blocks[0].attn.num_heads,
        },
        "objective": (
            f"MAE: {mask_ratio:.0%} of patches masked, encoder on visible patches only, decoder "
            f"{decoder_depth} x {decoder_dim}, MSE on per-patch-normalised pixels of masked patches"
            + (f" + {visible_weight:g} x the same on visible patches" if visible_weight > 0 else "")
        ),
        "visible_weight": visible_weight,
        "init_from": stage_before,
        "data": {
            "domain": DOMAIN,
            "split": SPLIT,
            "seed": seed,
            "image_size": encoder.img_size[0],
            "scenes_rendered": pool.next_index,
            "pool_size": pool_size,
            "refresh_per_step": refresh,
            "augmentation": "random resized crop (area 0.4-1, ratio 3/4-4/3), horizontal flip",
        },
        "command": command or _call_string(out, minutes, steps, seed, visible_weight, init_from),
        "seed": seed,
        "steps": step,
        "images_seen": step * batch_size,
        "batch_size": batch_size,
        "optimizer": {"name": "AdamW", "lr": lr, "betas": [0.9, 0.95], "weight_decay": weight_decay},
        "schedule": f"linear warm-up over {warmup:.0%} of the budget, then cosine to 0",
        "budget": {"minutes": minutes, "steps": steps},
        "duration_s": round(duration, 1),
        "train_s": round(time.perf_counter() - train_start, 1),
        "final_loss": round(ema, 5),
        "loss_curve": curve,
        "machine": {
            "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": device,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "torch_version": torch.__version__,
        "taskadapt_version": _version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "weights": {"file": out.name, "dtype": "float16", "sha256": sha, "bytes": out.stat().st_size},
    }
    write_json(provenance_path(out), provenance)
    return out


def _previous_stage(path: str | os.PathLike) -> dict:
    """What a second stage records of the encoder it starts from: file, sha256 and, when the file
    has one beside it, that run's provenance (so the chain of commands stays reproducible)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"init_from: no such file {path}; give an encoder written by `taskadapt pretrain`")
    record: dict = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    prov = provenance_path(path)
    if prov.is_file():
        try:
            record["provenance"] = json.loads(prov.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"init_from: unreadable provenance {prov} ({exc}); remove or restore it") from exc
    return record


class _ProgressBar:
    """A rich progress bar over the budget (seconds or steps) showing the smoothed loss and the ETA."""

    def __init__(self, enabled: bool, budget_s: float | None, steps: int | None):
        self.enabled, self.budget_s, self.steps = enabled, budget_s, steps
        self._progress = None

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("pretrain"),
                BarColumn(),
                TextColumn("step {task.fields[step]}  loss {task.fields[loss]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self._progress.__enter__()
            total = self.budget_s if self.budget_s is not None else self.steps
            self._task = self._progress.add_task("pretrain", total=total, step=0, loss="-")
        return self

    def update(self, step: int, elapsed: float, loss: float) -> None:
        if self._progress is None:
            return
        done = elapsed if self.budget_s is not None else step
        if self.budget_s is not None and self.steps is not None:  # whichever budget is closer to its end
            done = max(elapsed, self.budget_s * step / self.steps)
        self._progress.update(
            self._task, completed=min(done, self._progress.tasks[0].total), step=step, loss=f"{loss:.4f}"
        )

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def _call_string(out: Path, minutes: float | None, steps: int | None, seed: int,
                 visible_weight: float = 0.0, init_from: str | os.PathLike | None = None) -> str:
    """The command line equivalent to a Python call (recorded when no command is given)."""
    args = [f"--out {shlex.quote(str(out))}", f"--seed {seed}"]
    args += [f"--minutes {minutes:g}"] if minutes is not None else []
    args += [f"--steps {steps}"] if steps is not None else []
    args += [f"--init-from {shlex.quote(str(init_from))}"] if init_from is not None else []
    args += [f"--visible-weight {visible_weight:g}"] if visible_weight > 0 else []
    return "python -m taskadapt.pretrain " + " ".join(args)


def _version() -> str:
    from taskadapt import __version__

    return __version__


# -- sanity picture -----------------------------------------------------------------------------------
@torch.no_grad()
def save_reconstructions(
    model: MaskedAutoencoder, path: str | os.PathLike, seed: int = 1000, count: int = 6
) -> Path:
    """PNG with, per held-out ``val`` scene of the pretraining domain: the image, the masked input
    (masked patches grey), the reconstruction (each predicted patch de-normalised with the true
    patch's mean and std, as in the MAE paper's figures) and the reconstruction with the visible
    patches pasted back."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from taskadapt.data.scenes import render_scenes
    from taskadapt.viz import save_figure

    model.eval()
    enc = model.encoder
    images = render_scenes(DOMAIN, "val", range(count), size=enc.img_size[0], seed=seed)["image"]
    x = normalize(images, enc)
    _, pred, mask = model(x, generator=torch.Generator().manual_seed(seed))
    p = model.patch
    target = patchify(images, p)
    mean, std = target.mean(-1, keepdim=True), (target.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
    recon = pred * std + mean  # back to [0, 1] pixels
    m = mask[..., None].float()
    rows = {
        "image": images,
        "masked input": unpatchify(target * (1 - m) + 0.5 * m, p, model.grid),
        "reconstruction": unpatchify(recon, p, model.grid),
        "recon. + visible": unpatchify(recon * m + target * (1 - m), p, model.grid),
    }
    fig, axes = plt.subplots(len(rows), count, figsize=(1.6 * count, 1.7 * len(rows)), squeeze=False)
    for r, (label, batch) in enumerate(rows.items()):
        for c in range(count):
            ax = axes[r, c]
            ax.imshow(batch[c].clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"MAE reconstructions, {model.mask_ratio:.0%} masked (held-out pretrain scenes)", fontsize=9)
    fig.tight_layout()
    model.train()
    return save_figure(fig, path)


# -- command line -------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m taskadapt.pretrain --out FILE [--minutes M] [--steps N] [--seed S] ...``"""
    parser = argparse.ArgumentParser(prog="python -m taskadapt.pretrain", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output .safetensors file")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget")
    parser.add_argument("--steps", type=int, default=None, help="optimiser-step budget")
    parser.add_argument("--seed", type=int, default=1000, help="scene and initialisation seed (not 0)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--visible-weight", type=float, default=0.0,
                        help="weight of the loss on visible patches (0 = MAE's masked-only loss)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="continue from an encoder written by an earlier run (second stage)")
    parser.add_argument("--figure", type=Path, default=None, help="also write a reconstructions PNG")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    return pretrain(
        args.out,
        minutes=args.minutes,
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        visible_weight=args.visible_weight,
        init_from=args.init_from,
        figure=args.figure,
        progress=not args.no_progress,
        command=" ".join(["python -m taskadapt.pretrain", *map(shlex.quote, given)]),
    )


if __name__ == "__main__":
    main()
