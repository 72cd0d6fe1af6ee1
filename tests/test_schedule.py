"""The learning-rate schedules: the trainer's per-step :func:`lr_factor` is, bit for bit, the formula it
had before its cosine decay was shared with pretraining (:func:`warmup_cosine`)."""

from __future__ import annotations

import pytest
import torch

from taskadapt.train.schedule import build_scheduler, lr_factor, warmup_cosine

#: lr_factor(step, total, warmup, kind) as the trainer computed it before its cosine decay was shared with
#: pretraining (values printed by the former formula, exact floats): the trainer's schedule must not move
FORMER = {
    (0, 400, 20, "cosine"): 0.05, (19, 400, 20, "cosine"): 1.0, (20, 400, 20, "cosine"): 1.0,
    (137, 400, 20, "cosine"): 0.7837706276813818, (333, 400, 20, "cosine"): 0.07476347657262455,
    (399, 400, 20, "cosine"): 1.7087167912710477e-05, (400, 400, 20, "cosine"): 0.0,
    (7, 1000, 0, "cosine"): 0.9998791022184921, (4000, 4001, 100, "cosine"): 1.6213912684692744e-07,
    (50, 120, 10, "onecycle"): 0.6363636363636364, (5, 120, 10, "onecycle"): 0.6, (99, 120, 10, "constant"): 1.0,
}


@pytest.mark.parametrize(("point", "value"), FORMER.items(), ids=[str(k) for k in FORMER])
def test_lr_factor_is_the_former_formula_bit_for_bit(point, value) -> None:
    assert lr_factor(*point) == value


@pytest.mark.parametrize("kind", ["cosine", "onecycle", "constant"])
def test_lr_factor_shape(kind: str) -> None:
    """Linear warm-up to 1, then the kind's decay from 1 (cosine, onecycle) or 1 throughout (constant)."""
    total, warmup = 1000, 50
    values = [lr_factor(s, total, warmup, kind) for s in range(total + 1)]
    assert values[:warmup] == [(s + 1) / warmup for s in range(warmup)]
    after = values[warmup:]
    assert after[0] == 1.0 and all(a >= b for a, b in zip(after, after[1:], strict=False))
    assert after[-1] == (1.0 if kind == "constant" else 0.0)
    if kind == "cosine":  # 0.5 (1 + cos(pi p)) at p = 1/2
        assert lr_factor(warmup + (total - warmup) // 2, total, warmup, kind) == pytest.approx(0.5, abs=2e-3)


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
