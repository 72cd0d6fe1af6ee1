"""Are the bundled backbone's frozen features more informative than random ones? Linear probes.

    python benchmarks/pretrain_probe.py [--weights bundled [FILE ...]] [--train 1024] [--val 256] [--steps 1500]

For each encoder -- ``vit_tiny_patch8_64`` at random initialisation, the same with the bundled (or
given) weights, and raw 8x8 pixel patches as a reference -- fit a 1x1 convolution from frozen
stride-8 features to the scene classes on ``studio`` scenes (seed 0, the demo's data), upsample the
logits bilinearly to 64 px and report the validation mIoU (:class:`SegmentationMetric`). Features:
the four default taps (blocks 3, 6, 9, 12) concatenated, and the last block alone. Each feature
channel is standardised with training-set statistics so the probe's optimisation is equally easy
for every encoder. Prints a table.

A second table reads each tap token by token: a ridge regression from one token's frozen features to
its own 8 x 8 patch of raw pixels, log-depth, normals and edge labels, with the validation R^2 (1 = the
patch's values are a linear function of the token, 0 = no better than their mean). "pixels" measures
how much of the patch's own detail the encoder keeps; the others, how linearly readable each task is.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from taskadapt.data.scenes import CLASS_NAMES, render_scenes
from taskadapt.metrics.segmentation import SegmentationMetric
from taskadapt.models.backbones import create_backbone
from taskadapt.pretrain.data import normalize
from taskadapt.pretrain.mae import patchify

NUM_CLASSES = len(CLASS_NAMES)


@torch.no_grad()
def tap_features(backbone, images: torch.Tensor, taps: list[int], batch: int = 128) -> torch.Tensor:
    """Images (B, 3, 64, 64) -> concatenated feature maps of steps ``taps`` (B, len(taps) * C, 8, 8)."""
    steps = backbone.steps()
    out = []
    for i in range(0, len(images), batch):
        state = backbone.stem(normalize(images[i : i + batch], backbone))
        maps = []
        for k, step in enumerate(steps[: max(taps) + 1]):
            state = step(state)
            if k in taps:
                maps.append(backbone.feature_map(state, k))
        out.append(torch.cat(maps, dim=1))
    return torch.cat(out)


def pixel_features(images: torch.Tensor, patch: int = 8) -> torch.Tensor:
    """Raw patch pixels as features: (B, 3, H, W) -> (B, 3 * patch * patch, H / patch, W / patch)."""
    B, _, H, W = images.shape
    return patchify(images, patch).transpose(1, 2).reshape(B, -1, H // patch, W // patch)


def probe_miou(train_x, train_y, val_x, val_y, steps: int, seed: int = 0) -> float:
    """Fit a 1x1 conv on standardised features (B, C, h, w) -> logits upsampled to the labels'
    size; returns the validation mIoU."""
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True) + 1e-6
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    torch.manual_seed(seed)
    probe = torch.nn.Conv2d(train_x.shape[1], NUM_CLASSES, 1)
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    size = train_y.shape[-2:]
    for _ in range(steps):
        idx = torch.randint(len(train_x), (128,), generator=gen)
        logits = F.interpolate(probe(train_x[idx]), size=size, mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, train_y[idx], ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    metric = SegmentationMetric(NUM_CLASSES)
    with torch.no_grad():
        for i in range(0, len(val_x), 128):
            logits = F.interpolate(probe(val_x[i : i + 128]), size=size, mode="bilinear", align_corners=False)
            metric.update(logits, val_y[i : i + 128])
    return float(metric.compute()["mIoU"])


def ridge_r2(train_x, train_y, val_x, val_y, lam: float = 1e-4) -> float:
    """Ridge regression (tokens (N, C) -> targets (N, D), features standardised, penalty ``lam * N``);
    validation R^2 over all D outputs."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    design = [torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1) for x in (train_x, val_x)]
    gram = design[0].T @ design[0] + lam * len(train_x) * torch.eye(design[0].shape[1], dtype=train_x.dtype)
    pred = design[1] @ torch.linalg.solve(gram, design[0].T @ train_y)
    return float(1 - (pred - val_y).pow(2).sum() / (val_y - val_y.mean(0)).pow(2).sum())


def patch_targets(split: dict[str, torch.Tensor], patch: int = 8) -> dict[str, torch.Tensor]:
    """Per-token targets (B * N, patch * patch * channels): pixels, log-depth, normals, edges."""
    maps = {"pixels": split["image"], "log-depth": split["depth"].log(), "normals": split["normals"],
            "edges": split["edge"]}
    return {k: patchify(v, patch).reshape(-1, patch * patch * v.shape[1]).double() for k, v in maps.items()}


def tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B * h * w, C) in patchify's token order."""
    return feature_map.flatten(2).transpose(1, 2).reshape(-1, feature_map.shape[1]).double()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", nargs="+", default=["bundled"],
                        help="pretrained= values of the encoders to compare with random init")
    parser.add_argument("--train", type=int, default=1024)
    parser.add_argument("--val", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()

    start = time.perf_counter()
    train = render_scenes("studio", "train", range(args.train), size=64, seed=0)
    val = render_scenes("studio", "val", range(args.val), size=64, seed=0)
    print(f"rendered {args.train} + {args.val} studio scenes in {time.perf_counter() - start:.0f} s")
    torch.manual_seed(0)
    encoders = {"random init": create_backbone("vit_tiny_patch8_64").eval()}
    for weights in args.weights:
        label = weights if weights == "bundled" else Path(weights).stem  # a file: its name, short
        encoders[f"pretrained ({label})"] = create_backbone("vit_tiny_patch8_64", pretrained=weights).eval()
    rows = [("raw 8x8 pixels", "-", pixel_features(train["image"]), pixel_features(val["image"]))]
    for name, enc in encoders.items():
        taps = enc.default_taps()
        tap_names = "taps " + "+".join(str(t + 1) for t in taps)
        for label, chosen in ((tap_names, taps), ("last block", [taps[-1]])):
            feats = [tap_features(enc, split["image"], chosen) for split in (train, val)]
            rows.append((name, label, *feats))
    print(
        f"\n1x1-conv semseg probe, {args.train} train / {args.val} val studio scenes (seed 0), "
        f"{args.steps} steps"
    )
    print(f"| {'encoder':<28} | {'features':<14} | {'channels':>8} | {'val mIoU':>8} | {'time s':>6} |")
    print(f"|{'-' * 30}|{'-' * 16}|{'-' * 10}|{'-' * 10}|{'-' * 8}|")
    for name, label, tx, vx in rows:
        t = time.perf_counter()
        miou = probe_miou(tx, train["semseg"], vx, val["semseg"], args.steps)
        seconds = time.perf_counter() - t
        print(f"| {name:<28} | {label:<14} | {tx.shape[1]:>8} | {miou:>8.3f} | {seconds:>6.0f} |")

    targets = [patch_targets(train), patch_targets(val)]
    names = list(targets[0])
    print("\nper-token ridge probes (validation R^2 of the token's own 8x8 patch)")
    print(f"| {'encoder':<28} | {'block':>5} | " + " | ".join(f"{n:>9}" for n in names) + " |")
    print(f"|{'-' * 30}|{'-' * 7}|" + "|".join("-" * 11 for _ in names) + "|")
    for name, enc in encoders.items():
        for tap in enc.default_taps():
            feats = [tokens(tap_features(enc, split["image"], [tap])) for split in (train, val)]
            r2 = [ridge_r2(feats[0], targets[0][n], feats[1], targets[1][n]) for n in names]
            print(f"| {name:<28} | {tap + 1:>5} | " + " | ".join(f"{v:>9.3f}" for v in r2) + " |")


if __name__ == "__main__":
    main()
