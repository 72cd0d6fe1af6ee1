"""Multi-process training and evaluation over gloo (2 CPU processes), against one process.

Each worker sets the environment ``torchrun`` would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*), so
the code path is exactly the one ``torchrun --nproc-per-node 2 -m taskadapt train ...`` takes.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_trainer import tiny_cfg

from taskadapt import checkpoint as ckpt
from taskadapt.evaluation import evaluate_checkpoint
from taskadapt.train.data import TrainingData
from taskadapt.train.trainer import TrainingInterrupted, train

#: DDP averages the ranks' losses, each a mean over its own valid pixels, where one process takes the
#: mean over all valid pixels of the global batch. The two are equal when every image has the same number
#: of valid pixels, so these runs crop inside the image (scale >= 1: no padded, ignored pixels); what is
#: left is float summation order (docs/distributed.md states the general case).
EXACT = ["data.augment.scale_min=1.0"]
WEIGHT_TOL = 1e-4
LOSS_RTOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)


def _train_worker(rank: int, world: int, port: int, tmp: str, name: str, extra: list[str], resume: str | None,
                  interrupt_at: int) -> None:
    _env(rank, world, port)
    if interrupt_at and rank == 0:  # only rank 0 gets the signal: the other rank must stop with it
        original = TrainingData.train_loader

        def loader(self, *args, **kwargs):
            for i, batch in enumerate(original(self, *args, **kwargs)):
                if i + 1 == interrupt_at:
                    os.kill(os.getpid(), signal.SIGINT)
                yield batch

        TrainingData.train_loader = loader
    try:
        train(tiny_cfg(Path(tmp), name, *extra), resume=resume, progress=False)
    except TrainingInterrupted:
        (Path(tmp) / name / f"interrupted-rank{rank}").write_text("yes")


def _spawn_train(tmp: Path, name: str, extra: list[str] = (), resume: str | None = None, interrupt_at: int = 0):
    mp.spawn(_train_worker, args=(2, _free_port(), str(tmp), name, list(extra), resume, interrupt_at), nprocs=2,
             join=True)


def _losses(run: Path) -> list[float]:
    with open(run / "log.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def _assert_weights_close(a_path: Path, b_path: Path, tol: float) -> float:
    a, b = ckpt.load_weights(a_path), ckpt.load_weights(b_path)
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst <= tol, worst
    return worst


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    single = train(tiny_cfg(tmp, "single", *EXACT), progress=False)
    _spawn_train(tmp, "ddp", EXACT)
    return tmp, single


def test_two_processes_match_one_process_with_the_same_global_batch(runs):
    tmp, single = runs
    one, two = _losses(tmp / "single"), _losses(tmp / "ddp")
    assert len(one) == len(two) == 8  # rank 0 logs the loss averaged over the ranks, every step
    for a, b in zip(one, two, strict=True):
        assert b == pytest.approx(a, rel=LOSS_RTOL)
    _assert_weights_close(single.last, tmp / "ddp/checkpoints/last.safetensors", WEIGHT_TOL)
    # the TROA affinities: all-reduced, so the same matrix as one process (up to the same drift)
    a = ckpt.read_meta(single.last)["affinity"]
    b = ckpt.read_meta(tmp / "ddp/checkpoints/last.safetensors")["affinity"]
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-4, rtol=0)


def test_only_rank_zero_writes(runs):
    tmp, _ = runs
    files = sorted(p.name for p in (tmp / "ddp" / "checkpoints").iterdir())
    assert files == ["best.safetensors", "best.state.pt", "last.safetensors", "last.state.pt"]
    assert not list((tmp / "ddp" / "checkpoints").glob("*.tmp*"))


def test_a_signal_on_one_rank_stops_both_and_resume_reaches_the_uninterrupted_run(runs):
    tmp, _ = runs
    _spawn_train(tmp, "ddp-split", EXACT, interrupt_at=3)
    assert (tmp / "ddp-split" / "interrupted-rank0").exists() and (tmp / "ddp-split" / "interrupted-rank1").exists()
    assert ckpt.read_meta(tmp / "ddp-split/checkpoints/last.safetensors")["step"] == 3
    _spawn_train(tmp, "ddp-split", EXACT, resume="last")
    _assert_weights_close(tmp / "ddp/checkpoints/last.safetensors", tmp / "ddp-split/checkpoints/last.safetensors",
                          1e-6)


def _eval_worker(rank: int, world: int, port: int, checkpoint: str, out: str) -> None:
    _env(rank, world, port)
    evaluate_checkpoint(checkpoint, out=out, progress=False)


def test_distributed_evaluation_equals_one_process(runs, tmp_path):
    tmp, single = runs
    one = evaluate_checkpoint(single.last, out=str(tmp_path / "one"), progress=False)
    assert one["images"] == 4  # an even split would hide a duplicated or lost image: see the next test
    mp.spawn(_eval_worker, args=(2, _free_port(), str(single.last), str(tmp_path / "two")), nprocs=2, join=True)
    import json

    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["images"] == one["images"]
    for task, values in one["metrics"].items():
        for name, value in values.items():
            assert two["metrics"][task][name] == pytest.approx(value, rel=1e-6, abs=1e-9), (task, name)


def test_eval_shards_cover_every_image_once():
    from taskadapt.evaluation import eval_loader

    data = [{"image": torch.full((3, 8, 8), i / 10)} for i in range(7)]  # odd count: no even split
    seen = []
    for rank in range(3):
        for batch in eval_loader(data, 8, batch_size=2, rank=rank, world=3):
            seen += [round(float(x[0, 0, 0]) * 10) for x in batch["image"]]
    assert sorted(seen) == list(range(7))
