"""Multitask relative gain Delta_m (Vandenhende et al., survey Eq. 10; §4.7 of the metrics doc).

    Delta_m = (1 / T) * sum_t (-1)^{l_t} (M_t - B_t) / B_t * 100 %,    l_t = 1 if lower is better

with ONE primary metric per task (M_t: the model, B_t: the baseline, usually single-task models with
the same backbone). The baseline is an explicit JSON file so a table always says what it compares to::

    {
      "description": "single-task full fine-tuning, ViT-S, NYUD val",
      "tasks": {
        "semseg": {"metric": "mIoU", "value": 0.42, "higher_is_better": true},
        "depth":  {"metric": "rmse", "value": 0.58, "higher_is_better": false}
      }
    }

Delta_m is computed only when every baseline task is present in the results (a missing task would
silently change T); tasks in the results but not in the baseline are listed as ``ignored``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskadapt.errors import ConfigError
from taskadapt.io import write_json


@dataclass(frozen=True)
class DeltaM:
    """Result of :func:`delta_m`. ``value`` and ``contributions`` are in percent.

    ``contributions[t]`` is task t's signed relative gain (-1)^{l_t} (M_t - B_t) / B_t * 100 (before
    averaging; ``value`` is their mean); ``metrics[t]`` names the metric used for task t.
    """

    value: float
    contributions: dict[str, float]
    metrics: dict[str, str]
    higher_is_better: dict[str, bool]
    ignored: tuple[str, ...] = field(default=())
    description: str = ""

    def summary(self) -> str:
        """One line, e.g. ``Delta_m = -2.50% over 2 tasks (semseg mIoU +5.00%, depth rmse -10.00%)``."""
        parts = ", ".join(f"{t} {self.metrics[t]} {c:+.2f}%" for t, c in self.contributions.items())
        line = f"Delta_m = {self.value:+.2f}% over {len(self.contributions)} tasks ({parts})"
        if self.ignored:
            line += f"; not in the baseline, ignored: {', '.join(self.ignored)}"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "delta_m": self.value,
            "contributions": dict(self.contributions),
            "metrics": dict(self.metrics),
            "higher_is_better": dict(self.higher_is_better),
            "ignored": list(self.ignored),
            "description": self.description,
        }


def validate_baseline(obj: Any, source: str = "baseline") -> dict[str, Any]:
    """Check a parsed baseline and return it normalised (floats, bools); ConfigError if malformed."""
    fix = 'expected {"tasks": {"<task>": {"metric": str, "value": number, "higher_is_better": bool}}, ...}'
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{source}: the baseline must be a JSON object; {fix}")
    tasks = obj.get("tasks")
    if not isinstance(tasks, Mapping) or not tasks:
        raise ConfigError(f"{source}: missing or empty 'tasks' object; {fix}")
    description = obj.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: 'description' must be a string")
    out: dict[str, Any] = {"tasks": {}, "description": description}
    for task, spec in tasks.items():
        where = f"{source}: task '{task}'"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} must be an object; {fix}")
        unknown = set(spec) - {"metric", "value", "higher_is_better"}
        if unknown:
            raise ConfigError(f"{where} has unknown key(s) {sorted(unknown)}; {fix}")
        metric = spec.get("metric")
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"{where} needs a 'metric' name (e.g. \"mIoU\"); {fix}")
        value = spec.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{where} needs a finite numeric 'value', got {value!r}")
        if value == 0:
            raise ConfigError(
                f"{where}: baseline value 0 makes the relative gain undefined; use a non-zero value"
            )
        direction = spec.get("higher_is_better")
        if not isinstance(direction, bool):
            raise ConfigError(
                f"{where}: 'higher_is_better' must be true or false (the direction of '{metric}'), "
                f"got {direction!r}"
            )
        out["tasks"][str(task)] = {"metric": metric, "value": float(value), "higher_is_better": direction}
    return out


def load_baseline(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a baseline JSON file (see the module docstring for the schema)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"baseline file not found: {path}; point to an existing JSON or write one with save_baseline()"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read baseline file {path}: {err.strerror}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"baseline file {path} is not valid JSON (line {err.lineno}: {err.msg})") from None
    return validate_baseline(obj, source=str(path))


def _metric_value(results: Mapping[str, Mapping[str, Any]], task: str, metric: str) -> float:
    task_results = results[task]
    if metric not in task_results:
        have = ", ".join(sorted(task_results)) or "none"
        raise ConfigError(
            f"results for task '{task}' have no metric '{metric}' required by the baseline (have: {have})"
        )
    value = float(task_results[metric])  # also unwraps 0-d tensors
    if not math.isfinite(value):
        raise ConfigError(f"result {task}/{metric} is {value}; Delta_m needs finite values")
    return value


def delta_m(results: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, Any]) -> DeltaM:
    """Delta_m in percent of ``results`` (task -> metric name -> value) against ``baseline``.

    ``baseline``: the parsed JSON (as returned by :func:`load_baseline`; validated again here).
    Raises ConfigError naming the first baseline task absent from ``results``.
    """
    base = validate_baseline(baseline)
    missing = [t for t in base["tasks"] if t not in results]
    if missing:
        raise ConfigError(
            f"cannot compute Delta_m: task '{missing[0]}' is in the baseline but not in the results "
            f"(missing: {', '.join(missing)}); evaluate all baseline tasks or use a baseline with only "
            f"these tasks"
        )
    contributions: dict[str, float] = {}
    metrics: dict[str, str] = {}
    directions: dict[str, bool] = {}
    for task, spec in base["tasks"].items():
        value = _metric_value(results, task, spec["metric"])
        sign = 1.0 if spec["higher_is_better"] else -1.0
        contributions[task] = sign * (value - spec["value"]) / spec["value"] * 100.0
        metrics[task] = spec["metric"]
        directions[task] = spec["higher_is_better"]
    return DeltaM(
        value=sum(contributions.values()) / len(contributions),
        contributions=contributions,
        metrics=metrics,
        higher_is_better=directions,
        ignored=tuple(sorted(t for t in results if t not in base["tasks"])),
        description=base["description"],
    )


def save_baseline(
    path: str | os.PathLike,
    results: Mapping[str, Mapping[str, Any]],
    metrics: Mapping[str, Any],
    description: str = "",
) -> Path:
    """Write a baseline JSON (atomically) from evaluation ``results``.

    ``metrics``: task -> metric object or class with ``primary`` and ``directions`` attributes (the
    classes of this package), which choose the metric and its direction per task. Every task of
    ``metrics`` must be in ``results``.
    """
    tasks: dict[str, Any] = {}
    for task, metric in metrics.items():
        primary = getattr(metric, "primary", None)
        directions = getattr(metric, "directions", None)
        if not isinstance(primary, str) or not isinstance(directions, Mapping) or primary not in directions:
            raise ConfigError(
                f"metric for task '{task}' has no usable 'primary'/'directions' attributes; "
                f"pass a taskadapt metric (e.g. SegmentationMetric)"
            )
        if task not in results:
            raise ConfigError(f"cannot save baseline: no results for task '{task}'")
        tasks[task] = {
            "metric": primary,
            "value": _metric_value(results, task, primary),
            "higher_is_better": bool(directions[primary]),
        }
    obj = validate_baseline({"tasks": tasks, "description": description}, source=str(path))
    return write_json(path, obj)
