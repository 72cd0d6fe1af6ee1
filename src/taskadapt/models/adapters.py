"""The adapter layer's parts: TSN, TAA and the bottleneck (method.md §3, §5, §6).

Task streams are folded into the batch, stream-major: a state of batch ``S = T * B`` holds task
``t``'s copy of image ``b`` at index ``t * B + b``. Every module here is zero-initialised where the
paper says so, so that at step 0 an adapter layer computes exactly what the pretrained block
computes (tested in ``tests/test_adapters.py``).

Per-task conditioning vectors ``w`` (T, D) reach the modules through a shared
:class:`TaskConditioning` holder that the model fills before running the adapter layers; this keeps
the backbone blocks free of any task logic (they only see ``norm(x)`` calls and an ``attn_bias``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TaskConditioning:
    """Holds the per-task conditioning vectors ``w`` (T, D) of the current forward pass."""

    def __init__(self) -> None:
        self.w: torch.Tensor | None = None
        #: the tasks (rows of per-task parameters) the current streams belong to; None: every task
        self.rows: slice | None = None

    def get(self) -> torch.Tensor:
        if self.w is None:
            raise RuntimeError("task conditioning is not set: adapter layers run inside MultiTaskModel.forward")
        return self.w


def _per_stream(x: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """(T*B, ..., C) -> (T, B*..., C) view for per-task broadcasting."""
    return x.reshape(num_tasks, -1, x.shape[-1])


class TaskScaledNorm(nn.Module):
    """TSN (paper, Eq. for TSN): ``(a - mu) / sigma * gamma' (1 + gamma_t(w_t)) + beta' + beta_t(w_t)``.

    ``gamma'``/``beta'`` start as the pretrained LayerNorm's weight and bias (trainable; the names
    ``weight``/``bias`` are kept so pretrained checkpoints load unchanged); ``gamma_t``/``beta_t`` are
    linear maps of ``w~_t = Linear(w_t)``, the second zero-initialised, so TSN equals the pretrained
    LayerNorm exactly at step 0. [ours] ``w~_t`` has a small width (``hidden``, default 32): the two
    maps are then a low-rank factorisation of ``D -> 2C``, which keeps TSN cheap on wide stages
    (a full ``Linear(343, 2 * 768)`` per norm would cost 0.5 M parameters on Swin's last stage).
    [ours] ``num_tasks`` T > 0 adds a free per-task offset ``(gamma_t, beta_t) += delta_t`` (T, 2C),
    zero-initialised: Adam moves each task's row at the full learning rate, where the embedding path
    grows only as a product of small factors (docs/method.md, "TSN").

    Input (T*B, ..., C) -> same shape.
    """

    def __init__(self, normalized_dim: int, cond_dim: int, conditioning: TaskConditioning, eps: float = 1e-6,
                 weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, hidden: int = 32,
                 num_tasks: int = 0):
        super().__init__()
        self.eps = eps
        self.dim = normalized_dim
        self.weight = nn.Parameter(weight.detach().clone() if weight is not None else torch.ones(normalized_dim))
        self.bias = nn.Parameter(bias.detach().clone() if bias is not None else torch.zeros(normalized_dim))
        self.film = nn.Sequential(nn.Linear(cond_dim, hidden), nn.Linear(hidden, 2 * normalized_dim))
        nn.init.zeros_(self.film[1].weight)
        nn.init.zeros_(self.film[1].bias)
        self.task_offset = nn.Parameter(torch.zeros(num_tasks, 2 * normalized_dim)) if num_tasks else None
        self._conditioning = conditioning  # a plain attribute: not a submodule, not in the state dict

    @classmethod
    def from_layernorm(cls, norm: nn.LayerNorm, cond_dim: int, conditioning: TaskConditioning,
                       hidden: int = 32, num_tasks: int = 0) -> TaskScaledNorm:
        (dim,) = norm.normalized_shape
        return cls(dim, cond_dim, conditioning, norm.eps, norm.weight, norm.bias, hidden, num_tasks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self._conditioning.get()  # (T, D)
        film = self.film(w)
        if self.task_offset is not None:
            rows = self._conditioning.rows
            film = film + (self.task_offset if rows is None else self.task_offset[rows])
        gamma_t, beta_t = film.chunk(2, dim=-1)  # (T, C) each
        scale = (self.weight * (1 + gamma_t)).unsqueeze(1)  # (T, 1, C)
        shift = (self.bias + beta_t).unsqueeze(1)
        xn = F.layer_norm(x, (self.dim,), eps=self.eps)
        return (_per_stream(xn, w.shape[0]) * scale + shift).reshape(x.shape)


class TaskAttentionBias(nn.Module):
    """TAA (paper, from the authors' slides): a per-task additive bias on the attention logits.

    ``[gamma_t, beta_t] = Linear_{D -> 2b}(w_t)`` (zero-initialised), ``M_t = (1 + gamma_t) * A + beta_t``
    with ``A`` (N, b) learnable and zero-initialised, and ``Bias_t = blockdiag(M_t[0:b], M_t[b:2b], ...)``
    (N, N), zero off the diagonal blocks. [ours] When b does not divide N the last block is cut to the
    remaining tokens; ``per_head`` learns one ``A`` and one modulation per attention head.
    ``prefix_tokens`` P > 0 [ours] aligns the blocks to the token grid: the first P tokens (a ViT's class
    and register tokens) are tiled on their own and the patch blocks start at token P, so with b = grid
    width every block is one row of patches (with P = 0, a ViT's blocks straddle rows by P tokens).

    ``forward(w (T, D), batch B) -> bias (T*B, heads or 1, N, N)`` for the blocks' ``attn_bias``.
    """

    def __init__(self, num_tokens: int, block_size: int, cond_dim: int, num_heads: int = 1, per_head: bool = False,
                 prefix_tokens: int = 0):
        super().__init__()
        if block_size < 1:
            raise ValueError(f"TAA block size must be >= 1, got {block_size}")
        if not 0 <= prefix_tokens < num_tokens:
            raise ValueError(f"TAA prefix tokens must be in [0, {num_tokens}), got {prefix_tokens}")
        self.num_tokens = num_tokens
        self.block_size = b = min(block_size, num_tokens)
        self.heads = num_heads if per_head else 1
        self.A = nn.Parameter(torch.zeros(self.heads, num_tokens, b))
        self.film = nn.Linear(cond_dim, 2 * b * self.heads)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        # row i of the bias holds M[i, j] at column start(i) + j, where that column is inside i's segment:
        # segments [0, P) and [P, N) are each tiled by blocks of b from their first token
        rows = torch.arange(num_tokens).unsqueeze(1).expand(num_tokens, b)
        seg_start = torch.where(rows < prefix_tokens, 0, prefix_tokens)
        seg_end = torch.where(rows < prefix_tokens, prefix_tokens, num_tokens)
        cols = seg_start + ((rows - seg_start) // b) * b + torch.arange(b)
        valid = cols < seg_end
        self.register_buffer("_rows", rows[valid], persistent=False)
        self.register_buffer("_cols", cols[valid], persistent=False)
        self.register_buffer("_valid", valid, persistent=False)

    def forward(self, w: torch.Tensor, batch: int) -> torch.Tensor:
        T = w.shape[0]
        gamma_t, beta_t = self.film(w).view(T, self.heads, 2, 1, self.block_size).unbind(2)  # (T, h, 1, b)
        M = (1 + gamma_t) * self.A + beta_t  # (T, h, N, b)
        bias = M.new_zeros(T, self.heads, self.num_tokens, self.num_tokens)
        bias[:, :, self._rows, self._cols] = M[:, :, self._valid]
        return bias.unsqueeze(1).expand(T, batch, *bias.shape[1:]).reshape(T * batch, *bias.shape[1:])


class Bottleneck(nn.Module):
    """Residual bottleneck adapter ``a + up(GELU(down(norm(a))))`` with a zero-initialised ``up``.

    ``norm`` is a TSN when TSN is on, else a LayerNorm; it only feeds the branch, so at step 0 the
    bottleneck is the identity. Input (S, ..., C) -> same shape.
    """

    def __init__(self, dim: int, ratio: float, norm: nn.Module):
        super().__init__()
        hidden = max(1, int(round(dim / ratio)))
        self.norm = norm
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(self.norm(x))))
