"""Task registry: one :class:`TaskSpec` per dense-prediction task.

>>> from taskadapt.tasks import get_task, list_tasks
>>> list_tasks()
['depth', 'edge', 'normals', 'parts', 'saliency', 'semseg']
>>> get_task("depth").out_channels()
1

Each task module registers its spec where the class is defined (``@register_task``); importing this
package imports them all.
"""

from __future__ import annotations

from typing import Any

from taskadapt.tasks import depth, edge, normals, parts, saliency, semseg  # noqa: F401  (registers)
from taskadapt.tasks.base import TASKS, TaskKind, TaskSpec, register_task


def get_task(name: str, **options: Any) -> TaskSpec:
    """The spec registered as ``name``, with ``options`` applied (see :meth:`TaskSpec.configure`).

    Unknown names raise :class:`~taskadapt.errors.ConfigError` with a did-you-mean hint.
    """
    spec = TASKS.get(name)
    return spec.configure(**options) if options else spec


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching a shell-style ``pattern``, sorted."""
    return TASKS.names(pattern)


__all__ = ["TASKS", "TaskKind", "TaskSpec", "get_task", "list_tasks", "register_task"]
