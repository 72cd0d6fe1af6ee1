"""The pretraining recipe: :func:`pretrain` builds the MAE around ``vit_tiny_patch8_64``, runs the
AdamW loop on a step or wall-clock budget (learning rate from :func:`taskadapt.train.schedule.warmup_cosine`
over the fraction of the budget used), shows a progress bar, then saves the encoder alone (float16
safetensors, strict-loadable by ``create_backbone``) with a provenance JSON beside it, and optionally
a PNG of reconstructions. ``taskadapt pretrain`` (:mod:`taskadapt.cli`) is its command line.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
import shlex
import time
from pathlib import Path

import torch

from taskadapt.errors import ConfigError
from taskadapt.io import atomic_open, write_json
from taskadapt.models.backbones import create_backbone
from taskadapt.models.backbones.bundled import provenance_path
from taskadapt.models.backbones.vit import VisionTransformer
from taskadapt.pretrain.data import DOMAIN, SPLIT, ScenePool, augment, normalize
from taskadapt.pretrain.mae import MaskedAutoencoder, patchify, unpatchify
from taskadapt.train.schedule import warmup_cosine

BACKBONE = "vit_tiny_patch8_64"
#: the scene seed of every evaluation set (demo, configs): pretraining keeps away from its geometry
EVALUATION_SEED = 0


# -- saving -------------------------------------------------------------------------------------------
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
    overwrite: bool = False,
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
    suffix ``.json`` (provenance) atomically and returns ``out``; an existing ``out`` is replaced only with
    ``overwrite`` (the shipped weights are one such file). ``seed`` 0 is refused: it is the evaluation
    scenes' seed, whose geometry pretraining must not see.
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"pretrain writes safetensors; name the output file *.safetensors, not {out.name}")
    if out.exists() and not overwrite:
        raise ConfigError(f"'{out}' already exists; choose another --out, or pass --overwrite to replace it")
    if seed == EVALUATION_SEED:
        raise ConfigError(f"seed {seed} is the evaluation scenes' seed (the demo and the configs test on its "
                          "geometry); pretrain on another seed, e.g. --seed 1000")
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
                group["lr"] = warmup_cosine(frac, warmup, peak=lr)
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
    return "taskadapt pretrain " + " ".join(args)


def _version() -> str:
    from taskadapt.version import __version__

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
