"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HUB_OFFLINE=1 and an empty hub cache under tmp_path; returns the cache folder."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def put_in_hub_cache(cache: Path, repo: str, state_dict: dict[str, torch.Tensor]) -> Path:
    """Lay ``state_dict`` out as hub repo ``repo``'s ``model.safetensors`` in huggingface_hub's cache layout
    (``models--owner--name/refs/main`` naming a ``snapshots/<commit>`` folder); returns the file."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file(state_dict, str(snapshot / "model.safetensors"))
    return snapshot / "model.safetensors"


def plain_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of an adapter model's backbone with every TSN norm turned back into the plain LayerNorm of
    the same weights: what the adapted blocks compute when every task-specific part is at its init."""
    import copy

    reference = copy.deepcopy(model.backbone)
    for i in model.adapter_steps:
        block = reference.steps()[i].module
        for name in ("norm1", "norm2"):
            tsn = getattr(block, name)
            ln = torch.nn.LayerNorm(tsn.dim, eps=tsn.eps)
            ln.load_state_dict({"weight": tsn.weight, "bias": tsn.bias})
            setattr(block, name, ln)
    return reference


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread while a module's tests run (``pytestmark = pytest.mark.usefixtures(...)``): for
    tests of small tensors, where with ``pytest -n`` the workers' thread pools would fight over the cores
    and spin-wait more than they compute. Set once per module: changing it costs milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
