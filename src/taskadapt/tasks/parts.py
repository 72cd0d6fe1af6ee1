"""Human parts (PASCAL-Part): 7-way classification (background + 6 part groups), 255 ignored.

Images without a person with annotated parts are entirely 255 (metrics-and-datasets.md §4.1), so
they add nothing to the loss. Loss weight 2 follows the PASCAL multitask convention of the field.
"""

from __future__ import annotations

from taskadapt.tasks.base import TASKS
from taskadapt.tasks.semseg import ClassMapTask

#: background + head, torso, upper arms, lower arms/hands, upper legs, lower legs/feet
NUM_HUMAN_PARTS = 7

PARTS = TASKS.register(
    "parts",
    ClassMapTask(name="parts", label_key="parts", default_loss_weight=2.0,
                 default_num_classes=NUM_HUMAN_PARTS),
)
