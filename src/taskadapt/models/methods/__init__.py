"""Methods: what is trained and how task streams are formed, one file per method (LibMTL style).

A method is a :class:`MethodPlan` -- a few switches the model reads -- so architectures stay in
:mod:`taskadapt.models.multitask` and loss weighting in :mod:`taskadapt.losses`. ``model.method``
names one of :func:`list_methods`.
"""

from __future__ import annotations

from taskadapt.models.methods import ablations, adapters, frozen_heads, lora, mtl_finetune, stl  # noqa: F401,E402,I001
from taskadapt.models.methods.base import METHODS, MethodPlan


def get_method(name: str) -> MethodPlan:
    """The plan registered as ``name`` (ConfigError with a did-you-mean hint when unknown)."""
    return METHODS.get(name)


def list_methods() -> list[str]:
    return METHODS.names()


__all__ = ["METHODS", "MethodPlan", "get_method", "list_methods"]
