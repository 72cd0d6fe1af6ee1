"""Throughput of the procedural scene generator: render_scenes per batch size and per domain, and
end-to-end write_scenes (render + PNG/npy encoding + atomic writes) into a temporary folder.

    python benchmarks/bench_scenes.py [--n 192] [--size 128] [--write-n 512]

Rendering uses torch's current thread count (not changed here). "CPU s/img" is process CPU time
per image (all threads). The write measurement includes the fixed cost of the contact sheet
(matplotlib import and drawing, ~0.5 s), so small --write-n understates the steady-state rate.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from rich.console import Console
from rich.table import Table

from taskadapt.data.scenes import list_domains, render_scenes, write_scenes


def _time_render(domain: str, n: int, batch: int, size: int, offset: int) -> tuple[float, float]:
    """(images/s wall, CPU seconds per image) for ``n`` scenes rendered in calls of ``batch``."""
    render_scenes(domain, "train", range(offset, offset + min(batch, n)), size=size)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for first in range(0, n, batch):
        render_scenes(domain, "train", range(offset + first, offset + min(n, first + batch)), size=size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=192, help="images per render measurement")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--write-n", type=int, default=512, help="images for the write_scenes measurement")
    args = parser.parse_args()

    console = Console()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    console.print(
        f"scene generator, {args.size}x{args.size} px: os.cpu_count()={os.cpu_count()}, "
        f"{cores} cores available, torch.get_num_threads()={torch.get_num_threads()}, "
        f"torch {torch.__version__}"
    )

    table = Table(title="render_scenes throughput")
    for col in ("domain", "batch", "images", "images/s", "CPU s/img"):
        table.add_column(col, justify="right")
    for batch in (1, 16, 32, 64):  # batch 1 = a map-style Dataset rendering one scene per item
        n = min(args.n, 64) if batch == 1 else args.n
        rate, cpu = _time_render("studio", n, batch, args.size, offset=1000 * batch)
        table.add_row("studio", str(batch), str(n), f"{rate:.1f}", f"{cpu:.4f}")
    for domain in list_domains():
        rate, cpu = _time_render(domain, args.n, 64, args.size, offset=100_000)
        table.add_row(domain, "64", str(args.n), f"{rate:.1f}", f"{cpu:.4f}")
    console.print(table)

    table = Table(title="write_scenes end to end (render + encode + atomic write)")
    for col in ("domain", "batch_size", "images", "seconds", "images/s", "MB on disk"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = write_scenes(
            f"{tmp}/scenes", "studio", {"train": args.write_n}, size=args.size, batch_size=32, progress=False
        )
        seconds = time.perf_counter() - start
        mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    table.add_row(
        "studio", "32", str(args.write_n), f"{seconds:.2f}", f"{args.write_n / seconds:.1f}", f"{mb:.1f}"
    )
    console.print(table)


if __name__ == "__main__":
    main()
