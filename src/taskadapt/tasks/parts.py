"""Human parts (PASCAL-Part): 7-way classification (background + 6 part groups), 255 ignored.

Images without a person with annotated parts are entirely 255 (metrics-and-datasets.md §4.1), so
they add nothing to the loss. Loss weight 2 follows the PASCAL multitask convention of the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskadapt.tasks.base import register_task
from taskadapt.tasks.semseg import ClassMapTask

#: background + head, torso, upper arms, lower arms/hands, upper legs, lower legs/feet
NUM_HUMAN_PARTS = 7


@register_task
@dataclass(frozen=True)
class PartsTask(ClassMapTask):
    """:class:`ClassMapTask` with the defaults of human parts; loss, metric and picture are semseg's."""

    name: str = "parts"
    label_key: str = "parts"
    default_loss_weight: float = 2.0
    default_num_classes: int | None = NUM_HUMAN_PARTS
