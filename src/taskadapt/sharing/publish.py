"""Publish a trained model as a Hugging Face hub repository: ``taskadapt push CKPT OWNER/REPO``.

The repository holds three files, written first to a local folder (``--local-dir`` keeps it, to look at or
to upload by other means):

* ``model.safetensors`` -- the adapter-only checkpoint (:mod:`taskadapt.sharing.adapters_only`), or with
  ``full=True`` the full one; the header is all ``taskadapt.load("hf-hub:OWNER/REPO")`` needs;
* ``README.md`` -- the model card: tasks and classes, validation metrics, backbone and where its weights
  come from (SHA-256), the TROA affinity, the command that trained it, how to load it;
* ``config.yaml`` -- the run's configuration, to retrain it with ``taskadapt train config.yaml``.

The upload is one commit through ``huggingface_hub.HfApi`` (``create_repo`` then ``upload_folder``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from taskadapt.config import to_yaml
from taskadapt.errors import CheckpointError, ConfigError
from taskadapt.io import atomic_open, write_text
from taskadapt.run import Run
from taskadapt.sharing.adapters_only import save_adapters
from taskadapt.sharing.hub import CHECKPOINT_FILE, HUB_PREFIX, parse_hub_id
from taskadapt.tasks import get_task

#: hub tags per task (the hub's task vocabulary where it has one)
TASK_TAGS = {"semseg": "semantic-segmentation", "depth": "depth-estimation", "normals": "surface-normals",
             "edge": "edge-detection", "saliency": "saliency", "parts": "human-parts"}
#: what ``Predictor.predict`` returns per task (the table of :mod:`taskadapt.api`)
TASK_OUTPUTS = {"semseg": "(H, W) class ids", "parts": "(H, W) part ids", "depth": "(H, W) metres",
                "normals": "(H, W, 3) unit normals, camera frame", "edge": "(H, W) boundary probability",
                "saliency": "(H, W) saliency probability"}


@dataclass(frozen=True)
class RepoFolder:
    """A model repository laid out on disk: its folder, the checkpoint in it and whether it is adapter-only."""

    folder: Path
    checkpoint: Path
    adapters_only: bool
    bytes: int
    full_bytes: int


def write_repo(checkpoint: str | os.PathLike, folder: str | os.PathLike, repo_id: str, *, full: bool = False,
               backbone_weights: str | os.PathLike | None = None, overwrite: bool = False) -> RepoFolder:
    """Write the repository of ``checkpoint`` (a full checkpoint of ``taskadapt train``) to ``folder``."""
    folder = Path(folder)
    target = folder / CHECKPOINT_FILE
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise ConfigError(f"folder '{folder}' is not empty; pass --overwrite to write the repository there anyway, "
                          "or choose an empty one")
    run = Run.open(checkpoint)
    if full or run.adapters_only:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(target, "wb") as out, open(run.path, "rb") as src:
            shutil.copyfileobj(src, out)
        full_bytes = int((run.meta.get("full_checkpoint") or {}).get("bytes") or run.path.stat().st_size)
    else:
        full_bytes = save_adapters(run.path, target, backbone_weights=backbone_weights, overwrite=True).full_bytes
    written = Run.open(target)
    write_text(folder / "config.yaml", to_yaml(written.config))
    write_text(folder / "README.md", model_card(written, repo_id, full_bytes))
    return RepoFolder(folder, target, written.adapters_only, target.stat().st_size, full_bytes)


def push(checkpoint: str | os.PathLike, repo_id: str, *, full: bool = False, private: bool = False,
         backbone_weights: str | os.PathLike | None = None, local_dir: str | os.PathLike | None = None,
         token: str | None = None, message: str | None = None) -> str:
    """Write the repository (:func:`write_repo`) and upload it to hub repo ``repo_id`` (created if missing).
    Returns the commit's URL."""
    repo, revision = parse_hub_id(repo_id if repo_id.startswith(HUB_PREFIX) else HUB_PREFIX + repo_id)
    if revision is not None:
        raise ConfigError(f"push to a repository name without @revision, got '{repo_id}'")
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory(prefix="taskadapt-push-") as tmp:
        layout = write_repo(checkpoint, local_dir or tmp, repo, full=full, backbone_weights=backbone_weights,
                            overwrite=local_dir is None)
        api, written = HfApi(token=token), Run.open(layout.checkpoint)
        message = message or f"taskadapt: {written.method} model for {', '.join(written.tasks)}"
        try:
            api.create_repo(repo, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo, folder_path=str(layout.folder), commit_message=message)
        except Exception as err:  # network, authentication, permissions: all a user can act on
            text = " ".join(f"{type(err).__name__}: {err}".split())[:240]
            kept = f"the repository is in {layout.folder}" if local_dir else "pass --local-dir to keep the files"
            raise CheckpointError(f"uploading to hub repository '{repo}' failed ({text}); log in with "
                                  f"`hf auth login` (or pass a token) and check your rights to '{repo}'; {kept}"
                                  ) from None
    return str(getattr(info, "commit_url", info))


def model_card(run: Run, repo_id: str, full_bytes: int) -> str:
    """The README.md of the repository: YAML metadata for the hub, then what a user needs to know."""
    from huggingface_hub import ModelCardData

    record = run.meta.get("backbone_weights") or {}
    base_model = str(record.get("source", "")).removeprefix(HUB_PREFIX) if record.get("kind") == "hub" else None
    tags = ["taskadapt", "multitask", "dense-prediction", "adapters", *(TASK_TAGS.get(t, t) for t in run.tasks)]
    data = ModelCardData(library_name="taskadapt", tags=tags, base_model=base_model)
    cfg = run.config
    size = run.path.stat().st_size
    lines = [
        "---", data.to_yaml(), "---", "",
        f"# {repo_id.split('/')[-1]}", "",
        f"A taskadapt **{run.method}** model on a frozen "
        f"**{run.backbone}** that predicts {', '.join(f'`{t}`' for t in run.tasks)} in one forward pass "
        f"({run.input_size} x {run.input_size} input, {run.step} training steps).", "",
        "```python", "import taskadapt", "",
        f'model = taskadapt.load("{HUB_PREFIX}{repo_id}")',
        'out = model.predict("photo.jpg")   # {task: array at the photo\'s size}', "```", "",
        "## Tasks", "", "| task | output | classes |", "|---|---|---|",
    ]
    names = run.class_names
    for t in run.tasks:
        k = run.num_classes.get(t)
        shown = ", ".join(names.get(t, [])[:12]) + (" ..." if len(names.get(t, [])) > 12 else "")
        lines.append(f"| {t} | {TASK_OUTPUTS.get(t, get_task(t).kind)} | {f'{k}: {shown}' if k else '-'} |")
    metrics = run.meta.get("metrics") or {}
    rows = [(t, m, v) for t, ms in metrics.items() if isinstance(ms, dict) for m, v in ms.items()
            if isinstance(v, int | float)]
    if rows:
        lines += ["", f"## Validation metrics (step {metrics.get('step', run.step)})", "",
                  "| task | metric | value |", "|---|---|---:|"]
        lines += [f"| {t} | {m} | {v:.4g} |" for t, m, v in rows]
    lines += ["", "## Backbone", ""]
    if run.adapters_only:
        lines += [f"This repository stores only what training changed ({size:,} bytes, "
                  f"{100 * size / full_bytes:.1f} % of the full checkpoint's {full_bytes:,}). The frozen backbone "
                  f"is rebuilt from {record.get('kind')} weights `{record.get('source')}` (`{record.get('file')}`, "
                  f"sha256 `{record.get('sha256')}`); loading checks the hash, then that the rebuilt frozen tensors "
                  "are bit for bit those the adapters were trained on."]
        if record.get("kind") == "file":
            lines += ["", "Those weights are a local file of the machine that trained the model: pass your copy "
                          'with `taskadapt.load(..., backbone_weights="<file>")`.']
    else:
        lines += [f"Full checkpoint ({size:,} bytes): every weight, the backbone's included."]
    affinity = run.affinity
    if affinity is not None:
        lines += ["", "## Task affinity (TROA)", "", "`A[i, j]`: the effect of task i (row) on task j (column).", "",
                  "| | " + " | ".join(run.tasks) + " |", "|---|" + "---:|" * len(run.tasks)]
        lines += [f"| {t} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for t, row in zip(run.tasks, affinity,
                                                                                          strict=True)]
    command = run.meta.get("command")
    trained = ", ".join(run.meta.get("trained_tasks") or run.tasks)
    lines += ["", "## Training", "",
              f"Method `{run.method}`, tasks trained with labels: {trained}; "
              f"data format `{cfg.data.format}`; {run.step} steps, batch {cfg.data.batch_size}, lr {cfg.train.lr}, "
              f"seed {cfg.seed}."]
    if command:
        lines += ["", "The command that trained it:", "", "```bash", str(command), "```"]
    lines += ["", "To train it again (`data.root` in `config.yaml` names the trainer's folder; point it at yours):",
              "", "```bash", "pip install taskadapt", "taskadapt train config.yaml", "```", ""]
    return "\n".join(lines)


__all__ = ["RepoFolder", "model_card", "push", "write_repo"]
