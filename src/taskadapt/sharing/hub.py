"""Fetch a taskadapt model from the Hugging Face hub: ``taskadapt.load("hf-hub:OWNER/REPO")``.

A taskadapt model repository (written by ``taskadapt push``, :mod:`taskadapt.sharing.publish`) holds
``model.safetensors`` -- a taskadapt checkpoint, adapter-only or full -- with a model card and the run's
``config.yaml``. ``hf-hub:OWNER/REPO@REVISION`` pins a branch, tag or commit. The file comes from
huggingface_hub's cache when it is there; with ``HF_HUB_OFFLINE=1`` only from there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from taskadapt.errors import CheckpointError

HUB_PREFIX = "hf-hub:"
#: the checkpoint's name in a taskadapt model repository
CHECKPOINT_FILE = "model.safetensors"
_REPO = re.compile(r"[\w.\-]+/[\w.\-]+")


def is_hub_id(value: str | os.PathLike) -> bool:
    return str(value).startswith(HUB_PREFIX)


def parse_hub_id(value: str) -> tuple[str, str | None]:
    """``hf-hub:owner/name[@revision]`` -> (``owner/name``, revision or None)."""
    repo, _, revision = value.removeprefix(HUB_PREFIX).partition("@")
    if not _REPO.fullmatch(repo):
        raise CheckpointError(f"'{value}' is not a hub model id; use {HUB_PREFIX}<owner>/<repo>, optionally "
                              f"@<branch, tag or commit>, e.g. {HUB_PREFIX}my-lab/scenes-adapters")
    return repo, revision or None


def checkpoint_from_hub(value: str) -> Path:
    """The local path of hub model ``value``'s ``model.safetensors`` (cached, or downloaded now)."""
    repo, revision = parse_hub_id(value)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # read at call time: huggingface_hub reads the variable only once, when first imported
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    fetch = f"`hf download {repo} --local-dir <folder>`, then load <folder>/{CHECKPOINT_FILE}"
    try:
        return Path(hf_hub_download(repo, CHECKPOINT_FILE, revision=revision, local_files_only=offline))
    except RepositoryNotFoundError:
        raise CheckpointError(f"hub repository '{repo}' does not exist, or is private or gated; check the name "
                              "(and log in with `hf auth login` for a private one)") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"hub repository '{repo}' has no revision '{revision}'; check the branch, tag or "
                              "commit after the @") from None
    except LocalEntryNotFoundError:  # before EntryNotFoundError: a subclass of it
        why = ("HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache" if offline else
               "the hub cannot be reached (no internet?) and it is not in the local cache")
        raise CheckpointError(f"cannot get {CHECKPOINT_FILE} of hub repository '{repo}': {why}. On a machine with "
                              f"internet: {fetch}") from None
    except EntryNotFoundError:
        raise CheckpointError(f"hub repository '{repo}' has no {CHECKPOINT_FILE}: it is not a taskadapt model "
                              "(publish one with `taskadapt push CKPT OWNER/REPO`)") from None
    except Exception as err:  # any other network or server error
        text = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise CheckpointError(f"cannot get {CHECKPOINT_FILE} of hub repository '{repo}' ({text}); retry, or "
                              f"{fetch}") from None


__all__ = ["CHECKPOINT_FILE", "HUB_PREFIX", "checkpoint_from_hub", "is_hub_id", "parse_hub_id"]
