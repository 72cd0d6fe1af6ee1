"""Parameter accounting: trainable and frozen parameters per component of a model.

Components follow the data flow: backbone prefix (shared, run once), adapter blocks' pretrained
weights, TSN, TAA, bottlenecks, task embeddings, LoRA, decoder, heads. Each network names its
parameters' components itself (:meth:`~taskadapt.models.network.TaskNetwork.components`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from taskadapt.models.network import TaskNetwork

COMPONENTS = ("backbone prefix", "backbone after split", "adapter blocks (pretrained)", "TSN", "TAA",
              "bottleneck", "task embeddings", "LoRA", "decoder", "heads")


@dataclass
class ParamRow:
    component: str
    trainable: int
    frozen: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


def parameter_table(model: nn.Module) -> list[ParamRow]:
    """Rows per component (only components that have parameters), in data-flow order."""
    owner = model.components() if isinstance(model, TaskNetwork) else {}
    counts: OrderedDict[str, list[int]] = OrderedDict((c, [0, 0]) for c in (*COMPONENTS, "other"))
    for name, p in model.named_parameters():
        counts[owner.get(name, "other")][0 if p.requires_grad else 1] += p.numel()
    return [ParamRow(c, t, f) for c, (t, f) in counts.items() if t + f > 0]


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
