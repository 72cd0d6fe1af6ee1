"""SaliencyMetric: beta-maxF, max mIoU and the InvPT double-squash compat mode (metrics doc §4.4-4.5)."""

from __future__ import annotations

import pytest
import torch

from taskadapt.errors import ConfigError
from taskadapt.metrics import SaliencyMetric

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
