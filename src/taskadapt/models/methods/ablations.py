"""Ablations of ours: TAA, TSN or TROA switched off one at a time (everything else identical)."""

from dataclasses import replace

from taskadapt.models.methods.adapters import PLAN as ADAPTERS
from taskadapt.models.methods.base import register_method

NO_TAA = register_method(replace(ADAPTERS, name="no_taa", summary="ours without task-adapted attention", taa=False))
NO_TSN = register_method(replace(ADAPTERS, name="no_tsn", summary="ours with plain LayerNorms instead of TSN",
                                 tsn=False))
NO_TROA = register_method(replace(ADAPTERS, name="no_troa",
                                  summary="ours with each task's own embedding (no affinity mixing)", troa=False))
