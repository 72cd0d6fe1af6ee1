"""The trainer: resume reproduces an uninterrupted run, signal and NaN stops, corrupt checkpoints."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from taskadapt import checkpoint as ckpt
from taskadapt.config import load_config
from taskadapt.errors import CheckpointError, ConfigError
from taskadapt.train import trainer as trainer_module
from taskadapt.train.data import StepBatchSampler, TrainingData
from taskadapt.train.schedule import lr_factor
from taskadapt.train.trainer import TrainingDiverged, TrainingInterrupted, train


def tiny_cfg(tmp_path, name="run", *extra):
    return load_config(None, [
        f"data.root={tmp_path / 'scenes'}", "data.scenes.train=24", "data.scenes.val=4", "data.scenes.test=4",
        "data.scenes.size=32", "data.crop_size=32", "data.batch_size=4",
        "model.backbone_kwargs={patch_size: 8, embed_dim: 32, depth: 4, num_heads: 2}", "model.decoder_channels=16",
        "model.task_embed_dim=8", "train.steps=8", "train.warmup_steps=2", "train.eval_every=8",
        "train.checkpoint_every=4", "train.log_every=1", f"out_dir={tmp_path / name}", *extra])


def _interrupt_after(monkeypatch, n_batches: int, sig=signal.SIGINT):
    original = TrainingData.train_loader

    def loader(self, *args, **kwargs):
        for i, batch in enumerate(original(self, *args, **kwargs)):
            if i + 1 == n_batches:  # the signal lands while step n runs: the run stops after step n
                os.kill(os.getpid(), sig)
            yield batch

    monkeypatch.setattr(TrainingData, "train_loader", loader)


def test_resume_after_sigint_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    full = train(tiny_cfg(tmp_path, "full"), progress=False)
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(TrainingInterrupted, match="SIGINT received at step 3"):
        train(tiny_cfg(tmp_path, "split"), progress=False)
    assert ckpt.read_meta(tmp_path / "split/checkpoints/last.safetensors")["step"] == 3
    monkeypatch.undo()
    resumed = train(tiny_cfg(tmp_path, "split"), resume="last", progress=False)
    assert resumed.step == full.step == 8
    a, b = ckpt.load_weights(full.last), ckpt.load_weights(resumed.last)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert resumed.metrics["semseg"]["mIoU"] == pytest.approx(full.metrics["semseg"]["mIoU"], abs=1e-6)
    rows = (tmp_path / "split/log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(s) for s in range(1, 9)]  # one log row per step


def test_sigterm_writes_a_checkpoint_and_stops(tmp_path, monkeypatch):
    _interrupt_after(monkeypatch, 2, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="SIGTERM") as info:
        train(tiny_cfg(tmp_path), progress=False)
    assert info.value.exit_code == 130
    meta = ckpt.read_meta(tmp_path / "run/checkpoints/last.safetensors")
    assert meta["step"] == 2 and meta["tasks"] == ["semseg", "depth", "normals", "edge"]
    assert signal.getsignal(signal.SIGTERM) is not None  # handlers restored


def test_nan_loss_stops_naming_task_and_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    original = trainer_module.MultiTaskLoss.forward
    calls = {"n": 0}

    def forward(self, preds, batch):
        out = original(self, preds, batch)
        calls["n"] += 1
        if calls["n"] == 6:
            out.per_task["depth"] = torch.tensor(float("nan"))
            out.total = out.total * float("nan")
        return out

    monkeypatch.setattr(trainer_module.MultiTaskLoss, "forward", forward)
    with pytest.raises(TrainingDiverged, match=r"task 'depth' \(nan\) is not finite at step 5; the last good"):
        train(tiny_cfg(tmp_path), progress=False)
    last = tmp_path / "run/checkpoints/last.safetensors"
    assert ckpt.read_meta(last)["step"] == 4  # written at step 4, untouched by the failure
    assert all(torch.isfinite(v).all() for v in ckpt.load_weights(last).values())


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path):
    result = train(tiny_cfg(tmp_path, "run", "train.steps=4"), progress=False)
    last = result.last
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(last.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        ckpt.read_meta(truncated)
    foreign = tmp_path / "backbone.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a taskadapt checkpoint"):
        ckpt.read_meta(foreign)
    ckpt.state_path(last).write_bytes(os.urandom(64))
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        train(tiny_cfg(tmp_path, "run", "train.steps=6"), resume=last, progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_cfg(tmp_path, "run", "train.steps=4"), progress=False)


def test_step_sampler_is_a_function_of_the_step_and_shards_cleanly():
    full = list(StepBatchSampler(10, 4, 6, seed=3))
    resumed = list(StepBatchSampler(10, 4, 6, seed=3, start_step=2))
    assert resumed == full[2:]
    shards = [list(StepBatchSampler(10, 4, 6, seed=3, rank=r, world=2)) for r in range(2)]
    for step in range(6):
        assert sorted(shards[0][step] + shards[1][step]) == sorted(full[step])
    seen = [i for batch in full[:5] for i, _ in batch[:]][:10]
    assert sorted(seen) == list(range(10))  # the first epoch visits every index once


def test_schedules():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(99, 100, 10, "onecycle") == pytest.approx(1 - 89 / 90)
    assert lr_factor(50, 100, 0, "constant") == 1.0
