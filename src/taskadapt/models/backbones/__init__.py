"""Backbone registry: ``create_backbone(name, pretrained=None, img_size=None)``, one file per family.

Names are timm's (``vit_small_patch16_224``, ``swin_tiny_patch4_window7_224``, ``pvt_v2_b2``, ...);
an unknown name is a ConfigError with a did-you-mean hint.
"""

from __future__ import annotations

from typing import Any

# importing the family modules registers their models
from taskadapt.models.backbones import bundled, pvt_v2, swin, vit  # noqa: F401
from taskadapt.models.backbones.base import Backbone, Step
from taskadapt.models.backbones.pretrained import load_pretrained
from taskadapt.models.backbones.registry import BACKBONES, list_backbones, register_backbone


def create_backbone(
    name: str, pretrained: str | None = None, img_size: int | tuple[int, int] | None = None, **kwargs: Any
) -> Backbone:
    """Build backbone ``name``; ``pretrained`` is a local ``.safetensors``/``.pth`` file or
    ``hf-hub:timm/<repo>``; ``img_size`` overrides the default input size (position embeddings and
    relative-position tables are resized when weights are loaded). Extra ``kwargs`` (e.g. ``depth``,
    ``embed_dim``) override the architecture, as in timm."""
    fn = BACKBONES.get(name)
    if img_size is not None:
        kwargs["img_size"] = img_size
    model = fn(**kwargs)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


__all__ = ["BACKBONES", "Backbone", "Step", "create_backbone", "list_backbones", "register_backbone"]
