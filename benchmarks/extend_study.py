"""Adding a task to a trained model (``taskadapt extend``) vs training it jointly from the start.

Per seed: ours on semseg, depth and normals (the science protocol, configs/scenes_science.yaml, 180 steps),
then ``edge`` added by ``extend`` (180 more steps that train only edge's embedding row, decoder and head),
against the joint four-task model of the same protocol and seed (``runs/science/seed<k>/adapters``, trained
by ``taskadapt compare configs/scenes_science.yaml --seeds 3``; trained here when missing). Every checkpoint
is scored on the same 200 test scenes with the exact edge matcher. The old tasks of the extended model are
also checked to predict bit for bit what the three-task model predicts.

    python benchmarks/extend_study.py --seeds 3 --out runs/extend-study \\
        --markdown docs/results/extend-study.md --json docs/results/extend-study.json

A variant without the old tasks' labels during the extension (``--no-old-labels``: TROA then has nothing
to relate the new task to, so it is conditioned on its own embedding) answers what the affinity row adds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from taskadapt.config import load_config
from taskadapt.evaluation.scoring import evaluate_run
from taskadapt.io import write_json, write_text
from taskadapt.metrics.paired import paired_difference, summarize
from taskadapt.run import Run, compare_outputs
from taskadapt.train.extend import extend_config, probe_images
from taskadapt.train.trainer import freeze_untrained, train

CONFIG = "configs/scenes_science.yaml"
OLD, NEW = ["semseg", "depth", "normals"], "edge"
PRIMARY = {"semseg": ("mIoU", True), "depth": ("rmse", False), "normals": ("mean", False), "edge": ("odsF", True)}


def _trained(cfg, label: str) -> tuple[Path, float]:
    """Train ``cfg`` unless its folder already holds a finished run; (best-or-last checkpoint, seconds)."""
    ckpts = Path(cfg.out_dir) / "checkpoints"
    if (ckpts / "last.safetensors").exists():
        seconds = json.loads((Path(cfg.out_dir) / "metrics.json").read_text()).get("train_seconds", float("nan"))
        print(f"  {label}: reusing {cfg.out_dir}", flush=True)
    else:
        t0 = time.perf_counter()
        train(cfg, progress=False)
        seconds = time.perf_counter() - t0
        print(f"  {label}: trained in {seconds:.0f} s", flush=True)
    best = ckpts / "best.safetensors"
    return (best if best.exists() else ckpts / "last.safetensors"), seconds


def _score(checkpoint: Path) -> dict:
    result = evaluate_run(Run.open(checkpoint), progress=False, device="cpu")
    return {t: result["metrics"][t][m] for t, (m, _) in PRIMARY.items() if t in result["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/extend-study")
    parser.add_argument("--joint", default="runs/science", help="folder of the joint runs (seed<k>/adapters)")
    parser.add_argument("--no-old-labels", action="store_true", help="extend with data.tasks=[edge] only")
    parser.add_argument("--markdown")
    parser.add_argument("--json")
    args = parser.parse_args()
    out = Path(args.out)
    rows: dict[int, dict] = {}
    for seed in range(args.seeds):
        print(f"seed {seed}", flush=True)
        base_cfg = load_config(CONFIG, [f"seed={seed}", f"data.tasks={OLD}", f"out_dir={out}/seed{seed}/base"])
        base, base_s = _trained(base_cfg, "base (3 tasks)")
        extra = ["data.tasks=[edge]"] if args.no_old_labels else []
        name = "extend-edge-only" if args.no_old_labels else "extend"
        ext_cfg = extend_config(base, [NEW], out / f"seed{seed}" / name, overrides=extra)
        ext, ext_s = _trained(ext_cfg, f"{name} (+edge)")
        joint_cfg = load_config(CONFIG, [f"seed={seed}", f"out_dir={args.joint}/seed{seed}/adapters"])
        joint, joint_s = _trained(joint_cfg, "joint (4 tasks)")
        check = compare_outputs(base, ext, probe_images(ext_cfg, 32))
        rows[seed] = {"base": _score(base), "extend": _score(ext), "joint": _score(joint),
                      "seconds": {"base": base_s, "extend": ext_s, "joint": joint_s},
                      "old_tasks_identical": check.identical, "old_tasks_max_abs_diff": check.max_abs_diff,
                      "probe_images": check.images, "affinity": Run.open(ext).affinity.tolist(),
                      "trainable": _trainable(ext_cfg), "checkpoints": {"base": str(base), "extend": str(ext),
                                                                         "joint": str(joint)}}
        with_labels = out / f"seed{seed}" / "extend" / "checkpoints"
        if args.no_old_labels and (with_labels / "last.safetensors").exists():  # the main study's extension
            best = with_labels / "best.safetensors"
            rows[seed]["extend_with_old_labels"] = _score(best if best.exists() else with_labels / "last.safetensors")
        print(f"  edge odsF: extend {rows[seed]['extend']['edge']:.4f}, joint {rows[seed]['joint']['edge']:.4f}; "
              f"old tasks identical: {check.identical}", flush=True)
    report = _report(rows, args)
    print(report["markdown"])
    if args.markdown:
        write_text(args.markdown, report["markdown"])
    if args.json:
        write_json(args.json, {"protocol": CONFIG, "old": OLD, "new": NEW, "no_old_labels": args.no_old_labels,
                               "seeds": rows, "paired": report["paired"]})


def _trainable(cfg) -> int:
    """Parameters the extension trains (the model built as the trainer builds it, freezes applied)."""
    from taskadapt.models import create_model

    model = create_model(cfg, num_classes={"semseg": 9})
    freeze_untrained(model, cfg)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _report(rows: dict[int, dict], args) -> dict:
    tasks = [*OLD, NEW]
    lines = ["| model | trains | " + " | ".join(f"{t} {PRIMARY[t][0]} {'↑' if PRIMARY[t][1] else '↓'}" for t in tasks)
             + " |", "|---|---|" + "---:|" * len(tasks)]
    added = "ours, 3 tasks + edge added by `extend`" + (" (edge labels only)" if getattr(args, "no_old_labels", False)
                                                         else "")
    label = {"base": "ours, 3 tasks (the trained model)", "extend": added,
             "joint": "ours, 4 tasks jointly from the start"}
    trains = {"base": "everything new", "extend": f"edge only ({rows[0]['trainable']:,} parameters)",
              "joint": "everything new"}
    for key in ("base", "extend", "joint"):
        cells = []
        for t in tasks:
            s = summarize([r[key].get(t) for r in rows.values()])
            cells.append("-" if s.mean is None else f"{s.mean:.4f} ± {s.std or 0:.4f}" if t != "normals"
                         else f"{s.mean:.2f} ± {s.std or 0:.2f}")
        lines.append(f"| {label[key]} | {trains[key]} | " + " | ".join(cells) + " |")
    paired = {}
    lines += ["", "| comparison (paired by seed) | per-seed differences | mean | 95 % CI | verdict |",
              "|---|---|---:|---:|---|"]
    for t in tasks:
        sign = 1.0 if PRIMARY[t][1] else -1.0  # differences oriented so that positive = extend better
        d = paired_difference({s: sign * r["extend"][t] for s, r in rows.items()},
                              {s: sign * r["joint"][t] for s, r in rows.items()})
        paired[t] = d.to_dict()
        ci = "-" if d.low is None else f"[{d.low:+.4f}, {d.high:+.4f}]"
        lines.append(f"| {t} {PRIMARY[t][0]}: extend − joint (+ = extend better) | "
                     + ", ".join(f"{x:+.4f}" for x in d.differences) + f" | {d.mean:+.4f} | {ci} | {d.verdict} |")
    if all("extend_with_old_labels" in r for r in rows.values()):
        d = paired_difference({s: r["extend"][NEW] for s, r in rows.items()},
                              {s: r["extend_with_old_labels"][NEW] for s, r in rows.items()})
        paired["edge_only_minus_with_old_labels"] = d.to_dict()
        ci = "-" if d.low is None else f"[{d.low:+.4f}, {d.high:+.4f}]"
        lines.append(f"| {NEW} {PRIMARY[NEW][0]}: without − with the old tasks' labels during `extend` | "
                     + ", ".join(f"{x:+.4f}" for x in d.differences) + f" | {d.mean:+.4f} | {ci} | {d.verdict} |")
    same = all(r["old_tasks_identical"] for r in rows.values())
    lines += ["", f"Old tasks of every extended model vs its 3-task model on {rows[0]['probe_images']} validation "
                  f"images: {'bit-identical' if same else 'DIFFERENT'} (max |diff| "
                  f"{max(max(r['old_tasks_max_abs_diff'].values()) for r in rows.values())})."]
    secs = {k: summarize([r["seconds"][k] for r in rows.values()]).mean for k in ("base", "extend", "joint")}
    lines += [f"Training time per seed (2 cores): base {secs['base']:.0f} s, extension {secs['extend']:.0f} s, "
              f"joint {secs['joint']:.0f} s."]
    return {"markdown": "\n".join(lines) + "\n", "paired": paired}


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
