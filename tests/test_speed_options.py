"""Speed options change cost, never results: activation checkpointing, channels-last, in the trainer too."""

from __future__ import annotations

import torch
from test_adapters import TINY, tiny_model
from test_trainer import tiny_cfg

from taskadapt import checkpoint as ckpt
from taskadapt.losses import MultiTaskLoss
from taskadapt.train.trainer import train


def _batch(size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"image": torch.rand(2, 3, size, size, generator=g),
            "semseg": torch.randint(0, 5, (2, size, size), generator=g),
            "depth": torch.rand(2, 1, size, size, generator=g) + 0.5,
            "normals": torch.nn.functional.normalize(torch.randn(2, 3, size, size, generator=g), dim=1),
            "edge": (torch.rand(2, 1, size, size, generator=g) > 0.9).float()}


def _grads(model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model.train()
    model.zero_grad(set_to_none=True)
    loss = MultiTaskLoss(model.tasks)(model(batch["image"]), batch).total
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    batch = _batch(TINY["img_size"])
    plain = tiny_model()
    loss_a, grads_a = _grads(plain, batch)
    checkpointed = tiny_model()
    checkpointed.activation_checkpointing = True
    loss_b, grads_b = _grads(checkpointed, batch)
    assert loss_a == loss_b
    assert grads_a.keys() == grads_b.keys() and any(".taa." in k for k in grads_a)  # TAA/TSN are recomputed
    for k in grads_a:
        torch.testing.assert_close(grads_a[k], grads_b[k], rtol=1e-5, atol=1e-7, msg=k)
    assert checkpointed.conditioning.w is None  # the shared conditioning is restored after recomputation


def test_channels_last_gives_the_same_predictions():
    batch = _batch(TINY["img_size"])
    model = tiny_model().eval()
    with torch.no_grad():
        before = model(batch["image"])
        model.channels_last = True
        model.to(memory_format=torch.channels_last)
        after = model(batch["image"])
    for task in before:
        torch.testing.assert_close(before[task], after[task], rtol=1e-4, atol=1e-5)


def test_trainer_speed_options_reach_the_same_weights(tmp_path):
    base = train(tiny_cfg(tmp_path, "base"), progress=False)
    fast = train(tiny_cfg(tmp_path, "fast", "train.activation_checkpointing=true", "train.channels_last=true"),
                 progress=False)
    a, b = ckpt.load_weights(base.last), ckpt.load_weights(fast.last)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-4, msg=key)
