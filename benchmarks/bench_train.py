"""Training throughput and peak memory: ours vs multitask fine-tuning vs single-task models (prints tables).

    python benchmarks/bench_train.py                          # the demo's backbone: ViT-Ti/8, 64 px, batch 32
    python benchmarks/bench_train.py --backbone vit_small_patch16_224 --size 224 --batch 8 --procs 1

Every measurement runs in a fresh process (so peak memory is its own): a real training step (forward,
multitask loss, backward, gradient clipping, AdamW, TROA update) on a fixed synthetic batch, 2 warm-up
steps, then ``--steps`` timed steps. ``images/s`` counts images of the global batch, each trained on all
T tasks; ``stl`` trains T single-task models (the same work as training them one after another). With
2 processes (gloo on CPU, NCCL on GPU) each process takes half the global batch and one CPU thread.

Memory: on CPU the peak resident set size of the process (``ru_maxrss``, the largest over the ranks)
and, in brackets, its growth during training over the idle model (activations kept for backward,
gradients, optimiser state); on GPU ``torch.cuda.max_memory_allocated``.

Second table: speed options on ours at the largest T (channels-last decoder, activation checkpointing of
the adapter layers, bf16 autocast; ``--compile`` adds torch.compile, which takes minutes to compile).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import build, fake_batch  # noqa: E402

from taskadapt.losses import MultiTaskLoss  # noqa: E402
from taskadapt.train.trainer import apply_speed_options, param_groups  # noqa: E402

ALL_TASKS = ["semseg", "depth", "normals", "edge"]
console = Console()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _measure(spec: dict, rank: int = 0, world: int = 1) -> dict:
    """One process's part of a measurement."""
    from taskadapt.config import load_config

    device = torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    tasks = ALL_TASKS[:spec["tasks"]]
    model = build(spec["backbone"], spec["method"], tasks, spec["size"], pretrained="null").to(device)
    opts = spec.get("options", {})
    cfg = load_config(None, [f"data.tasks=[{','.join(tasks)}]",
                             f"train.channels_last={bool(opts.get('channels_last'))}",
                             f"train.activation_checkpointing={bool(opts.get('checkpointing'))}"])
    apply_speed_options(model, cfg)  # exactly what the trainer does
    inner = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(model) if opts.get("compile") else model
    optimizer = torch.optim.AdamW(param_groups(inner, cfg), lr=1e-4)
    loss_fn = MultiTaskLoss(tasks)
    local = spec["batch"] // world
    full = fake_batch(spec["batch"], spec["size"])
    batch = {k: v[rank * local:(rank + 1) * local].to(device) for k, v in full.items() if k == "image" or k in tasks}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(opts.get("bf16")))
    idle = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        with autocast:
            preds = forward(batch["image"])
        losses = loss_fn({k: v.float() for k, v in preds.items()}, batch)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        if hasattr(inner, "update_affinity"):
            inner.update_affinity(losses.weights, losses.present)

    model.train()
    for _ in range(2):
        step()
    if world > 1:
        torch.distributed.barrier()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        peak, growth = torch.cuda.max_memory_allocated(device) / 2**20, None
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        growth = peak - idle
    return {"seconds": seconds, "peak_mb": peak, "growth_mb": growth}


def _rank_main(rank: int, world: int, port: int, spec: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(max(1, spec["threads"] // world))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend, rank=rank, world_size=world)
    try:
        result = _measure(spec, rank, world)
    finally:
        torch.distributed.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


def worker(spec: dict) -> dict:
    """Run one measurement (1 or N processes) in this fresh process; returns the aggregate."""
    torch.manual_seed(0)
    if spec["procs"] == 1:
        torch.set_num_threads(spec["threads"])
        parts = [_measure(spec)]
    else:
        import torch.multiprocessing as mp

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(_rank_main, args=(spec["procs"], port, spec, tmp), nprocs=spec["procs"], join=True)
            parts = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(spec["procs"])]
    seconds = max(p["seconds"] for p in parts)
    growth = [p["growth_mb"] for p in parts if p["growth_mb"] is not None]
    return {**spec, "images_per_s": spec["batch"] * spec["steps"] / seconds,
            "peak_mb": max(p["peak_mb"] for p in parts), "growth_mb": max(growth) if growth else None}


def run_isolated(spec: dict) -> dict:
    """``worker(spec)`` in a new Python process (peak memory is per process)."""
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _memory(r: dict) -> str:
    return f"{r['peak_mb']:.0f}" + (f" (+{r['growth_mb']:.0f})" if r.get("growth_mb") is not None else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit_tiny_patch8_64")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    parser.add_argument("--methods", default="adapters,mtl_finetune,stl")
    parser.add_argument("--tasks", default="1,2,4", help="numbers of tasks T")
    parser.add_argument("--procs", default="1,2", help="process counts")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads in all")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    base = {"backbone": args.backbone, "size": args.size, "batch": args.batch, "steps": args.steps,
            "threads": args.threads}
    methods = args.methods.split(",")
    task_counts = [int(t) for t in args.tasks.split(",")]
    procs = [int(p) for p in args.procs.split(",")]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    results = []
    with console.status("measuring") as status:
        for p in procs:
            for t in task_counts:
                for m in methods:
                    status.update(f"{m}, T={t}, {p} process(es)")
                    results.append(run_isolated({**base, "method": m, "tasks": t, "procs": p}))
    table = Table(title=f"training throughput, {args.backbone} at {args.size} px, global batch {args.batch} ({device})")
    for col in ("processes", "T", "method", "images/s", "vs stl", "cost vs T=1", "peak memory MB (growth)"):
        table.add_column(col, justify="right")
    for r in results:
        stl = next((x for x in results if x["method"] == "stl" and x["tasks"] == r["tasks"]
                    and x["procs"] == r["procs"]), None)
        one = next((x for x in results if x["method"] == r["method"] and x["tasks"] == min(task_counts)
                    and x["procs"] == r["procs"]), None)
        table.add_row(str(r["procs"]), str(r["tasks"]), r["method"], f"{r['images_per_s']:.1f}",
                      f"{r['images_per_s'] / stl['images_per_s']:.2f}x" if stl else "-",
                      f"{one['images_per_s'] / r['images_per_s']:.2f}x" if one else "-", _memory(r))
    console.print(table)

    variants = [("baseline", {}), ("channels-last", {"channels_last": True}),
                ("activation checkpointing", {"checkpointing": True}), ("bf16 autocast", {"bf16": True})]
    if args.compile:
        variants.append(("torch.compile", {"compile": True}))
    t = max(task_counts)
    speed = Table(title=f"speed options, ours (adapters), T={t}, 1 process ({device})")
    for col in ("option", "images/s", "vs baseline", "peak memory MB (growth)"):
        speed.add_column(col, justify="right")
    rows = []
    with console.status("measuring speed options") as status:
        for name, opts in variants:
            status.update(name)
            rows.append((name, run_isolated({**base, "method": "adapters", "tasks": t, "procs": 1, "options": opts})))
    for name, r in rows:
        speed.add_row(name, f"{r['images_per_s']:.1f}", f"{r['images_per_s'] / rows[0][1]['images_per_s']:.2f}x",
                      _memory(r))
    console.print(speed)


if __name__ == "__main__":
    main()
