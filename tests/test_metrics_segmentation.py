"""SegmentationMetric: dataset-level confusion-matrix mIoU (metrics doc §4.1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from taskadapt.metrics import SegmentationMetric


def _one_hot_logits(labels: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, k).permute(0, 3, 1, 2).float() * 5.0


def _numpy_miou(gt: np.ndarray, pred: np.ndarray, k: int) -> float:
    valid = gt != 255
    cm = np.bincount(gt[valid] * k + pred[valid], minlength=k * k).reshape(k, k)
    tp = np.diag(cm)
    return float(np.mean(tp / np.maximum(cm.sum(0) + cm.sum(1) - tp, 1e-8)))


def test_hand_computed_confusion_matrix():
    target = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
    labels = torch.tensor([[[0, 1, 1], [1, 0, 2]]])
    m = SegmentationMetric(num_classes=3)
    m.update(labels, target)
    assert m.confmat.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    r = m.compute()
    # IoU_0 = 1 / (2 + 2 - 1), IoU_1 = 2 / (2 + 3 - 2), IoU_2 = 0 / 1
    assert torch.allclose(r["IoU"], torch.tensor([1 / 3, 2 / 3, 0.0]))
    assert r["mIoU"].item() == pytest.approx(1 / 3)
    assert r["pixel_acc"].item() == pytest.approx(3 / 5)  # the ignored pixel is not counted
    assert r["mean_acc"].item() == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_logits_and_labels_give_the_same_result():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (2, 8, 9), generator=g)
    labels = torch.randint(0, 4, (2, 8, 9), generator=g)
    a, b = SegmentationMetric(4), SegmentationMetric(4)
    a.update(labels, target)
    b.update(_one_hot_logits(labels, 4), target.unsqueeze(1))  # (B, 1, H, W) target accepted too
    assert torch.equal(a.confmat, b.confmat)


def test_absent_class_counts_as_zero_in_the_mean():
    target = torch.tensor([[[0, 1], [1, 0]]])
    m = SegmentationMetric(num_classes=4)
    m.update(target.clone(), target)
    r = m.compute()
    assert r["IoU"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert r["mIoU"].item() == pytest.approx(0.5)  # (1 + 1 + 0 + 0) / 4, as MTL-PyTorch/InvPT
    assert r["mean_acc"].item() == pytest.approx(1.0)  # mean_acc averages over present classes only


def test_dataset_level_differs_from_mean_of_per_batch_miou():
    """The torchmetrics.segmentation.MeanIoU trap: averaging per-batch scores depends on batching."""
    g = torch.Generator().manual_seed(1)
    k = 3
    t1 = torch.randint(0, k, (1, 6, 6), generator=g)  # a small batch that is almost perfect
    p1 = t1.clone()
    p1[0, 0, 0] = (t1[0, 0, 0] + 1) % k
    t2 = torch.randint(0, k, (3, 6, 6), generator=g)  # a bigger batch that is random
    p2 = torch.randint(0, k, (3, 6, 6), generator=g)
    m = SegmentationMetric(k)
    m.update(p1, t1)
    m.update(p2, t2)
    dataset = _numpy_miou(torch.cat([t1, t2]).numpy(), torch.cat([p1, p2]).numpy(), k)
    per_batch = (_numpy_miou(t1.numpy(), p1.numpy(), k) + _numpy_miou(t2.numpy(), p2.numpy(), k)) / 2
    assert m.compute()["mIoU"].item() == pytest.approx(dataset, abs=1e-6)
    assert abs(per_batch - dataset) > 0.05


def test_matches_torchmetrics_multiclass_jaccard():
    g = torch.Generator().manual_seed(2)
    k = 5
    target = torch.randint(0, k, (4, 16, 16), generator=g)
    target[torch.rand(4, 16, 16, generator=g) < 0.2] = 255
    logits = torch.randn(4, k, 16, 16, generator=g)
    ours = SegmentationMetric(k)
    ref = MulticlassJaccardIndex(num_classes=k, ignore_index=255, average=None)
    for i in range(0, 4, 2):  # two updates, to exercise accumulation
        ours.update(logits[i : i + 2], target[i : i + 2])
        ref.update(logits[i : i + 2].argmax(1), target[i : i + 2])
    expected = ref.compute()
    got = ours.compute()
    assert torch.allclose(got["IoU"], expected, atol=1e-6)
    assert got["mIoU"].item() == pytest.approx(expected.mean().item(), abs=1e-6)


def test_out_of_range_labels_raise():
    m = SegmentationMetric(3)
    with pytest.raises(ValueError, match="outside"):
        m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="channels"):
        m.update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
