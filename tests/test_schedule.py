"""The learning-rate schedules: the trainer's per-step :func:`lr_factor` is, bit for bit, the formula it
had before its cosine decay was shared with pretraining (:func:`warmup_cosine`)."""

from __future__ import annotations

import math

import pytest
import torch

from taskadapt.train.schedule import build_scheduler, lr_factor, warmup_cosine


def _former_lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """lr_factor as it was before warmup_cosine existed (kept here as the reference)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "onecycle":
        return 1.0 - progress
    raise ValueError(f"unknown schedule {kind!r}")


@pytest.mark.parametrize("kind", ["cosine", "onecycle", "constant"])
def test_lr_factor_is_the_former_formula_bit_for_bit(kind: str) -> None:
    for total in (1, 2, 7, 100, 1000, 4001, 20000):
        for warmup in sorted({0, 1, 5, total // 20, total // 3, total, total + 3}):
            steps = set(range(min(total + 5, 300))) | set(range(max(0, total - 50), total + 5))
            steps |= {-1, warmup - 1, warmup, warmup + 1, total // 2}
            for step in sorted(steps):
                assert lr_factor(step, total, warmup, kind) == _former_lr_factor(step, total, warmup, kind)


def test_unknown_kind_is_still_an_error() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(10, 100, 5, "linear")


def test_warmup_cosine_shape() -> None:
    assert warmup_cosine(0.0) == 1.0 and warmup_cosine(1.0) == 0.0 and warmup_cosine(0.5) == pytest.approx(0.5)
    assert warmup_cosine(0.0, 0.2) == 0.0 and warmup_cosine(0.1, 0.2) == 0.5 and warmup_cosine(0.2, 0.2) == 1.0
    assert warmup_cosine(0.6, 0.2, peak=4.0) == pytest.approx(2.0)
    assert warmup_cosine(1.5, 0.2) == 0.0  # past the budget the rate stays at 0


def test_build_scheduler_follows_lr_factor() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = build_scheduler(opt, total=20, warmup=4, kind="cosine")
    for step in range(20):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * lr_factor(step, 20, 4, "cosine"))
        opt.step()
        sched.step()
