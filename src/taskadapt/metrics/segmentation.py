"""Dataset-level mIoU for semantic segmentation and human parts.

Definition (MTL-PyTorch / InvPT, docs/metrics-and-datasets.md §4.1): one (K, K) confusion matrix is
accumulated over every labelled pixel (target != 255) of the whole split, then

    IoU_c   = TP_c / max(TP_c + FP_c + FN_c, eps)
    mIoU    = mean of IoU_c over ALL K classes        (a class absent from both GT and predictions
                                                       has IoU 0 and still counts -- as the peers do)
    pixel_acc = trace / total
    mean_acc  = mean over classes present in the GT of TP_c / (TP_c + FN_c)   (our convention; absent
                                                       classes are left out here since 0/0 is undefined)

This is NOT the mean of per-batch (or per-image) mIoU values, which is what
``torchmetrics.segmentation.MeanIoU`` reports; that per-update averaging depends on the batch size.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from taskadapt.data.sample import IGNORE_INDEX

_EPS = 1e-8


def _labels_from_preds(preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K, H, W) scores -> (B, H, W) argmax; (B, H, W) integer labels pass through."""
    if preds.ndim == 4:
        if preds.shape[1] != num_classes:
            raise ValueError(
                f"segmentation preds have {preds.shape[1]} channels but the metric has {num_classes} classes"
            )
        return preds.argmax(dim=1)
    if preds.ndim == 3:
        if preds.is_floating_point():
            raise ValueError("3-D segmentation preds must be integer labels (B, H, W), got a float tensor")
        return preds.long()
    raise ValueError(f"segmentation preds must be (B, K, H, W) or (B, H, W), got shape {tuple(preds.shape)}")


class SegmentationMetric(Metric):
    """Confusion-matrix mIoU, pixel accuracy and mean class accuracy.

    ``update(preds, target)``: preds ``(B, K, H, W)`` logits/probabilities or ``(B, H, W)`` int labels;
    target ``(B, H, W)`` int64 in ``[0, K)`` with ``ignore_index`` for unlabelled pixels (a
    ``(B, 1, H, W)`` target is accepted too).
    ``compute()``: ``{"mIoU", "pixel_acc", "mean_acc"}`` as 0-d tensors in [0, 1] and ``"IoU"`` (K,).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    primary: str = "mIoU"
    #: what a summary table shows for the task, primary first
    shown: tuple[str, ...] = ("mIoU",)
    directions: dict[str, bool] = {"mIoU": True, "pixel_acc": True, "mean_acc": True}

    confmat: torch.Tensor

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        # rows = ground truth class, columns = predicted class
        self.add_state(
            "confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if target.ndim == 4 and target.shape[1] == 1:
            target = target[:, 0]
        if target.ndim != 3:
            raise ValueError(f"segmentation target must be (B, H, W), got shape {tuple(target.shape)}")
        labels = _labels_from_preds(preds, self.num_classes)
        if labels.shape != target.shape:
            raise ValueError(
                f"segmentation preds {tuple(labels.shape)} and target {tuple(target.shape)} differ in size"
            )
        target = target.long()
        valid = target != self.ignore_index
        gt = target[valid]
        pr = labels[valid]
        k = self.num_classes
        if gt.numel() and (gt.min() < 0 or gt.max() >= k):
            raise ValueError(
                f"segmentation target has labels outside [0, {k}) other than ignore {self.ignore_index}: "
                f"the reader must map them to {self.ignore_index}"
            )
        if pr.numel() and (pr.min() < 0 or pr.max() >= k):
            raise ValueError(f"segmentation predictions have labels outside [0, {k})")
        self.confmat += torch.bincount(gt * k + pr, minlength=k * k).reshape(k, k)

    def compute(self) -> dict[str, torch.Tensor]:
        cm = self.confmat.double()
        tp = cm.diag()
        gt_count = cm.sum(dim=1)
        pred_count = cm.sum(dim=0)
        iou = tp / (gt_count + pred_count - tp).clamp_min(_EPS)
        total = cm.sum()
        present = gt_count > 0
        class_acc = tp[present] / gt_count[present]
        return {
            "mIoU": iou.mean().float(),
            "pixel_acc": (tp.sum() / total.clamp_min(1.0)).float(),
            "mean_acc": (class_acc.mean() if present.any() else cm.new_zeros(())).float(),
            "IoU": iou.float(),
        }
