"""NormalsMetric: angular errors, real RMSE, histogram median (metrics doc §4.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from taskadapt.metrics import NormalsMetric

NAN = float("nan")


def _field(vectors: list[list[float]]) -> torch.Tensor:
    """N vectors -> (1, 3, 1, N)."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, 3, 1, -1)


def _in_xz(deg: float) -> list[float]:
    return [math.sin(math.radians(deg)), 0.0, math.cos(math.radians(deg))]


def _compute(pred, target, **kw):
    m = NormalsMetric(**kw)
    m.update(pred, target)
    return {k: v.item() for k, v in m.compute().items()}


def test_orthogonal_identical_and_opposite():
    z = _field([[0, 0, 1]] * 3)
    r = _compute(_field([[1, 0, 0], [0, 1, 0], [0, -1, 0]]), z)
    assert r["mean"] == pytest.approx(90.0, abs=1e-4)
    assert r["median"] == pytest.approx(90.0, abs=0.01)
    assert r["within_30"] == 0.0
    r = _compute(_field([[0, 0, 5.0]] * 3), z)  # not unit length: renormalised inside
    assert r["mean"] == 0.0 and r["rmse"] == 0.0
    assert r["within_11.25"] == 100.0  # percent
    r = _compute(_field([[0, 0, -1]] * 3), z)
    assert r["mean"] == pytest.approx(180.0, abs=1e-4)
    assert r["median"] == pytest.approx(180.0, abs=0.01)


def test_rmse_is_root_mean_square_not_the_mean():
    """MTL-PyTorch/MTLoRA report the mean under the name "rmse"; ours is sqrt(mean(angle^2))."""
    r = _compute(_field([[0, 0, 1], [1, 0, 0]]), _field([[0, 0, 1], [0, 0, 1]]))
    assert r["mean"] == pytest.approx(45.0, abs=1e-4)
    assert r["rmse"] == pytest.approx(math.sqrt((0 + 90**2) / 2), abs=1e-3)
    assert r["rmse"] - r["mean"] > 18
    assert r["within_11.25"] == pytest.approx(50.0)


def test_known_mix_of_angles():
    angles = [10.0, 20.0, 25.0, 40.0]
    r = _compute(_field([_in_xz(a) for a in angles]), _field([[0, 0, 1]] * 4))
    assert r["mean"] == pytest.approx(np.mean(angles), abs=1e-3)
    assert r["rmse"] == pytest.approx(math.sqrt(np.mean(np.square(angles))), abs=1e-3)
    assert (r["within_11.25"], r["within_22.5"], r["within_30"]) == pytest.approx((25.0, 50.0, 75.0))
    assert r["median"] == pytest.approx(22.5, abs=0.01)


def test_nan_and_zero_targets_are_excluded():
    pred = _field([[0, 0, 1], [1, 0, 0], [1, 0, 0]])
    target = _field([[0, 0, 1], [NAN, NAN, NAN], [0, 0, 0]])
    m = NormalsMetric()
    m.update(pred, target)
    assert int(m.count) == 1
    assert m.compute()["mean"].item() == 0.0


@pytest.mark.parametrize("bins_per_degree", [1, 10, 100])
def test_histogram_median_is_within_one_bin_of_numpy(bins_per_degree):
    g = torch.Generator().manual_seed(bins_per_degree)
    pred = torch.randn(2, 3, 9, 11, generator=g)  # odd and even pixel counts across updates
    target = torch.randn(2, 3, 9, 11, generator=g)
    m = NormalsMetric(bins_per_degree=bins_per_degree)
    m.update(pred[:1], target[:1])
    m.update(pred[1:], target[1:])
    p = torch.nn.functional.normalize(pred.double(), dim=1)
    t = torch.nn.functional.normalize(target.double(), dim=1)
    ref = np.degrees(np.arccos(np.clip((p * t).sum(1).numpy(), -1, 1))).ravel()
    assert m.compute()["median"].item() == pytest.approx(np.median(ref), abs=1.0 / bins_per_degree)
    assert m.compute()["mean"].item() == pytest.approx(ref.mean(), abs=1e-4)


def test_nan_predictions_raise():
    with pytest.raises(ValueError, match="NaN"):
        NormalsMetric().update(_field([[NAN, 0, 1]]), _field([[0, 0, 1]]))
