"""Parameter accounting: trainable and frozen parameters per component of a model.

Components follow the data flow: backbone prefix (shared, run once), adapter blocks' pretrained
weights, TSN, TAA, bottlenecks, task embeddings, LoRA, decoder, heads.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

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


def _component(model: nn.Module, name: str) -> str:
    from taskadapt.models.multitask import MultiTaskModel

    if name.startswith("models."):  # SingleTaskEnsemble: models.<task>.<name>
        _, task, name = name.split(".", 2)
        model = model.models[task]
    if not isinstance(model, MultiTaskModel):
        return "other"
    if "lora_A" in name or "lora_B" in name:
        return "LoRA"
    if name.startswith(("decoder.", "decoders.")):
        return "decoder"
    if name.startswith("heads."):
        return "heads"
    if name == "task_embeddings":
        return "task embeddings"
    if name.startswith("adapter_layers."):
        return "TAA" if ".taa." in name else "bottleneck"
    if name.startswith("backbone."):
        inner = name[len("backbone."):]
        steps = model.backbone.steps()
        for i, step in enumerate(steps):
            if inner.startswith(step.name + "."):
                if i in model.adapter_steps:
                    if ".norm1." in inner or ".norm2." in inner:
                        return "TSN" if model.plan.tsn else "adapter blocks (pretrained)"
                    return "adapter blocks (pretrained)"
                return "backbone after split" if i >= model.split else "backbone prefix"
        # the stem: patch embedding, position embedding, class token and register tokens
        return "backbone prefix"
    return "other"


def parameter_table(model: nn.Module) -> list[ParamRow]:
    """Rows per component (only components that have parameters), in data-flow order."""
    counts: OrderedDict[str, list[int]] = OrderedDict((c, [0, 0]) for c in (*COMPONENTS, "other"))
    for name, p in model.named_parameters():
        counts[_component(model, name)][0 if p.requires_grad else 1] += p.numel()
    return [ParamRow(c, t, f) for c, (t, f) in counts.items() if t + f > 0]


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
