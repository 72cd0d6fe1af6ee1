"""Methods: how a network is built for the tasks, one file per method (LibMTL style).

A method is a :class:`Method` whose ``build(backbone, tasks, num_classes, **options)`` returns a
:class:`~taskadapt.models.network.TaskNetwork`: ours (``adapters`` and its ablations ``no_taa``,
``no_tsn``, ``no_troa``) in :mod:`.adapters`; the baselines ``stl``, ``mtl_finetune``, ``frozen_heads``
and ``lora`` in their own files. Loss weighting stays apart, in :mod:`taskadapt.losses`.
``model.method`` names one of :func:`list_methods`.
"""

from __future__ import annotations

from taskadapt.models.methods import adapters, frozen_heads, lora, mtl_finetune, stl  # noqa: F401  (registers)
from taskadapt.models.methods.base import METHODS, Method


def get_method(name: str) -> Method:
    """The method registered as ``name`` (ConfigError with a did-you-mean hint when unknown)."""
    return METHODS.get(name)


def list_methods() -> list[str]:
    return METHODS.names()


__all__ = ["METHODS", "Method", "get_method", "list_methods"]
