"""Backbones, adapters, decoder and heads.

The model issue implements these architectures in plain PyTorch with timm's parameter names
(method.md §2). The names are declared here first so configurations can be validated against them.
"""

from __future__ import annotations

import fnmatch

#: the backbone architectures taskadapt supports, with timm's names
BACKBONE_NAMES: tuple[str, ...] = (
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "swin_tiny_patch4_window7_224",
    "swin_small_patch4_window7_224",
    "swin_base_patch4_window7_224",
    "pvt_v2_b0",
    "pvt_v2_b1",
    "pvt_v2_b2",
)


def list_backbones(pattern: str = "*") -> list[str]:
    """Backbone names matching a shell-style pattern, e.g. ``list_backbones("swin*")``."""
    return sorted(n for n in BACKBONE_NAMES if fnmatch.fnmatch(n, pattern))
