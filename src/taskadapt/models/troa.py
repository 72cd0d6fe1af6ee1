"""TROA: task-affinity from gradients at the shared representation (method.md §4).

[paper] The affinity matrix ``A`` (T, T) compares the tasks' gradients with respect to the "encoded
batch embeddings" ``z`` (the frozen prefix's output), and each task's conditioning vector is the
affinity-weighted mix of the learnable task embeddings ``E`` (T, D):

    w_t = sum_j A[j, t] E[j] / sum_j A[j, t]                                  (column t of A)

[ours] How the gradients are obtained and measured:

* ``z`` (B, ...) is expanded to T task streams; task t's loss depends on ``z`` only through stream t
  (nothing mixes streams), so the gradient of the weighted total loss with respect to stream t is
  ``lambda_t * dL_t/dz``. :class:`TaskAffinity` captures it with a tensor hook during the ordinary
  backward pass -- no extra backward, no per-task loop, nothing through the frozen prefix.
* Per sample b: ``cosine`` c_ij = cos(g_i, g_j), or ``projection`` p_ij = <g_i, g_j> / ||g_j||^2
  ("how much a step for task i moves task j's loss"), clipped to [0, 1] (negative transfer counts
  as no affinity, which also keeps the mixing weights positive).
* ``A <- m A + (1 - m) mean_b(measure)``, m = 0.9, starting from the identity; only tasks with labels
  in the batch (and samples where both gradients are non-zero) take part. Under DDP the per-pair
  sums and counts are all-reduced before the EMA, so every rank holds the same ``A``.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.distributed as dist
from torch import nn

Measure = Literal["cosine", "projection"]
#: model.troa.measure values
TROA_MEASURES: tuple[str, ...] = get_args(Measure)


def pairwise_affinity(grads: torch.Tensor, measure: Measure) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair sums of the measure over samples, and how many samples counted.

    grads: (T, B, M) per-task, per-sample gradients. Returns ``sums`` (T, T) and ``counts`` (T, T):
    a sample counts for pair (i, j) when both gradients are non-zero. Both measures are invariant to
    the gradients' scale, which is tiny in practice (losses are means over batch and pixels: squared
    norms ~1e-16), so "zero" means exactly zero (a sample without labels), never "small".
    """
    g = grads.double()  # float64: squared norms of tiny gradients stay far from underflow
    dots = torch.einsum("ibm,jbm->bij", g, g)  # (B, T, T)
    sq = torch.diagonal(dots, dim1=1, dim2=2)  # (B, T) squared norms
    eps = torch.finfo(dots.dtype).tiny
    nonzero = sq > 0
    valid = nonzero.unsqueeze(2) & nonzero.unsqueeze(1)  # (B, T, T)
    if measure == "cosine":
        norms = sq.clamp_min(eps).sqrt()
        value = dots / (norms.unsqueeze(2) * norms.unsqueeze(1))
    elif measure == "projection":
        value = dots / sq.clamp_min(eps).unsqueeze(1)  # divide by ||g_j||^2 (column j)
    else:
        raise ValueError(f"unknown TROA measure {measure!r}; use one of {', '.join(TROA_MEASURES)}")
    value = value.clamp(0.0, 1.0) * valid
    return value.sum(0).float(), valid.sum(0).float()


class TaskAffinity(nn.Module):
    """The EMA affinity buffer ``A`` (saved with the model) and the gradient capture.

    Use: the model calls :meth:`watch` on the expanded stream tensor during a training forward; after
    ``loss.backward()`` the trainer calls :meth:`update` with the loss weights and which tasks had
    labels. ``A[i, j]`` is the effect of task i on task j.
    """

    def __init__(self, num_tasks: int, measure: Measure = "projection", momentum: float = 0.9):
        super().__init__()
        if measure not in TROA_MEASURES:
            raise ValueError(f"unknown TROA measure {measure!r}; use one of {', '.join(TROA_MEASURES)}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"TROA momentum must be in [0, 1), got {momentum}")
        self.measure: Measure = measure
        self.momentum = momentum
        self.register_buffer("affinity", torch.eye(num_tasks))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._captured: torch.Tensor | None = None
        #: (T, T) bool, pairs that never update (among tasks frozen by ``freeze_tasks``); None: all may
        self.fixed: torch.Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return self.affinity.shape[0]

    def watch(self, streams: torch.Tensor) -> None:
        """Register the gradient hook on the expanded streams (T, B, ...)."""
        self._captured = None

        def hook(grad: torch.Tensor) -> None:
            self._captured = grad.detach().reshape(grad.shape[0], grad.shape[1], -1)

        streams.register_hook(hook)

    @torch.no_grad()
    def update(self, loss_weights: torch.Tensor, present: torch.Tensor | None = None,
               samples: int | None = None) -> bool:
        """EMA update from the gradients captured in the last backward.

        loss_weights: (T,) the lambda_t used in the total loss; present: (T,) bool, tasks with labels
        in the batch (default: those with a non-zero weight); samples: only the first ``samples`` of the
        batch count (domain adaptation appends unlabelled target images whose gradients come from the
        adversarial loss, not from the tasks). Returns False when nothing was captured.
        """
        grads = self._captured
        self._captured = None
        if grads is None:
            return False
        if samples is not None:
            grads = grads[:, :samples]
        T = self.num_tasks
        weights = loss_weights.to(grads.device, torch.float32)
        if present is None:
            present = weights != 0
        present = present.to(grads.device) & (weights != 0)
        safe = torch.where(present, weights, torch.ones_like(weights))
        grads = grads / safe.view(T, 1, 1)  # recover dL_t/dz from lambda_t dL_t/dz
        sums, counts = pairwise_affinity(grads, self.measure)
        pair_present = present.view(T, 1) & present.view(1, T)
        sums, counts = sums * pair_present, counts * pair_present
        if dist.is_available() and dist.is_initialized():
            packed = torch.stack([sums, counts])
            dist.all_reduce(packed)
            sums, counts = packed.unbind(0)
        seen = counts > 0
        if self.fixed is not None:
            seen = seen & ~self.fixed.to(seen.device)
        mean = sums / counts.clamp_min(1)
        m = self.momentum
        self.affinity.copy_(torch.where(seen, m * self.affinity + (1 - m) * mean, self.affinity))
        self.num_updates += 1
        return True

    def mix(self, embeddings: torch.Tensor, enabled: bool = True) -> torch.Tensor:
        """Conditioning vectors w (K, D) from task embeddings E (K, D): column-normalised A^T E over the
        first K tasks (K < T: tasks added later are left out of the mix, ``model.task_groups``).

        With ``enabled=False`` (TROA ablation) each task uses its own embedding.
        """
        if not enabled:
            return embeddings
        k = embeddings.shape[0]
        # the leading block copied to its own (K, K) tensor: the same layout, so the same arithmetic, as a
        # model of K tasks
        A = (self.affinity if k == self.num_tasks else self.affinity[:k, :k].contiguous()).to(embeddings.dtype)
        return (A.t() @ embeddings) / A.sum(0).clamp_min(1e-6).unsqueeze(1)
