"""The backbone registry: model functions by timm name, registered by ``@register_backbone`` in each
family's file (timm's ``@register_model``)."""

from __future__ import annotations

from collections.abc import Callable

from taskadapt.models.backbones.base import Backbone
from taskadapt.registry import Registry

BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone")


def register_backbone(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
    """Decorator: register a model function under its own name."""
    return BACKBONES.register(fn.__name__, fn)


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching a shell-style pattern, e.g. ``list_backbones("swin*")``."""
    return BACKBONES.names(pattern)
