"""The ``taskadapt`` command line.

Sub-commands follow the data flow: ``data`` (make and check datasets), ``config`` (show the
resolved configuration), ``info`` (what tasks, formats, domains and backbones exist). Every user
error is a :class:`~taskadapt.errors.TaskadaptError`: printed on one line, exit code 2, no traceback.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from taskadapt.errors import TaskadaptError
from taskadapt.version import __version__

app = typer.Typer(
    name="taskadapt",
    help="Parameter-efficient multitask dense prediction with vision-transformer adapters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Make, read and check multitask datasets.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect configurations.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")

console = Console()
err_console = Console(stderr=True)


def _is_main_process() -> bool:
    """False on the ranks > 0 of a torchrun launch: only rank 0 prints results."""
    from taskadapt.distributed import is_main_process

    return is_main_process()


def _version(value: bool) -> None:
    if value:
        console.print(f"taskadapt {_e(__version__)}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """taskadapt: one frozen vision transformer, several dense tasks, small trainable adapters."""


# --------------------------------------------------------------------------------------------------
# data


@data_app.command("make-scenes")
def make_scenes(
    out: Annotated[Path, typer.Option(help="Folder to write the dataset to (NYUD multitask layout).")],
    domain: Annotated[str, typer.Option(help="Appearance style; see `taskadapt info`.")] = "studio",
    train: Annotated[int, typer.Option(help="Number of training scenes.")] = 2000,
    val: Annotated[int, typer.Option(help="Number of validation scenes.")] = 200,
    test: Annotated[int, typer.Option(help="Number of test scenes.")] = 500,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same scenes on any machine.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace the files of an existing folder.")] = False,
) -> None:
    """Render procedural indoor scenes with exact semseg, depth, normals and edge labels."""
    from taskadapt.data.scenes import write_scenes

    root = write_scenes(
        out, domain=domain, counts={"train": train, "val": val, "test": test}, size=size, seed=seed,
        overwrite=overwrite, progress=True,
    )
    console.print(f"[green]wrote[/green] {_e(root)}  (contact sheet: {_e(root / 'contact_sheet.png')})")


@data_app.command("check")
def check(
    root: Annotated[Path, typer.Argument(help="Dataset folder.")],
    format: Annotated[
        str, typer.Option("--format", help="Dataset format; see `taskadapt info`.")
    ] = "nyud",
    split: Annotated[
        list[str] | None, typer.Option("--split", help="Split(s) to check (default: all found).")
    ] = None,
    max_samples: Annotated[
        int | None, typer.Option(help="Check at most this many samples per split (default: all).")
    ] = None,
) -> None:
    """Validate a dataset folder: layout, ids, shapes and value ranges. Exit 1 if problems are found."""
    from taskadapt.data.check import check_dataset

    report = check_dataset(root, format, splits=split, max_samples=max_samples, progress=True)
    console.print(report.to_table())
    if not report.ok:
        console.print(report.problems_table())
        raise typer.Exit(1)
    console.print(f"[green]ok[/green]: {_e(root)} is a valid '{_e(format)}' dataset")


# --------------------------------------------------------------------------------------------------
# config and info


@config_app.command("show")
def config_show(
    config: Annotated[Path | None, typer.Argument(help="YAML config file (optional).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides.")] = None,
) -> None:
    """Print the resolved, validated configuration (defaults <- file <- overrides) as YAML."""
    from taskadapt.config import load_config, to_yaml

    config, overrides = _split_config_arg(config, overrides)
    cfg = load_config(config, overrides)
    console.print(to_yaml(cfg), end="", markup=False, highlight=False)


@app.command("train")
def train_cmd(
    config: Annotated[Path | None, typer.Argument(help="YAML config file, e.g. configs/scenes.yaml.")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides.")] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue a run: a checkpoint path, or 'last' for <out_dir>/checkpoints/last. "
                                      "The run's own config is used unless a config file is given; overrides that "
                                      "change it are listed.")
    ] = None,
) -> None:
    """Train a model (single process, or one per device under torchrun)."""
    from taskadapt.config import load_config
    from taskadapt.train.trainer import resume_config, train

    config, overrides = _split_config_arg(config, overrides)
    if resume is None:
        cfg, checkpoint = load_config(config, overrides), None
    else:
        cfg, checkpoint, changed = resume_config(resume, config, overrides)
        if changed and _is_main_process():
            console.print("[yellow]resuming with changed settings[/yellow]: " + _e("; ".join(changed)))
    result = train(cfg, resume=checkpoint, progress=True, command=_command("train"))
    if _is_main_process():
        console.print(f"[green]done[/green]: {_e(result.step)} steps in {result.seconds:.0f} s; best checkpoint "
                      f"{_e(result.best)}, last {_e(result.last)}")


@app.command("eval")
def eval_cmd(
    checkpoints: Annotated[
        list[Path], typer.Argument(help="One or more checkpoints (full or adapter-only) or hf-hub:OWNER/REPO ids.")
    ],
    data: Annotated[
        list[str] | None,
        typer.Option(help="Dataset folder (default: the checkpoint's own). Repeat it, as NAME=FOLDER or FOLDER, to "
                          "score every checkpoint on several domains; the first is the in-domain reference."),
    ] = None,
    format: Annotated[str | None, typer.Option("--format", help="Dataset format (default: the checkpoint's).")] = None,
    split: Annotated[str | None, typer.Option(help="Split to evaluate (default: the test split).")] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Single-task baseline JSON: adds Delta_m to the report.")
    ] = None,
    out: Annotated[str | None, typer.Option(help="Folder for metrics.json and report.md (domains.md).")] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default: the run's train.device, auto = CUDA "
                                      "when available).")
    ] = None,
    tasks: Annotated[
        str | None, typer.Option(help="Score only these of the model's tasks, comma-separated (e.g. semseg,depth).")
    ] = None,
    backbone_weights: Annotated[str | None, typer.Option(
        help="An adapter-only checkpoint's backbone weights, when not where its header says (one checkpoint).")
    ] = None,
) -> None:
    """Per-task metrics table; writes metrics.json and report.md (Delta_m with --baseline).

    With several checkpoints or several --data folders: one table of every model on every domain,
    with the relative drop from the first (in-domain) dataset; writes domains.json and domains.md.
    """
    from taskadapt.settings.domains import parse_domain

    data = list(data or [])
    if len(checkpoints) == 1 and len(data) <= 1:
        from taskadapt.evaluation import evaluate_checkpoint, metrics_table

        domain = parse_domain(data[0], format) if data else None  # FOLDER, NAME=FOLDER or NAME=FORMAT:FOLDER
        results = evaluate_checkpoint(checkpoints[0], data=domain.root if domain else None,
                                      format=domain.format if domain else format, split=split,
                                      baseline=baseline, out=out, device=device, backbone_weights=backbone_weights,
                                      tasks=[t.strip() for t in tasks.split(",") if t.strip()] if tasks else None)
        if _is_main_process():
            console.print(metrics_table(results))
            console.print(f"wrote {_e(results['files']['metrics'])} and {_e(results['files']['report'])}")
        return
    from taskadapt.errors import ConfigError
    from taskadapt.settings.domains import domains_table, evaluate_domains

    if baseline is not None:
        raise ConfigError("--baseline (Delta_m) works with one checkpoint on one dataset; drop it here")
    if backbone_weights is not None:
        raise ConfigError("--backbone-weights works with one checkpoint on one dataset; evaluate adapter-only "
                          "checkpoints whose weights moved one at a time")
    if not data:
        raise ConfigError("several checkpoints: name the datasets to score them on with --data (repeatable)")
    result = evaluate_domains(checkpoints, [parse_domain(d, format) for d in data], split=split,
                              out=out or "runs/domains", device=device)
    if _is_main_process():
        console.print(domains_table(result))
        console.print(f"wrote {_e(Path(out or 'runs/domains') / 'domains.md')}")


@app.command("eval-real")
def eval_real_cmd(
    checkpoint: Annotated[
        str, typer.Argument(help="A .safetensors checkpoint from `taskadapt train`, or `none` to score only the "
                                 "baselines.")
    ],
    folders: Annotated[
        list[Path], typer.Argument(help="Folders of real photos with edge or depth ground truth (layouts: bsds, "
                                        "depth_png, middlebury; see docs/real_images.md).")
    ],
    out: Annotated[
        str | None, typer.Option(help="Folder for metrics.json, report.md and sheets/ (default: <checkpoint "
                                      "dir>/../eval-real; runs/eval-real with `none`).")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="Layout of every folder: bsds, depth_png or middlebury "
                                                  "(default: detected per folder).")
    ] = None,
    calib: Annotated[
        str | None, typer.Option(help="Stereo camera of middlebury folders without a calib.txt: "
                                      "f=<px>,baseline=<metres>,doffs=<px>.")
    ] = None,
    edge_tolerance: Annotated[
        float, typer.Option(help="Edge matching radius as a fraction of the image diagonal (BSDS: 0.0075).")
    ] = 0.0075,
    thin_gt: Annotated[
        bool, typer.Option(help="Thin edge ground truth to 1-px lines (no-op on BSDS; NYUD maps are wider).")
    ] = True,
    sheets: Annotated[bool, typer.Option(help="Write a picture sheet per image.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier result in --out.")] = False,
) -> None:
    """Score a model and trivial baselines on real photos (edges: ODS/OIS/AP; depth: scale-aligned errors)."""
    from taskadapt.data.real import parse_calib
    from taskadapt.settings.real_images import evaluate_real, real_tables

    ckpt = None if checkpoint.lower() == "none" and not Path(checkpoint).exists() else checkpoint
    calibration = parse_calib(calib) if calib is not None else None
    doc = evaluate_real(ckpt, [str(f) for f in folders], out=out, format=format, calibration=calibration,
                        overwrite=overwrite, edge_tolerance=edge_tolerance, thin_gt=thin_gt, sheets=sheets)
    for table in real_tables(doc):
        console.print(table)
    for s in doc["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {_e(s['root'])}: {_e(s['reason'])}")
    console.print(f"wrote {_e(doc['files']['metrics'])} and {_e(doc['files']['report'])}")


@app.command("save-adapters")
def save_adapters_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A full .safetensors checkpoint from `taskadapt train`.")],
    out: Annotated[Path | None, typer.Option(help="File to write (default: <name>.adapters.safetensors beside it).")
                   ] = None,
    backbone_weights: Annotated[str | None, typer.Option(
        help="The backbone's pretrained weights (file, hf-hub:<repo> or 'bundled') when the run's "
             "model.pretrained does not point at them here.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
    verify: Annotated[int, typer.Option(
        help="Then compare both checkpoints' outputs on this many test images of the run's dataset (0: no).")] = 0,
) -> None:
    """Write the adapter-only checkpoint: what training changed, without the frozen backbone (rebuilt on load)."""
    from taskadapt.sharing.adapters_only import save_adapters, verify_adapters

    written = save_adapters(checkpoint, out, backbone_weights=backbone_weights, overwrite=overwrite)
    console.print(written.summary(), markup=False, highlight=False)
    if verify > 0:
        check = verify_adapters(checkpoint, written.path, verify)
        verdict = "identical to the full checkpoint's" if check.identical else "[red]DIFFERENT[/red]"
        console.print(f"outputs on {check.images} test images: {verdict} (max |diff| {_e(check.max_abs_diff)})")


@app.command("push")
def push_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A .safetensors checkpoint from `taskadapt train`.")],
    repo_id: Annotated[str, typer.Argument(help="Hub repository OWNER/NAME (created if missing).")],
    full: Annotated[bool, typer.Option(help="Upload the full checkpoint instead of the adapter-only one.")] = False,
    private: Annotated[bool, typer.Option(help="Create the repository as private.")] = False,
    local_dir: Annotated[Path | None, typer.Option(
        help="Keep the repository's files in this folder (with --dry-run: only write them there).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Write the repository to --local-dir and upload nothing.")] = False,
    backbone_weights: Annotated[str | None, typer.Option(
        help="The backbone's pretrained weights when the run's model.pretrained does not point at them here.")
    ] = None,
) -> None:
    """Publish a model on the Hugging Face hub: adapter-only checkpoint, model card and config."""
    from taskadapt.errors import ConfigError
    from taskadapt.sharing.publish import push, write_repo

    if dry_run:
        if local_dir is None:
            raise ConfigError("--dry-run writes the repository to --local-dir; pass --local-dir <folder>")
        layout = write_repo(checkpoint, local_dir, repo_id, full=full, backbone_weights=backbone_weights)
        console.print(f"wrote {_e(layout.folder)} ({_e(layout.bytes)} bytes of checkpoint, "
                      f"{'adapter-only' if layout.adapters_only else 'full'}); nothing uploaded")
        return
    url = push(checkpoint, repo_id, full=full, private=private, backbone_weights=backbone_weights,
               local_dir=local_dir)
    console.print(f"[green]pushed[/green] {_e(url)}; load it with taskadapt.load(\"hf-hub:{_e(repo_id)}\")")


@app.command("extend")
def extend_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="The trained model's .safetensors checkpoint.")],
    overrides: Annotated[list[str] | None, typer.Argument(
        help="key=value overrides of the run's config (e.g. data.root=..., train.steps=200).")] = None,
    task: Annotated[list[str], typer.Option(help="Task to add (repeat for several).")] = ...,
    out: Annotated[Path, typer.Option(help="Output folder of the extended run.")] = ...,
    config: Annotated[Path | None, typer.Option(help="A config file instead of the run's own config.")] = None,
) -> None:
    """Add a task to a trained model: only its embedding, head (and decoder) train; old tasks stay bit-identical."""
    from taskadapt.run import compare_outputs
    from taskadapt.train.extend import extend_config, probe_images
    from taskadapt.train.trainer import train

    cfg = extend_config(checkpoint, task, out, config, overrides or [])
    result = train(cfg, progress=True, command=_command("extend"))
    if _is_main_process():
        check = compare_outputs(checkpoint, result.last, probe_images(cfg))
        verdict = "bit-identical" if check.identical else "[red]CHANGED[/red]"
        console.print(f"[green]done[/green]: {_e(', '.join(task))} added in {_e(result.step)} steps; checkpoint "
                      f"{_e(result.best or result.last)}. Old tasks on {check.images} validation images: {verdict} "
                      f"(max |diff| {_e(check.max_abs_diff)})")


@app.command("export")
def export_cmd(
    checkpoint: Annotated[str, typer.Argument(help="A checkpoint (full or adapter-only) or hf-hub:OWNER/REPO.")],
    out: Annotated[Path, typer.Option(help="File to write, e.g. model.onnx.")],
    format: Annotated[str, typer.Option(help="onnx.")] = "onnx",
    batch_size: Annotated[int | None, typer.Option(help="A fixed batch size (default: a dynamic batch axis).")] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's).")] = None,
    check: Annotated[bool, typer.Option(help="Compare ONNX Runtime's outputs with PyTorch's before writing.")] = True,
    atol: Annotated[float, typer.Option(help="Absolute tolerance of the check.")] = 1e-4,
    rtol: Annotated[float, typer.Option(help="Relative tolerance of the check.")] = 1e-4,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
    backbone_weights: Annotated[str | None, typer.Option(
        help="An adapter-only checkpoint's backbone weights, when not where its header says.")] = None,
) -> None:
    """Export the inference model (one pass of the shared prefix, every task) to ONNX, checked against PyTorch."""
    from taskadapt.export import export_model

    report = export_model(checkpoint, out, format=format, batch_size=batch_size, opset=opset, check=check,
                          atol=atol, rtol=rtol, overwrite=overwrite, backbone_weights=backbone_weights)
    console.print(report.summary(), markup=False, highlight=False)


@app.command("predict")
def predict_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint (full or adapter-only) or hf-hub:OWNER/REPO.")],
    images: Annotated[
        list[str], typer.Argument(help="RGB images of any size, folders of images (png, jpg, jpeg, bmp, tif, tiff, "
                                       "webp; not recursive) or quoted glob patterns.")
    ],
    out: Annotated[str, typer.Option(help="Output folder.")] = "runs/predictions",
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda or cuda:N.")] = "auto",
    resize: Annotated[
        str, typer.Option(help="keep: short side to the model's size, overlapping square windows along the long "
                               "side (aspect ratio kept); squash: stretched to the model's square, as evaluation.")
    ] = "keep",
    overwrite: Annotated[bool, typer.Option(help="Replace output files that already exist.")] = False,
    backbone_weights: Annotated[str | None, typer.Option(
        help="An adapter-only checkpoint's backbone weights, when not where its header says.")] = None,
) -> None:
    """Per image and task a coloured PNG and the raw prediction (class ids / millimetre PNG, .npy), and a sheet."""
    from taskadapt.evaluation.predictions import predict_images

    paths = predict_images(checkpoint, images, out, device=device, mode=resize, overwrite=overwrite, progress=True,
                           backbone_weights=backbone_weights)
    console.print(f"wrote {_e(len(paths))} files to {_e(out)}")


@app.command("affinity")
def affinity_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A .safetensors checkpoint of an adapters model.")],
    out: Annotated[str | None, typer.Option(help="PNG path or folder for the heat map.")] = None,
) -> None:
    """The TROA task-affinity matrix as a table and a heat-map PNG."""
    from taskadapt.evaluation.affinity import affinity_report

    table, png = affinity_report(checkpoint, out=out)
    console.print(table)
    console.print(f"heat map: {_e(png)}")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/demo"),
    backbone_init: Annotated[
        str, typer.Option(help="'pretrained' (the bundled weights) or 'random' (the comparison run).")
    ] = "pretrained",
    steps: Annotated[int | None, typer.Option(help="Training steps (default: the demo's schedule).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier demo run in --out.")] = False,
) -> None:
    """Scenes -> train adapters on 4 tasks -> evaluate in-domain and on 2 unseen domains -> report.md."""
    from taskadapt.demo import run_demo

    run_demo(out, backbone_init=backbone_init, steps=steps, overwrite=overwrite)


@app.command("compare")
def compare_cmd(
    config: Annotated[Path | None, typer.Argument(help="YAML config file, e.g. configs/scenes.yaml.")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides.")] = None,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods (default: all; stl first, the Delta_m baseline).")
    ] = None,
    out: Annotated[str | None, typer.Option(help="Output folder (default: out_dir).")] = None,
    approx_edges: Annotated[bool, typer.Option(help="Fast approximate edge matcher (labelled in the table).")] = False,
    seeds: Annotated[
        int | None, typer.Option(help="Run every method on N seeds (the config's seed, +1, ...), each in "
                                      "<out>/seed<s>/; mean ± std and paired differences with a 95 % interval.")
    ] = None,
    seed_list: Annotated[str | None, typer.Option(help="The seeds instead of --seeds, e.g. 0,1,2.")] = None,
    reference: Annotated[
        str | None, typer.Option(help="With seeds: the method set against every other one (default: adapters).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option(help="Also write compare.json here when done, e.g. docs/results/compare-scenes.json.")
    ] = None,
) -> None:
    """Train every method with the same schedule and print one table with Delta_m against single-task."""
    from taskadapt.config import load_config
    from taskadapt.errors import ConfigError
    from taskadapt.io import write_json
    from taskadapt.settings.compare import compare_table, resolve_seeds, run_compare, run_compare_seeds, seeds_tables

    config, overrides = _split_config_arg(config, overrides)
    cfg = load_config(config, overrides)
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    seed_values = resolve_seeds(cfg.seed, seeds, seed_list)
    if seed_values is None:
        if reference is not None:
            raise ConfigError("--reference only applies to a comparison over seeds; add --seeds N or --seed-list")
        result = run_compare(cfg, chosen, out=out, exact_edges=not approx_edges)
        console.print(compare_table(result))
    else:
        result = run_compare_seeds(cfg, chosen, seed_values, out=out, reference=reference,
                                   exact_edges=not approx_edges)
        for table in seeds_tables(result):
            console.print(table)
    if json_out is not None:
        console.print(f"wrote {_e(write_json(json_out, result.to_dict()))}")
    console.print(f"wrote {_e(result.out / 'compare.md')}")


@app.command("zeroshot")
def zeroshot_cmd(
    config: Annotated[Path | None, typer.Argument(help="YAML config, e.g. configs/zeroshot_scenes.yaml.")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides.")] = None,
    out: Annotated[str | None, typer.Option(help="Output folder (default: out_dir).")] = None,
) -> None:
    """Zero-shot task transfer: carry a task to a target where it has no labels; score it there."""
    from taskadapt.config import load_config
    from taskadapt.settings.zeroshot import run_zeroshot, zeroshot_table

    config, overrides = _split_config_arg(config, overrides)
    result = run_zeroshot(load_config(config, overrides), out=out)
    console.print(zeroshot_table(result))
    console.print(f"wrote {_e(Path(result.out_dir) / 'zeroshot.md')}")


@app.command("adapt")
def adapt_cmd(
    config: Annotated[Path | None, typer.Argument(help="YAML config, e.g. configs/adapt_scenes.yaml.")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides.")] = None,
    out: Annotated[str | None, typer.Option(help="Output folder (default: out_dir).")] = None,
) -> None:
    """Unsupervised domain adaptation: source only vs adapted (ours) vs target supervised."""
    from taskadapt.config import load_config
    from taskadapt.settings.adapt import adapt_table, run_adapt

    config, overrides = _split_config_arg(config, overrides)
    result = run_adapt(load_config(config, overrides), out=out)
    console.print(adapt_table(result))
    console.print(f"wrote {_e(Path(result.out_dir) / 'adapt.md')}")


@app.command("pretrain")
def pretrain_cmd(
    out: Annotated[Path, typer.Option(help="Encoder weights to write (.safetensors; provenance .json beside it).")],
    minutes: Annotated[float | None, typer.Option(help="Time budget in minutes.")] = None,
    steps: Annotated[int | None, typer.Option(help="Step budget (reproducible; overrides --minutes).")] = None,
    seed: Annotated[int, typer.Option(help="Scene seed: keep it apart from the evaluation scenes' seed 0.")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1.5e-3,
    visible_weight: Annotated[float, typer.Option(
        help="Weight of the loss on visible patches (0 = MAE's masked-only loss).")] = 0.0,
    init_from: Annotated[Path | None, typer.Option(
        help="Continue from an encoder written by an earlier run (a second stage).")] = None,
    figure: Annotated[Path | None, typer.Option(help="Also write a PNG of masked inputs and reconstructions.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Pretrain the default backbone (MAE on procedural scenes of the `pretrain` domain, no task labels)."""
    from taskadapt.errors import ConfigError
    from taskadapt.pretrain import pretrain

    if minutes is None and steps is None:
        raise ConfigError("give a budget: --minutes M or --steps N (the shipped weights: see docs/pretraining.md)")
    command = _command("pretrain")
    path = pretrain(out, minutes=minutes, steps=steps, seed=seed, batch_size=batch_size, lr=lr,
                    visible_weight=visible_weight, init_from=init_from,
                    figure=str(figure) if figure else None, command=command, overwrite=overwrite)
    console.print(f"[green]wrote[/green] {_e(path)}")


@app.command("params")
def params(
    config: Annotated[Path | None, typer.Argument(help="YAML config file (optional).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides.")] = None,
) -> None:
    """Trainable and frozen parameters per component, and the share relative to mtl_finetune."""
    import dataclasses

    from taskadapt.config import load_config
    from taskadapt.models import create_model, num_classes_for
    from taskadapt.models.params import count_trainable, parameter_table

    config, overrides = _split_config_arg(config, overrides)
    cfg = load_config(config, overrides or [])
    classes = num_classes_for(cfg)
    model = create_model(cfg, num_classes=classes)
    reference_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, method="mtl_finetune"))
    reference = count_trainable(create_model(reference_cfg, num_classes=classes))
    table = Table(title=f"{cfg.model.method} on {cfg.model.backbone}, tasks {', '.join(cfg.data.tasks)}")
    for col in ("component", "trainable", "frozen"):
        table.add_column(col, justify="left" if col == "component" else "right")
    rows = parameter_table(model)
    for row in rows:
        table.add_row(row.component, f"{row.trainable:,}", f"{row.frozen:,}")
    trainable, frozen = sum(r.trainable for r in rows), sum(r.frozen for r in rows)
    table.add_row("total", f"{trainable:,}", f"{frozen:,}", style="bold")
    console.print(table)
    console.print(f"trainable share relative to mtl_finetune on the same backbone ({reference:,} trainable): "
                  f"[bold]{100 * trainable / reference:.1f}%[/bold]")


def _split_config_arg(config: Path | None, overrides: list[str] | None) -> tuple[Path | None, list[str]]:
    """`taskadapt X key=value` without a file puts the first override where the file would go."""
    if config is not None and "=" in str(config) and not config.exists():
        return None, [str(config), *(overrides or [])]
    return config, list(overrides or [])


@app.command("info")
def info() -> None:
    """List the tasks, dataset formats, scene domains and backbones taskadapt knows."""
    from taskadapt.data.datasets import list_formats
    from taskadapt.data.scenes import list_domains
    from taskadapt.models import list_backbones
    from taskadapt.models.methods import list_methods
    from taskadapt.tasks import get_task, list_tasks

    table = Table(title=f"taskadapt {__version__}")
    table.add_column("kind")
    table.add_column("names")
    tasks = [f"{t} ({get_task(t).primary_metric})" for t in list_tasks()]
    table.add_row("tasks (primary metric)", ", ".join(tasks))
    table.add_row("dataset formats", ", ".join(list_formats()))
    table.add_row("scene domains", ", ".join(list_domains()))
    table.add_row("backbones", ", ".join(list_backbones()))
    table.add_row("methods", ", ".join(list_methods()))
    console.print(table)


# --------------------------------------------------------------------------------------------------


def _command(name: str) -> str:
    """The command line of this subcommand, as a user would type it (kept in checkpoints and model cards)."""
    return shlex.join(["taskadapt", name, *sys.argv[2:]]) if len(sys.argv) > 1 else f"taskadapt {name}"


def _e(value: object) -> str:
    """A value shown in a rich message as it is (a path with ``[x]`` in it is not markup)."""
    return escape(str(value))


def _error(message: str) -> None:
    """``error: <message>`` on stderr, the message taken literally (no markup, no highlighting)."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and return its exit code.

    Usage errors (unknown option, missing argument) are reported by typer with exit code 2; user
    errors raised as :class:`TaskadaptError` anywhere below are printed on one line, exit code 2.
    """
    try:
        app(args=argv, prog_name="taskadapt")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except TaskadaptError as err:
        _error(str(err))
        return err.exit_code
    except OSError as err:  # the filesystem refused (not a folder, permission, disk full): name the path
        where = f" '{err.filename}'" if err.filename else ""
        _error(f"cannot access{where}: {err.strerror or err}; check the path and its permissions")
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return 0


def _console_script() -> None:
    sys.exit(main())
