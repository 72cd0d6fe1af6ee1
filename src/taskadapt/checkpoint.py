"""Checkpoints: weights as safetensors with a JSON header, training state loadable with weights_only.

A checkpoint ``NAME`` is two files in the run's ``checkpoints/`` folder:

* ``NAME.safetensors`` -- the model's state dict (float32) and, in the safetensors metadata under the
  key ``taskadapt``, a JSON document: format tag, config, step, tasks, class counts, the TROA affinity
  matrix, metrics, versions. This one file is all ``taskadapt.load`` needs.
* ``NAME.state.pt`` -- optimizer, scheduler and data position, saved with ``torch.save`` in a form that
  ``torch.load(weights_only=True)`` accepts (tensors, numbers, strings, lists, dicts).

Both are written atomically (temp file, fsync, rename), the training state first, so a crash never
leaves a half-written file in place of a good one.
"""

from __future__ import annotations

import json
import os
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


def _plain_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    module = unwrap(model)
    return {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
            for k, v in module.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, meta: dict[str, Any],
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (``.safetensors``) and, if given, ``path`` with ``.state.pt`` beside it."""
    path = Path(path)
    if train_state is not None:
        with atomic_open(state_path(path), "wb") as f:
            torch.save(train_state, f)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "taskadapt_version": __version__,
              "torch_version": torch.__version__, **meta}
    blob = save(_plain_state(model), metadata={"taskadapt": json.dumps(header)})
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


def restore_model(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint's weights into ``model`` with strict key checking."""
    module = unwrap(model)
    state = load_weights(path)
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint '{path}' does not fit this model: missing {result.missing_keys[:4]}, unexpected "
            f"{result.unexpected_keys[:4]}; was it trained with another backbone, method or task list?"
        )
