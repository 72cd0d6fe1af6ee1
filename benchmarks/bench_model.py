"""Model targets of the model issue, measured on this machine's CPU (prints tables).

    python benchmarks/bench_model.py            # all three measurements
    python benchmarks/bench_model.py --only params
    python benchmarks/bench_model.py --only inference --layout science   # issue 13's science layout

1. Trainable parameters of ``adapters`` relative to ``mtl_finetune`` (Swin-T and ViT-S, 4 tasks;
   target <= 10 %).
2. TROA overhead on a training step (ViT-S at 224, batch 8, T = 4, affinity updated every step;
   target <= 5 %): the same ``adapters`` model timed with TROA on and off.
3. Inference of all 4 tasks in one call vs one single-task model of the same architecture (target
   <= 2.0x, i.e. at most half the cost of running 4 single-task models).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from taskadapt.config import load_config
from taskadapt.losses import MultiTaskLoss
from taskadapt.models import create_model
from taskadapt.models.params import count_trainable

TASKS = ["semseg", "depth", "normals", "edge"]
#: --layout: model settings applied to every built model (configs/scenes_science.yaml's decoder layout)
LAYOUTS = {"default": {}, "science": {"decoder": "per_task", "decoder_conv": "separable", "prefix_lora": "true"}}
LAYOUT: dict[str, str] = {}
console = Console()


def build(backbone: str, method: str, tasks=TASKS, size: int = 224, **model):
    overrides = [f"model.backbone={backbone}", f"model.method={method}", f"data.crop_size={size}",
                 f"data.tasks=[{','.join(tasks)}]"] + [f"model.{k}={v}" for k, v in {**LAYOUT, **model}.items()]
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    return create_model(cfg, num_classes={"semseg": 40})


def fake_batch(batch: int, size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(batch, 3, size, size, generator=g),
        "semseg": torch.randint(0, 40, (batch, size, size), generator=g),
        "depth": torch.rand(batch, 1, size, size, generator=g) * 5 + 0.5,
        "normals": torch.nn.functional.normalize(torch.randn(batch, 3, size, size, generator=g), dim=1),
        "edge": (torch.rand(batch, 1, size, size, generator=g) > 0.95).float(),
    }


def timed(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_params() -> None:
    table = Table(title="trainable parameters, 4 tasks (target: adapters <= 10 % of mtl_finetune)")
    for col in ("backbone", "method", "trainable", "% of mtl_finetune"):
        table.add_column(col, justify="right")
    for backbone in ("swin_tiny_patch4_window7_224", "vit_small_patch16_224"):
        reference = count_trainable(build(backbone, "mtl_finetune"))
        for method in ("adapters", "lora", "frozen_heads", "mtl_finetune"):
            n = count_trainable(build(backbone, method))
            table.add_row(backbone, method, f"{n:,}", f"{100 * n / reference:.1f}")
    console.print(table)


def bench_troa(batch: int, repeats: int) -> None:
    """The same adapters model with TROA on and off; steps alternate so that load affects both alike."""
    data = fake_batch(batch, 224)
    steps = {}
    for troa in (False, True):
        model = build("vit_small_patch16_224", "adapters", **{"troa.enabled": str(troa).lower()}).train()
        loss_fn = MultiTaskLoss(TASKS)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step(model=model, loss_fn=loss_fn, opt=opt):
            opt.zero_grad(set_to_none=True)
            losses = loss_fn(model(data["image"]), data)
            losses.total.backward()
            model.update_affinity(losses.weights, losses.present)
            opt.step()

        step()  # warm-up
        steps[troa] = step
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(repeats):
        for troa in ((False, True) if r % 2 == 0 else (True, False)):  # alternate: no order bias
            t0 = time.perf_counter()
            steps[troa]()
            times[troa].append(time.perf_counter() - t0)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    table = Table(title=f"TROA overhead, ViT-S 224, batch {batch}, T = 4, updated every step (target <= 5 %)")
    for col in ("TROA", "s / step (median)", "overhead"):
        table.add_column(col, justify="right")
    table.add_row("off", f"{off:.3f}", "")
    table.add_row("on", f"{on:.3f}", f"{100 * (on / off - 1):+.1f} %")
    console.print(table)


def bench_inference(batch: int, repeats: int) -> None:
    image = torch.rand(batch, 3, 224, 224)
    table = Table(title=f"inference latency, batch {batch}, 224 px (target: 4 tasks <= 2.0x one single-task model)")
    for col in ("backbone", "model", "s / call (median)", "x single-task"):
        table.add_column(col, justify="right")
    for backbone in ("vit_small_patch16_224", "swin_tiny_patch4_window7_224"):
        single = build(backbone, "adapters", tasks=["semseg"]).eval()
        multi = build(backbone, "adapters").eval()
        stl4 = build(backbone, "stl").eval()
        with torch.inference_mode():
            t1 = timed(lambda m=single: m(image), repeats)
            t4 = timed(lambda m=multi: m(image), repeats)
            ts = timed(lambda m=stl4: m(image), max(1, repeats // 2))
        table.add_row(backbone, "single-task (ours, T = 1)", f"{t1:.3f}", "1.00")
        table.add_row(backbone, "ours, 4 tasks in one call", f"{t4:.3f}", f"{t4 / t1:.2f}")
        table.add_row(backbone, "4 single-task models (stl)", f"{ts:.3f}", f"{ts / t1:.2f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["params", "troa", "inference"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layout", choices=list(LAYOUTS), default="default",
                        help="science: one separable decoder per task and prefix LoRA for every model")
    args = parser.parse_args()
    LAYOUT.update(LAYOUTS[args.layout])
    console.print(f"layout: {args.layout} {LAYOUTS[args.layout] or ''}")
    console.print(f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    if args.only in (None, "params"):
        bench_params()
    if args.only in (None, "troa"):
        bench_troa(args.batch, args.repeats)
    if args.only in (None, "inference"):
        bench_inference(args.batch, args.repeats)


if __name__ == "__main__":
    main()
