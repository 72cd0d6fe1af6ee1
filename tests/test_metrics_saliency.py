"""SaliencyMetric: beta-maxF, max mIoU and the InvPT double-squash compat mode (metrics doc §4.4-4.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taskadapt.errors import ConfigError
from taskadapt.metrics import SaliencyMetric
from taskadapt.metrics.saliency import F_THRESHOLDS, IOU_THRESHOLDS

NAN = float("nan")


def _map(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1)


def test_hand_computed_maxf_and_max_miou():
    pred = _map([0.92, 0.63, 0.32, 0.12])
    target = _map([1, 0, 1, 0])
    m = SaliencyMetric()
    m.update(pred, target)
    r = m.compute()
    # t in 0.65..0.90: 1 predicted, 1 correct: P = 1, R = 0.5, F = 1.3 * 0.5 / (0.3 + 0.5)
    assert r["maxF"].item() == pytest.approx(1.3 * 0.5 / 0.8)
    assert r["maxF_threshold"].item() == pytest.approx(0.65)
    # t in 0.20..0.30 (strict >): {0.92, 0.63, 0.32} vs {0.92, 0.32}: IoU 2/3
    assert r["max_mIoU"].item() == pytest.approx(2 / 3)


def test_invpt_double_squash_lowers_the_score():
    pred = _map([0.95, 0.90, 0.88, 0.05])
    target = _map([1, 0, 0, 0])
    correct, quirk = SaliencyMetric(), SaliencyMetric(compat="invpt")
    correct.update(pred, target)
    quirk.update(pred, target)
    assert correct.compute()["maxF"].item() == pytest.approx(1.0)  # threshold 0.95 isolates the positive
    # sigmoid maps 0.95, 0.90, 0.88 to 0.721, 0.711, 0.707: no threshold separates them
    assert quirk.compute()["maxF"].item() == pytest.approx(1.3 * (1 / 3) / (0.3 / 3 + 1), abs=1e-6)
    assert quirk.compute()["max_mIoU"].item() == correct.compute()["max_mIoU"].item()


def test_ignored_pixels_and_dataset_level_counts():
    pred = _map([0.9, 0.9, 0.1])
    target = _map([1, NAN, 0])  # the NaN pixel would be a false positive if counted
    m = SaliencyMetric()
    m.update(pred, target)
    assert m.compute()["maxF"].item() == pytest.approx(1.0)
    assert int(m.actual_pos) == 1

    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, 1, 6, 6, generator=g)
    t = (torch.rand(4, 1, 6, 6, generator=g) > 0.6).float()
    whole, split = SaliencyMetric(), SaliencyMetric()
    whole.update(p, t)
    split.update(p[:1], t[:1])
    split.update(p[1:], t[1:])
    for key in ("maxF", "max_mIoU"):
        assert whole.compute()[key].item() == pytest.approx(split.compute()[key].item(), abs=1e-7)


def test_empty_gt_and_empty_prediction_count_as_iou_one():
    m = SaliencyMetric()
    m.update(_map([0.1, 0.05]), _map([0, 0]))
    assert m.compute()["max_mIoU"].item() == pytest.approx(1.0)


def test_unknown_compat_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="invpt"):
        SaliencyMetric(compat="atrc")


# --- thresholds: exact values, and predictions exactly at a threshold ------------------------------


def test_thresholds_are_the_references_exact_values():
    # mIoU: exactly numpy.linspace(0.2, 0.9, 15) of MTL-PyTorch (not 0.2 + 0.05 k: 7 of 15 differ by an ulp)
    ref = np.linspace(0.2, 0.9, 15)
    assert len(IOU_THRESHOLDS) == 15
    assert all(a == b for a, b in zip(IOU_THRESHOLDS, ref.tolist(), strict=True))
    # beta-F: the decimal values 0.05 ... 0.95 (InvPT/ATRC arange(0.05, 1, 0.05))
    decimals = tuple(float(f"{0.05 * k:.2f}") for k in range(1, 20))
    assert decimals == F_THRESHOLDS
    m = SaliencyMetric()
    assert m.iou_thresholds.tolist() == ref.tolist() and m.f_thresholds.tolist() == list(F_THRESHOLDS)


def test_float32_predictions_exactly_at_f_thresholds_count_as_in_invpt():
    """One pixel exactly at each threshold value, float32 like the model's output. InvPT/ATRC's meter
    compares ``preds.float() >= thresh`` in float32, so at threshold j the pixels j..18 count. Compared
    in float64 with the decimal instead, float32(0.35) = 0.34999999 would miss t = 0.35 (also 0.45,
    0.65, 0.70, 0.90, 0.95)."""
    values = torch.tensor(F_THRESHOLDS, dtype=torch.float32)
    m = SaliencyMetric()
    m.update(values.reshape(1, 1, 1, -1), torch.ones(1, 1, 1, values.numel()))
    assert m.pred_pos.tolist() == list(range(19, 0, -1))
    assert m.tp.tolist() == list(range(19, 0, -1))
    # the reference's own thresholds agree (they hold 0.59999996 at 0.60, below float32(0.6) too)
    ref = torch.arange(0.05, 1, 0.05)
    assert (values.unsqueeze(0) >= ref.unsqueeze(1)).sum(dim=1).tolist() == m.pred_pos.tolist()


def test_float32_predictions_exactly_at_iou_thresholds_count_as_in_mtl_pytorch():
    """MTL-PyTorch's meter compares ``pred.float() > thres`` with the float64 linspace value rounded to
    float32: a pixel at exactly float32(t) is not above t. So at threshold j the pixels j+1..14 are
    predicted and, the GT being all ones, the Jaccard index is (14 - j) / 15. Compared in float64,
    float32(0.55) = 0.55000001 > 0.55 would count (also at 0.2, 0.3, 0.4, 0.6, 0.8, 0.85)."""
    values = torch.tensor(IOU_THRESHOLDS, dtype=torch.float32)
    m = SaliencyMetric()
    m.update(values.reshape(1, 1, 1, -1), torch.ones(1, 1, 1, values.numel()))
    assert m.jaccard_sum.tolist() == [(14 - j) / 15 for j in range(15)]
    # the reference's comparison: float32 tensor > float64 numpy scalar (torch rounds the scalar)
    ref = [int((values > thres).sum()) for thres in np.linspace(0.2, 0.9, 15)]
    assert ref == list(range(14, -1, -1))


def test_float64_predictions_compare_with_the_float64_values():
    # in float64 a pixel at exactly the linspace / decimal value sits on the threshold itself
    iou = torch.tensor(np.linspace(0.2, 0.9, 15), dtype=torch.float64)
    f = torch.tensor([float(f"{0.05 * k:.2f}") for k in range(1, 20)], dtype=torch.float64)
    m = SaliencyMetric()
    m.update(iou.reshape(1, 1, 1, -1), torch.ones(1, 1, 1, 15, dtype=torch.float64))
    assert m.jaccard_sum.tolist() == [(14 - j) / 15 for j in range(15)]
    m = SaliencyMetric()
    m.update(f.reshape(1, 1, 1, -1), torch.ones(1, 1, 1, 19, dtype=torch.float64))
    assert m.pred_pos.tolist() == list(range(19, 0, -1))


def test_half_precision_predictions_compare_as_their_float32_values():
    # the references call preds.float(): float16 input is compared as float32, not with float16 thresholds
    g = torch.Generator().manual_seed(1)
    p = torch.rand(2, 1, 8, 8, generator=g).half()
    p.view(-1)[:19] = torch.tensor(F_THRESHOLDS).half()
    t = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    a, b = SaliencyMetric(), SaliencyMetric()
    a.update(p, t)
    b.update(p.float(), t)
    assert all(torch.equal(a.metric_state[k], b.metric_state[k]) for k in a.metric_state)
