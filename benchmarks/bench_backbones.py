"""Training and inference speed of our method on the bundled ViT-Ti/8 vs a frozen DINOv2 ViT-S/14 (prints a table).

    python benchmarks/bench_backbones.py                     # the two shipped configurations, ~10 min on 2 cores
    python benchmarks/bench_backbones.py --cases vit_small_patch14_dinov2:126 --batch 8

Each case is ``backbone:size`` and runs ``model.method=adapters`` on 4 tasks (semseg, depth, normals,
edge), the configurations of ``configs/scenes.yaml`` (ViT-Ti/8 at 64 px) and ``configs/scenes_dinov2.yaml``
(DINOv2-S/14 at 112 px). Weights are random (speed does not depend on them), every measurement runs in
a fresh process (``bench_train.run_isolated``): training images/s with 1 process of 2 threads, with 2
processes of 1 thread (gloo) and with bf16 autocast, then inference images/s of all 4 tasks in one call
(``torch.inference_mode``, batch ``--batch``, 1 process, median of ``--repeats`` calls), and the peak
resident memory of the training process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import TASKS, build, timed  # noqa: E402
from bench_train import run_isolated  # noqa: E402

from taskadapt.models.params import count_trainable  # noqa: E402

DEFAULT_CASES = "vit_tiny_patch8_64:64,vit_small_patch14_dinov2:112"
console = Console()


def inference_worker(spec: dict) -> dict:
    """Median seconds of one inference call of all 4 tasks, and the parameter counts."""
    torch.set_num_threads(spec["threads"])
    model = build(spec["backbone"], "adapters", size=spec["size"], pretrained="null").eval()
    image = torch.rand(spec["batch"], 3, spec["size"], spec["size"], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        seconds = timed(lambda: model(image), spec["repeats"])
    return {"seconds": seconds, "total": sum(p.numel() for p in model.parameters()),
            "trainable": count_trainable(model), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_inference(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"inference measurement {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated backbone:size")
    parser.add_argument("--batch", type=int, default=16, help="batch of training and inference")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="timed inference calls")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads in all")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(inference_worker(json.loads(args.worker))))
        return
    cases = []
    for item in args.cases.split(","):
        name, _, size = item.partition(":")
        cases.append((name, int(size)))
    device = f"CPU, {os.cpu_count()} cores, {args.threads} threads"
    table = Table(title=f"ours (adapters), 4 tasks, batch {args.batch} ({device})")
    for col in ("backbone", "px", "tokens", "params (trainable)", "train img/s 1 proc", "2 procs",
                "bf16", "s / step", "infer img/s", "peak MB (train)"):
        table.add_column(col, justify="right")
    t_start = time.perf_counter()
    with console.status("measuring") as status:
        for name, size in cases:
            base = {"backbone": name, "size": size, "batch": args.batch, "steps": args.steps,
                    "threads": args.threads, "method": "adapters", "tasks": len(TASKS)}
            status.update(f"{name} {size} px: training, 1 process")
            one = run_isolated({**base, "procs": 1})
            status.update(f"{name} {size} px: training, 2 processes")
            two = run_isolated({**base, "procs": 2})
            status.update(f"{name} {size} px: training, bf16")
            bf16 = run_isolated({**base, "procs": 1, "options": {"bf16": True}})
            status.update(f"{name} {size} px: inference")
            inf = run_inference({"backbone": name, "size": size, "batch": args.batch, "repeats": args.repeats,
                                 "threads": args.threads})
            patch = build(name, "adapters", size=size, pretrained="null").backbone.grid_size
            table.add_row(name, str(size), f"{patch[0]}x{patch[1]}",
                          f"{inf['total'] / 1e6:.2f} M ({inf['trainable'] / 1e6:.2f} M)",
                          f"{one['images_per_s']:.1f}", f"{two['images_per_s']:.1f}", f"{bf16['images_per_s']:.1f}",
                          f"{args.batch / one['images_per_s']:.2f}", f"{args.batch / inf['seconds']:.1f}",
                          f"{one['peak_mb']:.0f}")
    console.print(table)
    console.print(f"({time.perf_counter() - t_start:.0f} s in all)")


if __name__ == "__main__":
    main()
