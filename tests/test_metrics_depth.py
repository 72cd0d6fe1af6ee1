"""DepthMetric: pixel-pooled depth errors (metrics doc §4.2)."""

from __future__ import annotations

import math

import pytest
import torch

from taskadapt.metrics import DepthMetric

NAN = float("nan")


def test_hand_computed_values():
    m = DepthMetric()
    m.update(torch.tensor([[[[1.0, 2.2]]]]), torch.tensor([[[[1.0, 4.0]]]]))
    r = m.compute()
    assert r["rmse"].item() == pytest.approx(math.sqrt(1.8**2 / 2), rel=1e-6)
    assert r["abs_rel"].item() == pytest.approx((0 + 1.8 / 4) / 2, rel=1e-6)
    assert r["sq_rel"].item() == pytest.approx((0 + 1.8**2 / 4) / 2, rel=1e-6)
    assert r["log_rmse"].item() == pytest.approx(math.sqrt(math.log(4 / 2.2) ** 2 / 2), rel=1e-6)
    # ratio 4 / 2.2 = 1.82: above 1.25 and 1.5625, below 1.953
    assert (r["delta1"].item(), r["delta2"].item(), r["delta3"].item()) == (0.5, 0.5, 1.0)


def test_invalid_pixels_are_excluded():
    m = DepthMetric()
    pred = torch.tensor([[[1.0, 50.0, 50.0, 3.0]]])  # (B, H, W) layout
    target = torch.tensor([[[1.0, NAN, 0.0, 2.0]]])  # NaN and 0 are invalid
    m.update(pred, target)
    assert int(m.count) == 2
    assert m.compute()["rmse"].item() == pytest.approx(math.sqrt(1 / 2))


def test_rmse_is_pixel_pooled_not_per_image_mean():
    a_pred = torch.tensor([[[4.0, 0.0], [0.0, 0.0]]])
    a_gt = torch.tensor([[[1.0, NAN], [NAN, NAN]]])  # 1 valid pixel, error 3
    b_pred = torch.tensor([[[2.0, 2.0], [2.0, 0.0]]])
    b_gt = torch.tensor([[[1.0, 1.0], [1.0, NAN]]])  # 3 valid pixels, error 1
    m = DepthMetric()
    m.update(a_pred, a_gt)
    m.update(b_pred, b_gt)
    pooled = math.sqrt((9 + 3) / 4)
    per_image = (3.0 + 1.0) / 2
    assert m.compute()["rmse"].item() == pytest.approx(pooled)
    assert abs(pooled - per_image) > 0.2


def test_predictions_are_clamped_to_min_depth():
    m = DepthMetric(min_depth=1e-3)
    m.update(torch.tensor([[[-1.0]]]), torch.tensor([[[1.0]]]))
    r = m.compute()
    assert r["abs_rel"].item() == pytest.approx(1 - 1e-3)
    assert r["log_rmse"].item() == pytest.approx(abs(math.log(1e-3)), rel=1e-6)


def test_batching_does_not_change_the_result():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(6, 1, 5, 7, generator=g) * 5
    target = torch.rand(6, 1, 5, 7, generator=g) * 5
    target[target < 0.5] = NAN
    whole, parts = DepthMetric(), DepthMetric()
    whole.update(pred, target)
    for i in range(6):
        parts.update(pred[i : i + 1], target[i : i + 1])
    for key, value in whole.compute().items():
        assert value.item() == pytest.approx(parts.compute()[key].item(), rel=1e-6), key


def test_no_valid_pixel_gives_nan_and_bad_shapes_raise():
    m = DepthMetric()
    m.update(torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), NAN))
    assert math.isnan(m.compute()["rmse"].item())
    with pytest.raises(ValueError, match="differ"):
        m.update(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3))
