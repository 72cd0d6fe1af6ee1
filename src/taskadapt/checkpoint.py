"""Checkpoints: weights as safetensors with a JSON header, training state loadable with weights_only.

A checkpoint ``NAME`` is two files in the run's ``checkpoints/`` folder:

* ``NAME.safetensors`` -- the model's state dict (float32) and, in the safetensors metadata under the
  key ``taskadapt``, a JSON document: format tag, config, step, tasks, class counts, the TROA affinity
  matrix, metrics, versions. This one file is all ``taskadapt.load`` needs.
* ``NAME.state.pt`` -- optimizer, scheduler and data position, saved with ``torch.save`` in a form that
  ``torch.load(weights_only=True)`` accepts (tensors, numbers, strings, lists, dicts).

An **adapter-only** checkpoint (``taskadapt save-adapters``, :mod:`taskadapt.sharing.adapters_only`) is the
same ``.safetensors`` file without the tensors the backbone's pretrained weights give unchanged
(:meth:`~taskadapt.models.network.TaskNetwork.frozen_pretrained_keys`). Its header adds ``contents:
"adapters"``, ``backbone_weights`` (where those weights come from and their SHA-256) and ``frozen`` (how many
tensors were left out and the digest of their values, :func:`tensor_digest`), so that loading can rebuild
them and prove they are the same.

Both are written atomically (temp file, fsync, rename), the training state first, so a crash never
leaves a half-written file in place of a good one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from taskadapt.distributed import unwrap
from taskadapt.errors import CheckpointError
from taskadapt.io import atomic_open
from taskadapt.version import __version__

FORMAT = "taskadapt-checkpoint"
FORMAT_VERSION = 1
#: the header's ``contents``: every tensor, or all but the frozen pretrained backbone weights
FULL, ADAPTERS = "full", "adapters"


def plain_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as stored: on the CPU, floating tensors in float32, contiguous."""
    module = unwrap(model)
    return {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
            for k, v in module.state_dict().items()}


def tensor_digest(state: Mapping[str, torch.Tensor], keys: Collection[str]) -> str:
    """SHA-256 over ``keys`` (sorted) of ``state``: each key's name, dtype, shape and bytes as stored."""
    digest = hashlib.sha256()
    for key in sorted(keys):
        value = state[key].detach().to("cpu", torch.float32 if state[key].is_floating_point() else state[key].dtype)
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.contiguous().view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, meta: dict[str, Any],
                    train_state: dict[str, Any] | None = None, *, leave_out: Collection[str] = ()) -> Path:
    """Write ``path`` (``.safetensors``) and, if given, ``path`` with ``.state.pt`` beside it. Tensors named
    in ``leave_out`` are not stored (an adapter-only checkpoint; ``meta`` then says how to rebuild them)."""
    path = Path(path)
    if train_state is not None:
        with atomic_open(state_path(path), "wb") as f:
            torch.save(train_state, f)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "taskadapt_version": __version__,
              "torch_version": torch.__version__, "contents": FULL, **meta}
    dropped = set(leave_out)
    state = {k: v for k, v in plain_state(model).items() if k not in dropped}
    blob = save(state, metadata={"taskadapt": json.dumps(header)})
    with atomic_open(path, "wb") as f:
        f.write(blob)
    return path


def state_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".state.pt")


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a checkpoint, checked to be ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; pass a .safetensors file written by "
                              "`taskadapt train` (in <out_dir>/checkpoints/)")
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
        meta = json.loads(header.get("__metadata__", {}).get("taskadapt", "null"))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint '{path}' is corrupt or not a safetensors file ({err}); "
                              "re-run training or pick another checkpoint") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is a safetensors file but not a taskadapt checkpoint (no '{FORMAT}' "
                              "header); for backbone weights use model.pretrained=<file>")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint '{path}' has format version {meta['format_version']}, newer than this "
                              f"taskadapt ({__version__}) reads; upgrade taskadapt")
    return meta


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({err}); it is truncated or corrupt") from None


def load_train_state(path: str | os.PathLike) -> dict[str, Any]:
    sp = state_path(path)
    if not sp.is_file():
        raise CheckpointError(f"'{sp}' (optimizer and scheduler state) is missing, so '{path}' cannot be resumed; "
                              "resume from a checkpoint written by `taskadapt train`, or start a new run")
    try:
        return torch.load(sp, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or unsafe pickles
        raise CheckpointError(f"training state '{sp}' cannot be loaded ({type(err).__name__}); it is corrupt "
                              "or not written by taskadapt") from None


def restore_model(model: torch.nn.Module, path: str | os.PathLike, rebuilt: Collection[str] = ()) -> None:
    """Load a checkpoint's weights into ``model`` with strict key checking; keys in ``rebuilt`` (the frozen
    weights an adapter-only checkpoint leaves out) must be absent from the file and stay as they are."""
    module = unwrap(model)
    state = load_weights(path)
    result = module.load_state_dict(state, strict=False)
    missing = sorted(set(result.missing_keys) - set(rebuilt))
    unexpected = sorted(set(result.unexpected_keys) | (set(rebuilt) & set(state)))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint '{path}' does not fit this model: missing {missing[:4]}, unexpected "
            f"{unexpected[:4]}; was it trained with another backbone, method or task list?"
        )
