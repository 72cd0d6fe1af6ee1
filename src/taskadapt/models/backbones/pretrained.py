"""Load pretrained backbone weights: a local file or a timm repository on the Hugging Face hub.

``source`` is either a path (``.safetensors``, or ``.pth``/``.pt``/``.bin``/``.ckpt`` read with
``torch.load(weights_only=True)``) or ``hf-hub:<owner>/<repo>`` (e.g.
``hf-hub:timm/vit_small_patch16_224.augreg_in21k_ft_in1k``), or ``"bundled"``: the weights taskadapt
ships for the model (:mod:`taskadapt.models.backbones.bundled`). Every problem a user can cause -- a
missing or corrupt file, a pickle that needs arbitrary code to load, no network, a checkpoint of a
different architecture -- is one :class:`~taskadapt.errors.CheckpointError` saying what to do.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import torch

from taskadapt.errors import CheckpointError
from taskadapt.models.backbones.base import Backbone

HUB_PREFIX = "hf-hub:"
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm publishes, preferred first
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# training checkpoints wrap the weights; the first of these keys that holds a dict is taken
CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")
_MAX_LISTED = 5


def load_pretrained(model: Backbone, source: str | os.PathLike) -> None:
    """Read ``source``, adapt it with ``model.checkpoint_filter`` and load it strictly into ``model``."""
    if str(source) == "bundled":
        from taskadapt.models.backbones.bundled import bundled_weights_path

        source = bundled_weights_path(model.name)
    state_dict = read_state_dict(source)
    try:
        state_dict = model.checkpoint_filter(state_dict)
    except CheckpointError as err:  # e.g. a position embedding that cannot be resized
        raise CheckpointError(f"checkpoint {source}: {err}") from None
    problems = _mismatch_report(model, state_dict)
    if problems:
        name = model.name or type(model).__name__
        raise CheckpointError(
            f"checkpoint {source} does not fit backbone '{name}': {problems}. Is this a checkpoint of "
            f"'{name}'? Pass the backbone name the weights were trained with (for a timm hub repo, the part "
            "before the dot: timm/vit_small_patch16_224.augreg_in21k -> vit_small_patch16_224)"
        )
    model.load_state_dict(state_dict, strict=True)


def read_state_dict(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint by parameter name, on the CPU, unwrapped from training containers."""
    path = weights_file(source)
    return _unwrap(_read_file(path), path)


def weights_file(source: str | os.PathLike) -> Path:
    """The local file behind a ``pretrained=`` value: a path (a hub snapshot folder: its weights file),
    ``hf-hub:<owner>/<repo>`` (downloaded or from the cache). ``"bundled"`` needs the backbone's name:
    use :func:`~taskadapt.models.backbones.bundled.bundled_weights_path`."""
    source_str = str(source)
    if source_str.startswith(HUB_PREFIX):
        return download_from_hub(source_str[len(HUB_PREFIX) :])
    path = Path(source_str).expanduser()
    if path.is_dir():  # a downloaded hub snapshot folder
        found = [path / f for f in HUB_FILES if (path / f).is_file()]
        if not found:
            raise CheckpointError(f"folder {path} holds no {' or '.join(HUB_FILES)}; pass the weights file")
        return found[0]
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist; check the path passed as pretrained=")
    return path


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 23):
            digest.update(chunk)
    return digest.hexdigest()


def describe_weights(backbone: str, source: str | os.PathLike) -> dict[str, object]:
    """Where backbone ``backbone``'s pretrained weights come from, for an adapter-only checkpoint's header:
    ``{"kind": "bundled" | "hub" | "file", "source": <the pretrained= value to rebuild with>, "file": <name>,
    "bytes": N, "sha256": ...}``. A file is recorded by its absolute path."""
    source_str = str(source)
    if source_str == "bundled":
        from taskadapt.models.backbones.bundled import bundled_weights_path

        kind, path = "bundled", bundled_weights_path(backbone)
    elif source_str.startswith(HUB_PREFIX):
        kind, path = "hub", weights_file(source_str)
    else:
        path = weights_file(source_str).absolute()
        kind, source_str = "file", str(path)
    return {"kind": kind, "source": source_str, "file": path.name, "bytes": path.stat().st_size,
            "sha256": sha256_of(path)}


def resolve_weights(backbone: str, record: dict, override: str | os.PathLike | None = None) -> Path:
    """The local weights file that ``record`` (:func:`describe_weights`) names -- or ``override``, a file or
    ``hf-hub:`` id standing in for it -- checked against the recorded SHA-256. A missing file or another
    file's hash is a CheckpointError saying which weights are needed."""
    sha = str(record.get("sha256", ""))
    wanted = (f"{record.get('kind')} weights '{record.get('source')}' ({record.get('file')}, "
              f"{int(record.get('bytes') or 0):,} bytes, sha256 {sha[:12]}...)")
    try:
        if override is not None:
            path = weights_file(override)
        elif record.get("kind") == "bundled":
            from taskadapt.models.backbones.bundled import bundled_weights_path

            path = bundled_weights_path(backbone)
        else:
            path = weights_file(str(record.get("source")))
    except CheckpointError as err:
        raise CheckpointError(f"the frozen backbone needs {wanted}, which cannot be found ({err}); pass a copy of "
                              "them as backbone_weights=<file> (CLI: --backbone-weights)") from None
    found = sha256_of(path)
    if found != sha:
        raise CheckpointError(f"backbone weights {path} have sha256 {found[:12]}... but the model was trained on "
                              f"{wanted}; pass those exact weights as backbone_weights=<file> (CLI: "
                              "--backbone-weights), or use the full checkpoint")
    return path


def download_from_hub(repo: str) -> Path:
    """Path of ``model.safetensors`` (or ``pytorch_model.bin``) of hub repo ``owner/name``, from the
    local cache or downloaded. Offline (``HF_HUB_OFFLINE=1``) only the cache is used."""
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", repo):
        raise CheckpointError(
            f"'{HUB_PREFIX}{repo}' is not a hub repository name; use {HUB_PREFIX}<owner>/<repo>, e.g. "
            f"{HUB_PREFIX}timm/vit_small_patch16_224.augreg_in21k_ft_in1k"
        )
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as err:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError(_offline_message(repo, f"huggingface_hub is not importable ({err})")) from None
    # read the variable at call time: huggingface_hub reads it only once, when first imported
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    last_error: Exception | None = None
    for filename in HUB_FILES:
        try:
            return Path(hf_hub_download(repo, filename, local_files_only=offline))
        except LocalEntryNotFoundError as err:  # offline and not cached, or the network is unreachable
            last_error = err
            if not offline:
                break  # a network failure would only repeat for the fallback file
        except EntryNotFoundError as err:  # the repo exists but lacks this file: try the next one
            last_error = err
        except RepositoryNotFoundError:
            raise CheckpointError(
                f"hub repository '{repo}' does not exist (or is private or gated); check the name, e.g. "
                "timm/vit_small_patch16_224.augreg_in21k_ft_in1k"
            ) from None
        except Exception as err:  # any other network or server error
            last_error = err
            break
    if offline:
        reason = "HF_HUB_OFFLINE is set and the file is not in the local Hugging Face cache"
    elif isinstance(last_error, LocalEntryNotFoundError):
        reason = "the hub could not be reached (no internet?) and the file is not in the local cache"
    elif isinstance(last_error, EntryNotFoundError):
        reason = f"the repository has none of {', '.join(HUB_FILES)}"
    else:
        reason = _short(last_error)
    raise CheckpointError(_offline_message(repo, reason))


def _offline_message(repo: str, reason: str) -> str:
    url = f"https://huggingface.co/{repo}/resolve/main/{HUB_FILES[0]}"
    return (
        f"cannot get the weights of hub repository '{repo}': {reason}. Download {url} on a machine with "
        f"internet access, copy it here and pass its local path as pretrained=<path to {HUB_FILES[0]}>"
    )


def _short(err: Exception | None) -> str:
    text = f"{type(err).__name__}: {err}" if err is not None else "unknown error"
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def _read_file(path: Path) -> object:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint {path} is not a readable safetensors file ({_short(err)}); it is probably "
                "truncated or corrupt: download or export it again"
            ) from None
    if suffix in TORCH_SUFFIXES:
        return _torch_load(path)
    raise CheckpointError(
        f"checkpoint {path} has an unknown extension '{suffix}'; use a .safetensors file or a torch "
        f"state dict ({', '.join(TORCH_SUFFIXES)})"
    )


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses pickled classes by name ("Unsupported global: GLOBAL argparse.Namespace")
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found:
            raise CheckpointError(
                f"checkpoint {path} contains pickled Python objects ({found.group(1)}) and taskadapt only "
                "loads plain tensors (torch.load weights_only=True), because unpickling can run arbitrary "
                'code. If you trust the file, re-save its weights: python -c "import torch; from '
                f"safetensors.torch import save_file; sd = torch.load('{path}', weights_only=False); "
                "save_file(sd.get('state_dict', sd.get('model', sd)), 'weights.safetensors')\" and pass "
                "weights.safetensors"
            ) from None
        raise CheckpointError(_corrupt_message(path, err)) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError, IndexError) as err:
        raise CheckpointError(_corrupt_message(path, err)) from None


def _corrupt_message(path: Path, err: Exception) -> str:
    detail = str(err).split("\n")[0] if str(err).strip() else type(err).__name__
    return (
        f"checkpoint {path} is not a readable torch file ({_short(RuntimeError(detail))}); it is probably "
        "truncated or corrupt: download or save it again"
    )


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside a training checkpoint and drop a DistributedDataParallel prefix."""
    for _ in range(3):  # e.g. {"model": {"state_dict": ...}}
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        if isinstance(obj, dict):
            keys = ", ".join(sorted(map(str, obj))[:_MAX_LISTED]) or "nothing"
            what = f"a dict whose top-level keys are {keys}"
        else:
            what = f"a {type(obj).__name__}"
        raise CheckpointError(
            f"checkpoint {path} holds {what}, not a state dict of tensors; pass a file with the model "
            f"weights (a state dict, possibly under one of the keys {', '.join(CONTAINER_KEYS)})"
        )
    if all(k.startswith("module.") for k in obj):  # saved from a DistributedDataParallel wrapper
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _mismatch_report(model: Backbone, state_dict: dict[str, torch.Tensor]) -> str:
    """'' if ``state_dict`` loads strictly into ``model``, else a summary of what differs."""
    expected = model.state_dict()
    missing = [f"{k} {tuple(v.shape)}" for k, v in expected.items() if k not in state_dict]
    unexpected = [f"{k} {tuple(v.shape)}" for k, v in state_dict.items() if k not in expected]
    wrong_shape = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if items:
            more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            parts.append(f"{len(items)} {label}: {'; '.join(items[:_MAX_LISTED])}{more}")
    return ". ".join(parts)
