"""Adapter-only checkpoints: what a run trained, without the frozen backbone it shares with every other run.

A full checkpoint stores the backbone too, so ten trained task sets cost ten backbones. The adapter-only
file keeps every tensor the run changed or added -- adapters, TAA, TSN, task embeddings, the affinity
matrix, decoder, heads -- and names the backbone's pretrained weights instead of storing them (``bundled``,
an ``hf-hub:`` id or a file, with its SHA-256; :func:`~taskadapt.models.backbones.pretrained.describe_weights`).
Loading (:class:`~taskadapt.run.Run`, ``taskadapt.load``) rebuilds the backbone from that file, checks its
hash, then checks that the rebuilt frozen tensors are bit for bit those the run was trained on (a digest in
the header), so the loaded model predicts exactly what the full checkpoint does.

    taskadapt save-adapters runs/demo/run/checkpoints/best.safetensors
    # -> runs/demo/run/checkpoints/best.adapters.safetensors
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from taskadapt import checkpoint as ckpt
from taskadapt.errors import CheckpointError
from taskadapt.evaluation.loaders import eval_loader, open_split
from taskadapt.models.backbones.pretrained import describe_weights
from taskadapt.run import OutputComparison, Run, compare_outputs

SUFFIX = ".adapters.safetensors"


@dataclass(frozen=True)
class AdapterExport:
    """What :func:`save_adapters` wrote: the file, its size against the full checkpoint's, tensor counts."""

    path: Path
    bytes: int
    full_bytes: int
    tensors: int
    left_out: int
    backbone_weights: dict

    @property
    def fraction(self) -> float:
        """Size of the adapter-only file as a fraction of the full checkpoint's."""
        return self.bytes / self.full_bytes

    def summary(self) -> str:
        """One line for the command line."""
        w = self.backbone_weights
        return (f"wrote {self.path}: {self.bytes:,} bytes, {100 * self.fraction:.1f} % of the full checkpoint "
                f"({self.full_bytes:,}); {self.tensors} tensors stored, {self.left_out} frozen backbone tensors "
                f"rebuilt on load from {w['kind']} weights {w['file'] if w['kind'] == 'bundled' else w['source']} "
                f"(sha256 {w['sha256'][:12]}...)")


def default_output(checkpoint: str | os.PathLike) -> Path:
    """``best.safetensors`` -> ``best.adapters.safetensors`` beside it."""
    path = Path(checkpoint)
    return path.with_name(path.name.removesuffix(".safetensors") + SUFFIX)


def backbone_source(run: Run, backbone_weights: str | os.PathLike | None = None) -> str:
    """The ``pretrained=`` value the run's frozen backbone came from: ``backbone_weights`` if given, else the
    run's ``model.pretrained``. A run without pretrained weights has nothing to rebuild from."""
    if backbone_weights is not None:
        return str(backbone_weights)
    stored = (run.meta.get("config") or {}).get("model", {}).get("pretrained")
    if not stored:
        raise CheckpointError(f"checkpoint '{run.path}' was trained on a randomly initialised backbone "
                              "(model.pretrained=null), which no file holds: an adapter-only checkpoint could not "
                              "rebuild it. Keep the full checkpoint")
    return str(stored)


def save_adapters(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, *,
                  backbone_weights: str | os.PathLike | None = None, overwrite: bool = False) -> AdapterExport:
    """Write the adapter-only version of full checkpoint ``checkpoint`` to ``out`` (default: ``<name>.adapters
    .safetensors`` beside it), atomically.

    ``backbone_weights``: the backbone's pretrained weights (a file, ``hf-hub:<owner>/<repo>`` or ``bundled``)
    when the run's own ``model.pretrained`` is not valid here (a relative path from elsewhere). They must be
    the weights the run was trained on: the frozen tensors of the checkpoint are compared with them, bit for
    bit, before anything is written.
    """
    run = Run.open(checkpoint)
    if run.adapters_only:
        raise CheckpointError(f"'{run.path}' is already an adapter-only checkpoint; pass the full checkpoint "
                              "written by `taskadapt train`")
    out = Path(out) if out is not None else default_output(run.path)
    if out.resolve() == run.path.resolve():
        raise CheckpointError(f"--out '{out}' is the checkpoint itself; write the adapter-only file elsewhere")
    if out.exists() and not overwrite:
        raise CheckpointError(f"'{out}' already exists; pass --overwrite to replace it, or another --out")
    source = backbone_source(run, backbone_weights)
    record = describe_weights(run.backbone, source)
    model = run.build_model()
    keys = model.frozen_pretrained_keys()
    if not keys:
        raise CheckpointError(f"method '{run.method}' trains every backbone weight, so an adapter-only checkpoint "
                              "would hold everything the full one does; share the full checkpoint")
    stored = ckpt.plain_state(model)
    digest = ckpt.tensor_digest(stored, keys)
    header = {"contents": ckpt.ADAPTERS, "backbone_weights": record, "frozen": {"tensors": len(keys), "sha256": digest}}
    # the frozen tensors must be what the named weights give: rebuild the model from them as loading will
    reference = Run(run.path, {**run.meta, **header})
    try:
        rebuilt = reference.create_network()
    except CheckpointError as err:
        raise CheckpointError(f"cannot write an adapter-only checkpoint of '{run.path}' with backbone weights "
                              f"'{source}': {err}") from None
    try:
        reference.check_frozen(rebuilt, rebuilt.frozen_pretrained_keys())
    except CheckpointError:
        raise CheckpointError(f"the frozen backbone weights of '{run.path}' are not those of '{source}', so "
                              "an adapter-only checkpoint could not rebuild them (nothing written); pass the weights "
                              "it was trained with as --backbone-weights") from None
    meta = {k: v for k, v in run.meta.items() if k not in ("format", "format_version", "taskadapt_version",
                                                             "torch_version", "contents")}
    meta.update(header,
                full_checkpoint={"file": run.path.name, "bytes": run.path.stat().st_size})
    ckpt.save_checkpoint(out, model, meta, leave_out=keys)
    return AdapterExport(out, out.stat().st_size, run.path.stat().st_size, len(stored) - len(keys), len(keys),
                         record)


def verify_adapters(full: str | os.PathLike, adapters: str | os.PathLike, max_images: int = 200,
                    split: str | None = None) -> OutputComparison:
    """Both checkpoints' raw outputs on up to ``max_images`` images of the run's own test split (or ``split``):
    an adapter-only checkpoint must give exactly the full one's (``identical``)."""
    run = Run.open(full)
    dataset = open_split(run.config.data, split or run.config.data.test_split, run.tasks)
    images = [batch["image"] for batch in eval_loader(dataset, run.input_size, 32, max_images)]
    return compare_outputs(run, adapters, torch.cat(images))


__all__ = ["AdapterExport", "default_output", "save_adapters", "verify_adapters"]
