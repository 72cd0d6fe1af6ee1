"""TROA: gradients from the one ordinary backward, the affinity measures, the EMA, DDP and mixing."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_adapters import TASKS, perturbed_tiny_model, record_streams, tiny_model

from taskadapt.losses import MultiTaskLoss
from taskadapt.models.troa import TaskAffinity, pairwise_affinity


def _batch(B=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(B, 3, size, size, generator=g),
        "semseg": torch.randint(0, 5, (B, size, size), generator=g),
        "depth": torch.rand(B, 1, size, size, generator=g) + 1,
        "normals": torch.nn.functional.normalize(torch.randn(B, 3, size, size, generator=g), dim=1),
        "edge": (torch.rand(B, 1, size, size, generator=g) > 0.9).float(),
    }


def test_captured_gradients_equal_separate_autograd_grad_per_task():
    model = perturbed_tiny_model()
    batch = _batch()
    loss_fn = MultiTaskLoss(TASKS)
    captured = record_streams(model)
    out = model(batch["image"])
    losses = loss_fn(out, batch)
    z_exp = captured["z_exp"]
    per_task = []
    for task in TASKS:  # the expensive way: one autograd.grad per task (what TROA avoids)
        loss_t = loss_fn.specs[task].loss(out[task], batch[loss_fn.specs[task].label_key])
        (g,) = torch.autograd.grad(loss_t, z_exp, retain_graph=True)
        per_task.append(g.sum(0))  # = dL_t/dz: other streams contribute exactly zero
    losses.total.backward()  # the one ordinary backward
    got = model.affinity._captured / losses.weights.view(-1, 1, 1)
    for t in range(len(TASKS)):
        torch.testing.assert_close(got[t], per_task[t].reshape(2, -1), rtol=1e-4, atol=1e-7)
    assert model.update_affinity(losses.weights, losses.present)
    assert model.affinity.num_updates.item() == 1


def test_measures_on_constructed_gradients():
    g = torch.randn(1, 1, 10)
    orth = torch.zeros(1, 1, 10)
    orth[..., 0] = g[..., 1]
    orth[..., 1] = -g[..., 0]
    grads = torch.cat([g, g, -g, orth, 2 * g], dim=0)  # same, opposite, orthogonal, twice as long
    cos, n = pairwise_affinity(grads, "cosine")
    assert torch.equal(n, torch.ones(5, 5))
    assert cos[0, 1] == pytest.approx(1.0)
    assert cos[0, 2] == 0.0  # cosine -1 is clipped to "no affinity"
    assert cos[0, 3] == pytest.approx(0.0, abs=1e-6)
    assert cos[0, 4] == pytest.approx(1.0)
    proj, _ = pairwise_affinity(grads, "projection")
    assert proj[0, 4] == pytest.approx(0.5)  # <g, 2g> / ||2g||^2: a step for task 0 moves task 4 half as much
    assert proj[4, 0] == pytest.approx(1.0)  # 2 clipped to 1: asymmetric
    assert proj[0, 2] == 0.0 and proj[0, 3] == pytest.approx(0.0, abs=1e-6)


def test_tiny_gradients_count_like_large_ones():
    """Real per-sample gradients at z have squared norms ~1e-16: the measures are scale-invariant."""
    grads = torch.randn(3, 4, 50)
    for measure in ("cosine", "projection"):
        big, n_big = pairwise_affinity(grads, measure)
        tiny, n_tiny = pairwise_affinity(grads * 1e-9, measure)
        assert torch.equal(n_big, n_tiny) and n_tiny[0, 1] == 4
        torch.testing.assert_close(tiny, big)


def test_zero_gradient_samples_do_not_count():
    grads = torch.randn(2, 3, 4)
    grads[1, 2] = 0.0
    _, counts = pairwise_affinity(grads, "cosine")
    assert counts[0, 1] == 2 and counts[0, 0] == 3 and counts[1, 1] == 2


def test_ema_converges_and_absent_tasks_are_left_alone():
    aff = TaskAffinity(3, "cosine", momentum=0.5)
    g = torch.randn(1, 4, 6)
    weights = torch.tensor([1.0, 2.0, 3.0])
    for _ in range(30):
        aff._captured = torch.cat([g, 2 * g, torch.randn(1, 4, 6)], 0) * weights.view(3, 1, 1)
        aff.update(weights, present=torch.tensor([True, True, False]))
    A = aff.affinity
    assert A[0, 1] == pytest.approx(1.0, abs=1e-6) and A[1, 0] == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(A[2], torch.tensor([0.0, 0.0, 1.0])) and torch.equal(A[:, 2], torch.tensor([0.0, 0.0, 1.0]))
    assert aff.update(weights) is False  # nothing captured since the last update


def test_conditioning_is_the_column_weighted_mix():
    aff = TaskAffinity(2)
    aff.affinity.copy_(torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    E = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w = aff.mix(E)
    torch.testing.assert_close(w[0], E[0])  # column 0: only task 0
    torch.testing.assert_close(w[1], (0.5 * E[0] + E[1]) / 1.5)  # column 1: A[0,1] E0 + A[1,1] E1
    assert torch.equal(aff.mix(E, enabled=False), E)


def test_affinity_is_saved_in_the_state_dict():
    model = tiny_model()
    assert "affinity.affinity" in model.state_dict()


def _ddp_worker(rank: int, world: int, port: int, grads: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        aff = TaskAffinity(3, "projection", momentum=0.0)
        aff._captured = grads[:, rank * 2:(rank + 1) * 2].clone()
        aff.update(torch.ones(3))
        out[rank] = aff.affinity.clone()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_ranks_agree_with_one_process_on_all_samples():
    grads = torch.randn(3, 4, 5)
    single = TaskAffinity(3, "projection", momentum=0.0)
    single._captured = grads.clone()
    single.update(torch.ones(3))
    manager = mp.get_context("spawn").Manager()
    out = manager.dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), grads, out), nprocs=2, join=True)
    torch.testing.assert_close(out[0], single.affinity)
    torch.testing.assert_close(out[1], single.affinity)


def test_constructed_losses_give_the_expected_affinities():
    """Losses L_t = <a_t, z_t> have gradient a_t: identical, opposite, orthogonal and scaled pairs."""
    B, M = 3, 8
    a = torch.zeros(4, M)
    a[0, 0] = 1.0  # task 0
    a[1, 0] = 1.0  # task 1: identical to task 0
    a[2, 0] = -1.0  # task 2: opposite
    a[3, 1] = 1.0  # task 3: orthogonal
    weights = torch.tensor([1.0, 2.0, 0.5, 1.0])
    for measure in ("cosine", "projection"):
        aff = TaskAffinity(4, measure, momentum=0.0)
        z = torch.randn(B, M, requires_grad=True)
        z_exp = z.unsqueeze(0).expand(4, B, M)
        aff.watch(z_exp)
        total = sum(weights[t] * (z_exp[t] * a[t]).sum() for t in range(4))
        total.backward()
        aff.update(weights)
        A = aff.affinity
        assert A[0, 1] == pytest.approx(1.0) and A[1, 0] == pytest.approx(1.0)
        assert A[0, 2] == 0.0 and A[2, 0] == 0.0
        assert A[0, 3] == 0.0 and A[3, 0] == 0.0
        assert torch.diagonal(A).tolist() == [1.0, 1.0, 1.0, 1.0]
