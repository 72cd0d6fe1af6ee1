"""Backbones, adapters, decoder and heads: image -> {task: prediction}.

``create_backbone(name)`` builds a timm-compatible backbone (:mod:`taskadapt.models.backbones`);
``create_model(config)`` the whole multitask model for a method (:mod:`taskadapt.models.methods`).
"""

from __future__ import annotations

from taskadapt.models.backbones import Backbone, create_backbone, list_backbones


def __getattr__(name: str):
    # create_model imports the config module, which imports this package: resolve it lazily
    if name in ("create_model", "num_classes_for"):
        from taskadapt.models import factory

        return getattr(factory, name)
    if name in ("MultiTaskModel", "SingleTaskEnsemble"):
        from taskadapt.models import multitask

        return getattr(multitask, name)
    raise AttributeError(f"module 'taskadapt.models' has no attribute {name!r}")


__all__ = ["Backbone", "MultiTaskModel", "SingleTaskEnsemble", "create_backbone", "create_model", "list_backbones"]
