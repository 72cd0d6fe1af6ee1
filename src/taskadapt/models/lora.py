"""LoRA (Hu et al. 2022), our own small implementation for the comparison baseline.

``W x + b + (alpha / r) * B A x`` with ``A`` (r, in) Kaiming-initialised and ``B`` (out, r) zero, so the
layer equals the pretrained one at step 0. :class:`LoRALinear` *is* an ``nn.Linear`` whose ``weight``
and ``bias`` keep their names, so pretrained checkpoints still load with strict key checking.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Linear):
    """A frozen linear layer plus a trainable rank-``r`` update. Input (..., in) -> (..., out)."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float = 8.0):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None,
                         device=base.weight.device, dtype=base.weight.dtype)
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.weight = base.weight
        self.bias = base.bias
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + self.scaling * F.linear(F.linear(x, self.lora_A), self.lora_B)


def add_lora(module: nn.Module, targets: tuple[str, ...] = ("qkv", "proj"), rank: int = 4, alpha: float = 8.0) -> int:
    """Replace every ``nn.Linear`` child named in ``targets`` inside attention modules by a LoRALinear.

    Returns how many layers were wrapped. Only linears whose parent is named ``attn`` are touched,
    so MLPs and the patch projection stay as they are (LoRA on qkv and the attention output).
    """
    count = 0
    for name, parent in list(module.named_modules()):
        if not name.endswith("attn"):
            continue
        for child_name, child in list(parent.named_children()):
            if child_name in targets and type(child) is nn.Linear:
                setattr(parent, child_name, LoRALinear(child, rank, alpha))
                count += 1
    return count
