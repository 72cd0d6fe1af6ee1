"""The sample dict that flows from readers through transforms to models, losses and metrics.

This module is the one place that defines label conventions; every reader converts its on-disk
encoding to these, and every loss/metric relies on them.

A sample is a ``dict`` with (all tensors ``torch.float32`` unless noted; H, W the image size)::

    image    (3, H, W)  RGB in [0, 1], not mean/std normalised (models normalise themselves)
    semseg   (H, W)     int64 class index in [0, K); IGNORE_INDEX (255) = unlabelled/void
    parts    (H, W)     int64 human-part index in [0, 7); 255 = ignore (whole image when no person)
    depth    (1, H, W)  metres, > 0; NaN = invalid/missing
    normals  (3, H, W)  unit vectors in the camera frame (x right, y up, z towards the camera);
                        NaN = invalid (all three channels NaN together)
    edge     (1, H, W)  {0, 1} boundary map; NaN = ignore (rare: most datasets label every pixel)
    saliency (1, H, W)  {0, 1} salient-object mask; NaN = ignore
    meta     dict       {"id": str, "dataset": str, "split": str, "size": (H0, W0) original size,
                         and optional "domain": str}

A task whose label the dataset does not provide is simply absent from the dict.

Rule: integer label maps use ``IGNORE_INDEX``; float label maps use NaN. Readers map every
dataset-specific "invalid" encoding (0 depth, all-zero normals, label 0 = void, label -1, ...) to
these two values, so downstream code never needs to know where a sample came from.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = 255

#: label keys and whether they are integer (class) maps or float maps
INTEGER_LABELS = ("semseg", "parts")
FLOAT_LABELS = ("depth", "normals", "edge", "saliency")
LABEL_KEYS = INTEGER_LABELS + FLOAT_LABELS

#: channels of each float label (integer labels have no channel dimension)
LABEL_CHANNELS = {"depth": 1, "normals": 3, "edge": 1, "saliency": 1}


def valid_mask(key: str, label: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the labelled pixels of ``label``.

    Integer labels (..., H, W) -> (..., H, W); float labels (..., C, H, W) -> (..., H, W)
    (a pixel is valid when none of its channels is NaN).
    """
    if key in INTEGER_LABELS:
        return label != IGNORE_INDEX
    if key in FLOAT_LABELS:
        return ~torch.isnan(label).any(dim=-3)
    raise KeyError(f"not a label key: {key!r} (known: {', '.join(LABEL_KEYS)})")
