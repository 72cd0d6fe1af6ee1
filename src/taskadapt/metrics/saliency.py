"""Saliency maxF (beta^2 = 0.3) and max mIoU (docs/metrics-and-datasets.md §4.4-4.5).

``maxF`` -- the "Beta maxF" of ATRC/InvPT/TaskPrompter/MTLoRA, the number papers quote: at each
threshold t in 0.05, 0.10, ..., 0.95 (:data:`F_THRESHOLDS`) a pixel is predicted salient when
``p >= t``; true positives, predicted positives and actual positives are summed over the whole split,
then

    P = TP / PP,  R = TP / AP,  F_beta = (1 + b2) P R / (b2 P + R)   (0 where undefined)

and ``maxF`` is the maximum over thresholds.

``max_mIoU`` -- the ASTMT/MTL-PyTorch convention: per image and threshold t in
``numpy.linspace(0.2, 0.9, 15)`` (:data:`IOU_THRESHOLDS`, exactly those float64 values) the Jaccard
index of ``p > t`` (strict, as there) against the GT, 1 when both are empty; averaged over images;
maximum over thresholds.

Targets are binarised at 0.5; NaN target pixels are ignored by both.

Comparison precision, as the references: both compare float32 probabilities with float32
thresholds. InvPT/ATRC's ``SaliencyMeter`` does ``preds.float() >= thresh`` with ``thresh`` an
element of the float32 tensor ``torch.arange(0.05, 1, 0.05)``; MTL-PyTorch's ``SaliencyMeter`` does
``pred.float() > thres`` with ``thres`` a float64 scalar of ``np.linspace(0.2, 0.9, 15)``, which
torch rounds to the float32 tensor's dtype (so did NumPy 1.x's value-based casting in its offline
``eval_sal``; NumPy >= 2 would compare that one in float64). So a prediction exactly at a
threshold's value lands on the side it lands on there: ``float32(0.35)`` is counted at t = 0.35 by
``>=``, ``float32(0.55)`` is not counted at t = 0.55 by ``>``. Here the comparison runs in the
prediction's own dtype, float16/bfloat16 (and integers) promoted to float32 as the references'
``.float()``: the thresholds are rounded to float32 for float32 predictions and kept as the float64
decimal / ``linspace`` values for float64 predictions. (One reference value differs from the
rounded decimal: current torch's float32 ``arange(0.05, 1, 0.05)`` holds 0.59999996 at t = 0.60,
one float32 ulp below ``float32(0.6)``; we use the decimal, so only a prediction of exactly
0.59999996 is counted differently there.)

``compat="invpt"`` reproduces the InvPT/TaskPrompter double squash for ``maxF`` only: their meter
applies ``sigmoid`` to what are already probabilities, so p in [0, 1] becomes sigmoid(p) in
[0.5, 0.73] and only the 0.55-0.70 thresholds discriminate. It lowers the score and exists only to
compare with published tables (the MLoRE maintainers keep it for that reason); never the default.
The sigmoid is applied in the comparison dtype (float32 for float32 input, as their meter does).
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from taskadapt.errors import ConfigError
from taskadapt.metrics.inputs import bhw_pair

#: thresholds of the beta-F measure: the decimal values 0.05, 0.10, ..., 0.95 as float64 (ATRC/InvPT:
#: ``torch.arange(0.05, 1, 0.05)``, float32; see the module docstring for the one value it rounds apart)
F_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
#: thresholds of the mIoU measure: exactly ``numpy.linspace(0.2, 0.9, 15)`` (ASTMT/MTL-PyTorch), whose
#: float64 values are not all the nearest doubles of 0.20, 0.25, ... (e.g. 0.44999999999999996)
IOU_THRESHOLDS = tuple(float(t) for t in np.linspace(0.2, 0.9, 15))
COMPAT_MODES = (None, "invpt")


class SaliencyMetric(Metric):
    """Dataset-level beta-maxF and image-averaged max mIoU for salient-object maps.

    ``update(preds, target)``: preds ``(B, 1, H, W)`` (or ``(B, H, W)``) probabilities in [0, 1];
    target same shape, {0, 1} (binarised at 0.5), NaN = ignore. Thresholds are compared in the
    predictions' dtype (float32 for float32 and lower-precision input, float64 for float64), as the
    reference meters (InvPT/ATRC for ``maxF``, MTL-PyTorch for ``max_mIoU``; module docstring).
    ``compute()``: ``{"maxF", "maxF_threshold", "max_mIoU"}`` as 0-d tensors, scores in [0, 1].
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    primary: str = "maxF"
    #: what a summary table shows for the task, primary first
    shown: tuple[str, ...] = ("maxF",)
    directions: dict[str, bool] = {"maxF": True, "max_mIoU": True}

    def __init__(self, beta_sq: float = 0.3, compat: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if compat not in COMPAT_MODES:
            raise ConfigError(
                f"unknown saliency compat mode {compat!r}; use one of: None (correct metric), 'invpt'"
            )
        if not beta_sq > 0:
            raise ValueError(f"beta_sq must be > 0, got {beta_sq}")
        self.beta_sq = float(beta_sq)
        self.compat = compat
        self.register_buffer(
            "f_thresholds", torch.tensor(F_THRESHOLDS, dtype=torch.float64), persistent=False
        )
        self.register_buffer(
            "iou_thresholds", torch.tensor(IOU_THRESHOLDS, dtype=torch.float64), persistent=False
        )
        nf, ni = len(F_THRESHOLDS), len(IOU_THRESHOLDS)
        self.add_state("tp", default=torch.zeros(nf, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("pred_pos", default=torch.zeros(nf, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("actual_pos", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("jaccard_sum", default=torch.zeros(ni, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target = bhw_pair(preds, target, "saliency")
        # Compare in the prediction's own dtype, as the references (module docstring): InvPT/ATRC
        # ``preds.float() >= thresh`` with float32 thresholds, MTL-PyTorch ``pred.float() > thres``
        # with the float64 threshold rounded to float32. A float32 prediction exactly at a threshold's
        # value (float32(0.35), float32(0.55)) must not be compared with the float64 decimal.
        dtype = torch.float64 if preds.dtype == torch.float64 else torch.float32
        preds = preds.to(dtype)
        f_thresholds = self.f_thresholds.to(dtype)
        iou_thresholds = self.iou_thresholds.to(dtype)
        valid = ~torch.isnan(target)
        if not torch.isfinite(preds[valid]).all():
            raise ValueError("saliency predictions contain NaN or inf at valid pixels")
        gt = (target > 0.5) & valid
        b = preds.shape[0]

        # beta-F: one pass over all valid pixels of the batch, (T, N) comparisons
        p_valid = preds[valid]
        g_valid = gt[valid]
        p_f = torch.sigmoid(p_valid) if self.compat == "invpt" else p_valid
        above = p_f.unsqueeze(0) >= f_thresholds.unsqueeze(1)
        self.tp += (above & g_valid).sum(dim=1)
        self.pred_pos += above.sum(dim=1)
        self.actual_pos += g_valid.sum()

        # per-image Jaccard: (B, T, H*W)
        p_img = preds.reshape(b, 1, -1)
        v_img = valid.reshape(b, 1, -1)
        g_img = gt.reshape(b, 1, -1)
        mask = (p_img > iou_thresholds.view(1, -1, 1)) & v_img
        inter = (mask & g_img).sum(dim=2)
        union = (mask | g_img).sum(dim=2)
        jac = torch.where(
            union > 0, inter.double() / union.clamp_min(1), torch.ones_like(inter, dtype=torch.float64)
        )
        self.jaccard_sum += jac.sum(dim=0)
        self.num_images += b

    def compute(self) -> dict[str, torch.Tensor]:
        tp = self.tp.double()
        precision = tp / self.pred_pos.double()
        recall = tp / self.actual_pos.double()
        f = (1 + self.beta_sq) * precision * recall / (self.beta_sq * precision + recall)
        f = torch.nan_to_num(f, nan=0.0)
        best = int(torch.argmax(f))
        return {
            "maxF": f[best].float(),
            "maxF_threshold": self.f_thresholds[best].float(),
            "max_mIoU": (self.jaccard_sum / self.num_images.double()).max().float(),
        }
