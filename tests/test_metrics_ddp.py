"""DDP exactness without processes: states of two shards summed == one metric on all data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torchmetrics.utilities.data import dim_zero_sum

from taskadapt.metrics import (
    DepthMetric,
    EdgeMetric,
    NormalsMetric,
    SaliencyMetric,
    SegmentationMetric,
)


def _data(name: str, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    b, h, w = 4, 24, 24
    if name == "semseg":
        target = torch.randint(0, 5, (b, h, w), generator=g)
        target[torch.rand(b, h, w, generator=g) < 0.1] = 255
        return torch.randn(b, 5, h, w, generator=g), target
    if name == "depth":
        target = torch.rand(b, 1, h, w, generator=g) * 10
        target[target < 1] = float("nan")
        return torch.rand(b, 1, h, w, generator=g) * 10, target
    if name == "normals":
        target = torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1)
        target[:, :, :3] = float("nan")
        return torch.randn(b, 3, h, w, generator=g), target
    if name == "saliency":
        return torch.rand(b, 1, h, w, generator=g), (torch.rand(b, 1, h, w, generator=g) > 0.7).float()
    # edges: 1-px boundaries of random blobs, predictions = blurred boundaries
    rng = np.random.default_rng(int(torch.randint(0, 1000, (1,), generator=g)))
    blobs = ndimage.gaussian_filter(rng.random((b, h, w)), (0, 2, 2)) > 0.5
    gt = blobs ^ ndimage.binary_erosion(blobs, np.ones((1, 3, 3)))
    pred = np.clip(ndimage.gaussian_filter(gt.astype(float), (0, 1, 1)) * 2.5, 0, 1)
    return torch.from_numpy(pred)[:, None].float(), torch.from_numpy(gt)[:, None].float()


FACTORIES = {
    "semseg": lambda: SegmentationMetric(5),
    "depth": DepthMetric,
    "normals": NormalsMetric,
    "saliency": SaliencyMetric,
    "edge": lambda: EdgeMetric(tolerance=0.05, num_thresholds=9),
}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), atol=1e-6, equal_nan=True), key


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_sharded_states_sum_to_the_full_state(name):
    preds, target = _data(name, torch.Generator().manual_seed(0))
    full, shard0, shard1 = (FACTORIES[name]() for _ in range(3))
    full.update(preds, target)
    shard0.update(preds[:1], target[:1])  # uneven shards, as with a DistributedSampler tail
    shard1.update(preds[1:], target[1:])
    # what DDP's dist_reduce_fx="sum" does: add every state tensor elementwise
    summed = {k: shard0.metric_state[k] + shard1.metric_state[k] for k in full.metric_state}
    for key, value in full.metric_state.items():
        assert torch.allclose(summed[key].double(), value.double()), key
        assert summed[key].shape == value.shape  # fixed-size states, no per-pixel "cat"
    shard0.merge_state(shard1)
    _assert_same(shard0.compute(), full.compute())


def test_all_states_are_sum_reduced():
    for factory in FACTORIES.values():
        metric = factory()
        assert set(metric._reductions) == set(metric.metric_state)
        assert all(fn is dim_zero_sum for fn in metric._reductions.values())
