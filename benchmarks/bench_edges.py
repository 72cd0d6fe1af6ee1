"""Time EdgeMetric (update + compute = ODS/OIS/AP) on 100 synthetic 256x256 images, 99 thresholds.

Inputs imitate a real edge detector: GT = 1-px boundaries of random ellipses and rectangles; the
prediction is that boundary map, slightly displaced, blurred (thick soft ridges), with clutter edges
and noise, scaled to [0, 1].

    python benchmarks/bench_edges.py [--images 100] [--size 256] [--thresholds 99]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from scipy import ndimage

from taskadapt.metrics import EdgeMetric


def _shapes_boundary(rng: np.random.Generator, size: int, n_shapes: int) -> np.ndarray:
    """1-px boundaries of a partition made of random ellipses and rectangles, (size, size) bool."""
    labels = np.zeros((size, size), dtype=np.int32)
    yy, xx = np.mgrid[:size, :size]
    for k in range(1, n_shapes + 1):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(size * 0.05, size * 0.3, 2)
        if rng.random() < 0.5:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        labels[mask] = k
    edge = np.zeros_like(labels, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def synthetic_batch(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, size, size) predictions in [0, 1] and {0, 1} targets."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n):
        gt = _shapes_boundary(rng, size, int(rng.integers(3, 8)))
        shifted = ndimage.shift(gt.astype(np.float64), rng.uniform(-1.5, 1.5, 2), order=1)
        clutter = _shapes_boundary(rng, size, int(rng.integers(1, 4))).astype(np.float64) * 0.5
        soft = ndimage.gaussian_filter(shifted + clutter, sigma=rng.uniform(1.0, 2.0))
        soft += ndimage.gaussian_filter(rng.random((size, size)), 2.0) * 0.05
        soft = soft / soft.max()
        preds.append(soft)
        targets.append(gt)
    p = torch.from_numpy(np.stack(preds)[:, None]).float()
    t = torch.from_numpy(np.stack(targets)[:, None]).float()
    return p, t


def _time(metric: EdgeMetric, preds: torch.Tensor, targets: torch.Tensor, batch: int) -> tuple[float, dict]:
    start = time.perf_counter()
    for i in range(0, preds.shape[0], batch):
        metric.update(preds[i : i + batch], targets[i : i + batch])
    result = metric.compute()
    return time.perf_counter() - start, {k: float(v) for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--thresholds", type=int, default=99)
    parser.add_argument("--tolerance", type=float, default=0.011)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()

    preds, targets = synthetic_batch(args.images, args.size)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"EdgeMetric: {args.images} images of {args.size}x{args.size}, {args.thresholds} thresholds, "
        f"tolerance {args.tolerance}, {cores} CPU cores available (single-threaded code), "
        f"torch {torch.__version__}"
    )
    header = ("matcher", "thin", "seconds", "ms/image", "odsF", "oisF", "AP", "thr")
    print("{:<12} {:<5} {:>8} {:>9} {:>7} {:>7} {:>7} {:>5}".format(*header))
    for exact in (True, False):
        for thin in (True, False):
            metric = EdgeMetric(args.tolerance, args.thresholds, exact=exact, thin=thin)
            secs, r = _time(metric, preds, targets, args.batch)
            name = "exact" if exact else "approximate"
            print(
                f"{name:<12} {str(thin):<5} {secs:8.2f} {1000 * secs / args.images:9.1f} "
                f"{r['odsF']:7.4f} {r['oisF']:7.4f} {r['AP']:7.4f} {r['ods_threshold']:5.2f}"
            )


if __name__ == "__main__":
    main()
