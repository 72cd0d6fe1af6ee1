"""``taskadapt demo``: the whole method on a laptop-class CPU in a few minutes.

1. renders procedural scenes (``studio`` for training, validation carved from it, and test sets of the
   same geometry in two unseen appearance domains, ``dusk`` and ``fog``);
2. trains our adapters on semseg, depth, normals and edges on the frozen bundled backbone
   (``vit_tiny_patch8_64``, pretrained by ``taskadapt pretrain`` on the separate ``pretrain`` domain);
3. evaluates in-domain and on the unseen domains (exact edge matcher), against trivial predictors
   (most frequent class, mean depth, mean normal, constant edge probability);
4. writes ``runs/demo/report.md`` with the metrics, the parameter table, the TROA affinity heat map and
   prediction sheets.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from taskadapt.config import Config, load_config
from taskadapt.data.datasets import create_dataset, prepare_dataset
from taskadapt.data.scenes import CLASS_NAMES
from taskadapt.evaluation import eval_loader, evaluate_run, make_metrics
from taskadapt.io import write_json, write_text
from taskadapt.tasks import get_task

console = Console()

TASKS = ["semseg", "depth", "normals", "edge"]
UNSEEN = ("dusk", "fog")
#: the demo's configuration (embedded, so an installed package needs no configs/ folder)
DEMO = [
    "data.format=scenes", "data.scenes.domain=studio", "data.scenes.size=64", "data.scenes.seed=0",
    "data.scenes.train=2000", "data.scenes.val=0", "data.scenes.test=200", "data.crop_size=64",
    "data.batch_size=32", "data.cache=true", "data.augment.scale_min=0.8", "data.augment.scale_max=1.25",
    "model.backbone=vit_tiny_patch8_64", "model.pretrained=bundled", "model.method=adapters",
    "model.decoder_channels=64", "model.decoder=per_task", "model.decoder_conv=separable", "model.prefix_lora=true",
    "train.steps=400", "train.lr=2e-3", "train.warmup_steps=20",
    "train.eval_every=200", "train.checkpoint_every=200", "train.val_max_images=128", "train.log_every=10",
]


def demo_config(out: Path, backbone_init: str = "pretrained", steps: int | None = None,
                extra: list[str] | tuple[str, ...] = ()) -> Config:
    overrides = [*DEMO, f"data.root={out / 'scenes' / 'studio'}", f"out_dir={out / 'run'}"]
    if backbone_init == "random":
        overrides.append("model.pretrained=null")
    elif backbone_init != "pretrained":
        from taskadapt.errors import ConfigError

        raise ConfigError(f"--backbone-init must be 'pretrained' or 'random', got '{backbone_init}'")
    if steps is not None:
        overrides.append(f"train.steps={steps}")
    return load_config(None, [*overrides, *extra])


@torch.no_grad()
def trivial_baselines(cfg: Config, train_ds, test_loader, num_classes: dict) -> dict:
    """Metrics of predictors that ignore the image: the most frequent training class, the mean training
    depth, the mean training normal, and a constant edge probability (the training edge density)."""
    n = min(len(train_ds), 256)
    counts = torch.zeros(num_classes["semseg"])
    depth_sum = depth_n = 0.0
    normal_sum = torch.zeros(3)
    edge_sum = edge_n = 0.0
    for i in range(n):
        s = train_ds[i]
        lab = s["semseg"][s["semseg"] != 255]
        counts += torch.bincount(lab, minlength=num_classes["semseg"]).float()
        d = s["depth"][torch.isfinite(s["depth"])]
        depth_sum, depth_n = depth_sum + float(d.sum()), depth_n + d.numel()
        nv = s["normals"].flatten(1)
        normal_sum += nv[:, torch.isfinite(nv).all(0)].sum(1)
        edge_sum, edge_n = edge_sum + float(s["edge"].nansum()), edge_n + s["edge"].numel()
    cls, depth = int(counts.argmax()), depth_sum / max(depth_n, 1)
    normal = torch.nn.functional.normalize(normal_sum, dim=0)
    edge_p = edge_sum / max(edge_n, 1)
    metrics = make_metrics(TASKS, num_classes, edge_exact=True)
    for batch in test_loader:
        for i in range(len(batch["meta"])):
            H, W = batch["semseg"][i].shape[-2:]
            metrics["semseg"].update(torch.full((1, H, W), cls), batch["semseg"][i:i + 1])
            metrics["depth"].update(torch.full((1, 1, H, W), depth), batch["depth"][i:i + 1])
            metrics["normals"].update(normal.view(1, 3, 1, 1).expand(1, 3, H, W), batch["normals"][i:i + 1])
            metrics["edge"].update(torch.full((1, 1, H, W), edge_p), batch["edge"][i:i + 1])
    return {t: {k: float(v) for k, v in m.compute().items() if v.ndim == 0} for t, m in metrics.items()}


def _domain_section(cfg: Config, out: Path, domain: str):
    """The data section of the scenes of ``domain`` under ``out/scenes`` (test split only for the unseen
    domains: the same geometry as the training domain's test split, other appearance)."""
    s = cfg.data.scenes
    scenes = s if domain == s.domain else dataclasses.replace(s, domain=domain, train=0, val=0)
    return dataclasses.replace(cfg.data, root=str(out / "scenes" / domain), scenes=scenes)


def _primary(task: str) -> tuple[str, bool]:
    spec = get_task(task)
    return spec.primary_metric, spec.higher_is_better


def run_demo(out: str | Path = "runs/demo", backbone_init: str = "pretrained", steps: int | None = None,
             overwrite: bool = False, progress: bool = True, extra: list[str] | tuple[str, ...] = ()) -> Path:
    """Run the demo end to end; returns the path of ``report.md``."""
    from taskadapt.api import load
    from taskadapt.errors import ConfigError
    from taskadapt.evaluation.affinity import affinity_report
    from taskadapt.models.params import parameter_table
    from taskadapt.train.data import build_splits
    from taskadapt.train.trainer import train

    t_start = time.perf_counter()
    out = Path(out)
    if (out / "run").exists() and any((out / "run").iterdir()):
        if not overwrite:
            raise ConfigError(f"'{out}' already holds a demo run; pass --overwrite to replace it or --out to "
                              "choose another folder")
        import shutil

        shutil.rmtree(out / "run")
    cfg = demo_config(out, backbone_init, steps, extra)
    console.rule("1/4 procedural scenes")
    sections = {d: _domain_section(cfg, out, d) for d in (cfg.data.scenes.domain, *UNSEEN)}
    for section in sections.values():  # unseen: the same test geometry (seed, split, index), other appearance
        prepare_dataset(section, progress=progress)

    console.rule(f"2/4 training adapters ({backbone_init} backbone)")
    result = train(cfg, progress=progress)

    console.rule("3/4 evaluation")
    predictor = load(result.best or result.last)
    splits = build_splits(cfg)
    results = {domain: evaluate_run(predictor.run, section, "test", TASKS, batch_size=32, progress=progress,
                                    description=f"evaluating {domain}")["metrics"]
               for domain, section in sections.items()}
    test_loader = eval_loader(splits.test, predictor.input_size, batch_size=32)
    trivial = trivial_baselines(cfg, splits.train, test_loader, splits.num_classes)

    console.rule("4/4 report")
    report = _write_report(out, cfg, result, results, trivial, parameter_table(predictor.model), predictor,
                           affinity_report, time.perf_counter() - t_start, backbone_init)
    console.print(_summary_table(results, trivial))
    console.print(f"[green]report[/green]: {report}")
    return report


def _summary_table(results: dict, trivial: dict) -> Table:
    table = Table(title="taskadapt demo: test metrics (primary metric per task)")
    table.add_column("evaluated on")
    for task in TASKS:
        metric, higher = _primary(task)
        table.add_column(f"{task} {metric} {'↑' if higher else '↓'}", justify="right")
    for name, res in [*[(f"{d}{' (training domain)' if d == 'studio' else ' (unseen)'}", r)
                        for d, r in results.items()], ("trivial predictor (studio)", trivial)]:
        table.add_row(name, *[f"{res[t][_primary(t)[0]]:.3f}" for t in TASKS])
    return table


def _prediction_sheet(predictor, out: Path, domain: str, root: Path, n: int = 4) -> Path:
    from taskadapt.viz import contact_sheet

    ds = create_dataset("scenes", root, "test", tasks=TASKS)
    rows, labels = [], []
    for i in range(n):
        sample = ds[i]
        pred = predictor.predict(sample["image"])
        rows.append({k: sample[k] for k in ("image", *TASKS)})
        rows.append({"image": sample["image"], "semseg": torch.as_tensor(pred["semseg"]),
                     "depth": torch.as_tensor(pred["depth"])[None],
                     "normals": torch.as_tensor(pred["normals"]).permute(2, 0, 1),
                     "edge": torch.as_tensor(pred["edge"])[None]})
        labels += [f"{sample['meta']['id']} truth", "prediction"]
    truth = torch.cat([r["depth"].flatten() for r in rows[::2]])
    truth = truth[torch.isfinite(truth)]
    depth_range = (float(truth.quantile(0.02)), float(truth.quantile(0.98)))  # one scale for truth and prediction
    return contact_sheet(rows, out / f"predictions_{domain}.png", {"semseg": len(CLASS_NAMES)},
                         title=f"{domain}: ground truth and prediction (depth on one scale)", row_labels=labels,
                         depth_range=depth_range)


def _write_report(out, cfg, result, results, trivial, params, predictor, affinity_report, seconds, init) -> Path:
    sheets = [_prediction_sheet(predictor, out, d, out / "scenes" / d) for d in ("studio", *UNSEEN)]
    _, heatmap = affinity_report(result.best or result.last, out=str(out))
    lines = [
        "# taskadapt demo report", "",
        f"Our adapters (TAA, TSN, TROA) on a frozen `{cfg.model.backbone}` ({init} weights), trained for "
        f"{result.step} steps (batch {cfg.data.batch_size}) on {cfg.data.scenes.train} procedural `studio` "
        f"scenes at {cfg.data.scenes.size} px (validation carved from them), evaluated on {cfg.data.scenes.test} "
        f"test scenes in the training domain and, with the same geometry, in two unseen appearance domains. "
        f"Total time {seconds / 60:.1f} min ({result.seconds / 60:.1f} min training) on "
        f"{torch.get_num_threads()} CPU threads. Edge F-measures use the exact one-to-one matcher.", "",
        "## Test metrics", "",
        "| evaluated on | " + " | ".join(f"{t} {m} {'↑' if h else '↓'}" for t, (m, h) in
                                         ((t, _primary(t)) for t in TASKS)) + " |",
        "|---|" + "---:|" * len(TASKS),
    ]
    for d, r in results.items():
        name = f"{d} ({'training domain' if d == 'studio' else 'unseen'})"
        lines.append(f"| {name} | " + " | ".join(f"{r[t][_primary(t)[0]]:.3f}" for t in TASKS) + " |")
    lines.append("| trivial predictor (studio) | " +
                 " | ".join(f"{trivial[t][_primary(t)[0]]:.3f}" for t in TASKS) + " |")
    lines += ["", "Trivial predictor: the most frequent training class, the mean training depth, the mean training "
              "normal, a constant edge probability.", "", "All metrics, in-domain:", ""]
    for task, metrics in results["studio"].items():
        lines.append(f"- **{task}**: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    lines += ["", "## Parameters", "", "| component | trainable | frozen |", "|---|---:|---:|"]
    lines += [f"| {r.component} | {r.trainable:,} | {r.frozen:,} |" for r in params]
    lines += ["", "## Task affinity (TROA)", "", f"![affinity]({Path(heatmap).name})", "",
              "A[i, j]: the effect of a step for task i (row) on task j's loss (column).", "",
              "## Predictions", ""]
    lines += [f"![{p.stem}]({p.name})" for p in sheets]
    report = write_text(out / "report.md", "\n".join(lines) + "\n")
    write_json(out / "demo.json", {"results": results, "trivial": trivial, "seconds": seconds,
                                   "train_seconds": result.seconds, "steps": result.step, "backbone_init": init})
    return report
