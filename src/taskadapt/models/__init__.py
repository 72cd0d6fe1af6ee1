"""Backbones, methods, decoder and heads: image -> {task: prediction}.

``create_backbone(name)`` builds a timm-compatible backbone (:mod:`taskadapt.models.backbones`);
``get_method(name).build(...)`` a method's network (:mod:`taskadapt.models.methods`);
``create_model(config)`` the configured one (:mod:`taskadapt.models.factory`).
"""

from __future__ import annotations

from taskadapt.models.backbones import Backbone, create_backbone, list_backbones
from taskadapt.models.factory import create_model, num_classes_for
from taskadapt.models.methods import get_method, list_methods
from taskadapt.models.methods.adapters import AdapterModel
from taskadapt.models.methods.stl import SingleTaskEnsemble
from taskadapt.models.multitask import MultiTaskModel
from taskadapt.models.network import TaskNetwork

__all__ = ["AdapterModel", "Backbone", "MultiTaskModel", "SingleTaskEnsemble", "TaskNetwork", "create_backbone",
           "create_model", "get_method", "list_backbones", "list_methods", "num_classes_for"]
