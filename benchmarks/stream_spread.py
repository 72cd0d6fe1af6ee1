"""How task-specific are a trained adapter model's task streams? (issue 13's diagnosis; prints a table)

    python benchmarks/stream_spread.py runs/science/seed0/adapters/checkpoints/best.safetensors \\
        --images runs/scenes/studio-64/images --count 32

For each checkpoint of ours (``adapters`` and its ablations), on the first ``--count`` test images:
- **streams**: at every tap after the split, the spread of the task streams' features,
  ||f_t - mean_t f|| / ||mean_t f||, in percent (mean over tasks and images). 0 means every task sees the
  same features: the task-specific conditioning does nothing.
- **TSN scale / shift**: the task-specific part of every TSN (its maps' output minus their mean over
  tasks, offsets included) relative to the pretrained part, ||gamma' * (gamma_t - mean gamma)|| / ||gamma'||
  and ||beta_t - mean beta|| / ||beta'|| (percent, mean over tasks and norms).
- **TAA bias**: the mean |Bias_t| on the block diagonal, and its task-specific part
  mean |Bias_t - mean_t Bias_t|.
- **w spread**: ||w_t - mean_t w|| / ||mean_t w|| of the conditioning vectors (percent).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from taskadapt.api import load
from taskadapt.models.adapters import TaskScaledNorm


def read_images(folder: Path, count: int, size: int) -> torch.Tensor:
    """The first ``count`` test images of a scenes folder, (B, 3, size, size) in [0, 1]."""
    paths = sorted(folder.glob("test_*.png"))[:count] or sorted(folder.glob("*.png"))[:count]
    if not paths:
        raise SystemExit(f"no PNG images in {folder}; pass --images <scenes root>/images")
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size)), dtype=np.float32) / 255 for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def spread(path: Path, images: torch.Tensor | None, folder: Path, count: int) -> dict[str, float | str]:
    predictor = load(path, device="cpu")
    model = predictor.model
    if not getattr(model, "streams", False):
        return {"note": f"{predictor.meta.get('method')}: one stream, nothing task-specific"}
    x = images if images is not None else read_images(folder, count, predictor.input_size)
    feats, T = model.encode(x)
    B = x.shape[0]
    rel = []
    for i, f in sorted(feats.items()):
        if i < model.split:
            continue
        f = f.reshape(T, B, -1)
        mean = f.mean(0, keepdim=True)
        rel.append(((f - mean).norm(dim=-1) / mean.norm(dim=-1).clamp_min(1e-12)).mean().item() * 100)
    w = model.conditioning_vectors()
    w_spread = ((w - w.mean(0)).norm(dim=-1) / w.mean(0).norm().clamp_min(1e-12)).mean().item() * 100
    scale, shift = [], []
    for m in model.modules():
        if isinstance(m, TaskScaledNorm):
            film = m.film(w) + (m.task_offset if m.task_offset is not None else 0)
            film = film - film.mean(0, keepdim=True)  # the task-specific part: what differs between tasks
            gamma_t, beta_t = film.chunk(2, dim=-1)
            scale.append(((gamma_t * m.weight).norm(dim=-1) / m.weight.norm().clamp_min(1e-12)).mean().item() * 100)
            shift.append((beta_t.norm(dim=-1) / m.bias.norm().clamp_min(1e-12)).mean().item() * 100)
    bias, bias_task = [], []
    for layer in model.adapter_layers.values():
        if layer.taa is not None:
            b = layer.taa(w, 1)  # (T, heads, N, N)
            on = (b != 0).any(0)  # the block diagonal
            if on.any():
                bias.append(b[:, on].abs().mean().item())
                bias_task.append((b - b.mean(0, keepdim=True))[:, on].abs().mean().item())
    return {
        "method": str(predictor.meta.get("method")),
        "streams %": " / ".join(f"{r:.2f}" for r in rel) or "-",
        "w spread %": f"{w_spread:.1f}",
        "TSN task scale %": f"{np.mean(scale):.3f}" if scale else "-",
        "TSN task shift %": f"{np.mean(shift):.2f}" if shift else "-",
        "TAA |bias|": f"{np.mean(bias):.4f}" if bias else "-",
        "TAA task part": f"{np.mean(bias_task):.5f}" if bias_task else "-",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--images", type=Path, default=Path("runs/scenes/studio-64/images"))
    parser.add_argument("--count", type=int, default=32)
    args = parser.parse_args(argv)
    rows = {str(p): spread(p, None, args.images, args.count) for p in args.checkpoints}
    columns = ["method", "streams %", "w spread %", "TSN task scale %", "TSN task shift %", "TAA |bias|",
               "TAA task part"]
    table = Table(title=f"task streams on {args.count} images of {args.images} (streams: per tap after the split)")
    table.add_column("checkpoint")
    for c in columns:
        table.add_column(c, justify="right")
    for name, row in rows.items():
        table.add_row(name, *[str(row.get(c, row.get("note", "-") if c == "method" else "-")) for c in columns])
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
