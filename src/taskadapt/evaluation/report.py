"""Rendering evaluation results: ``report.md`` (:func:`report_markdown`) and the terminal table
(:func:`metrics_table`). Each task's primary metric and the metrics' directions come from the task's
metric (``get_task(t).primary_metric`` / ``.directions``).
"""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from taskadapt.tasks import get_task
from taskadapt.version import __version__


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


def _rows(task: str, metrics: dict[str, float], primary: dict | None) -> list[tuple[str, str, str, bool]]:
    """(metric, value, direction arrow, is primary) per metric of one task."""
    spec = get_task(task)
    name, directions = spec.primary_metric, spec.directions
    if primary and task in primary:
        name = primary[task]["metric"]
    rows = []
    for metric, value in metrics.items():
        arrow = {True: "↑", False: "↓"}.get(directions.get(metric), "")  # e.g. ods_threshold: no direction
        rows.append((metric, _fmt(float(value)), arrow, metric == name))
    return rows


def report_markdown(doc: dict[str, Any]) -> str:
    """The ``report.md`` text of an :func:`evaluate_checkpoint` document."""
    d = doc["dataset"]
    lines = [
        f"# Evaluation of `{doc['checkpoint']}`",
        "",
        "| | |",
        "|---|---|",
        f"| checkpoint | `{doc['checkpoint']}` (step {doc.get('step')}, method {doc.get('method')}, "
        f"backbone {doc.get('backbone')}) |",
        f"| dataset | `{d['root']}` (format {d['format']}) |",
        f"| split | {d['split']} |",
        f"| images | {doc['images']} (model input {doc.get('input_size')} px, metrics at the labels' resolution) |",
    ]
    if doc.get("edge_matcher"):
        e = doc["edge_matcher"]
        kind = "exact one-to-one (max-cardinality bipartite)" if e["exact"] else "approximate (distance transform)"
        thin = "; true boundaries thinned to 1 px first" if e.get("thin_targets") else ""
        lines.append(f"| edge matcher | {kind}, tolerance {e['tolerance']} of the image diagonal{thin} |")
    lines.append(f"| taskadapt | {doc.get('taskadapt_version', __version__)} |")
    lines += ["", "The primary metric of each task (used for model selection and Δm) is in **bold**; "
              "↑ = higher is better, ↓ = lower is better.", ""]
    for task, metrics in doc["metrics"].items():
        lines += [f"## {task}", "", "| metric | value | better |", "|---|---:|:---:|"]
        for metric, value, arrow, is_primary in _rows(task, metrics, doc.get("primary")):
            label = f"**{metric}** (primary)" if is_primary else metric
            shown = f"**{value}**" if is_primary else value
            lines.append(f"| {label} | {shown} | {arrow} |")
        lines.append("")
    for task, vectors in (doc.get("per_class") or {}).items():
        names = list(next(iter(vectors.values())))
        lines += [f"## {task}: per class", "", "| class | " + " | ".join(vectors) + " |",
                  "|---|" + "---:|" * len(vectors)]
        lines += [f"| {name} | " + " | ".join(_fmt(v[name]) for v in vectors.values()) + " |" for name in names]
        lines.append("")
    dm = doc.get("delta_m")
    if dm:
        lines += [f"## Δm against `{dm['baseline_file']}`", ""]
        if dm.get("description"):
            lines += [dm["description"], ""]
        lines += ["| task | metric | baseline | this model | relative gain |", "|---|---|---:|---:|---:|"]
        for task, gain in dm["contributions"].items():
            model_value = doc["metrics"][task][dm["metrics"][task]]
            lines.append(f"| {task} | {dm['metrics'][task]} | {_fmt(dm['baseline'][task])} | {_fmt(model_value)} "
                         f"| {gain:+.2f}% |")
        lines += ["", f"**Δm = {dm['delta_m']:+.2f}%** over {len(dm['contributions'])} tasks "
                  "(mean of the signed relative gains of the primary metrics; positive = better than the baseline)."]
        if dm.get("ignored"):
            lines.append(f"Not in the baseline, ignored: {', '.join(dm['ignored'])}.")
        lines.append("")
    return "\n".join(lines)


def metrics_table(results: dict[str, Any]) -> Table:
    """A terminal table of ``{"metrics": {task: {name: value}}}`` (an :func:`evaluate_checkpoint` or
    ``evaluate`` result): one row per metric, the primary metric of each task marked."""
    title = "metrics"
    if "dataset" in results:
        d = results["dataset"]
        title = f"{d['root']} / {d['split']} ({results.get('images')} images)"
    table = Table(title=title)
    for name, kw in (("task", {}), ("metric", {}), ("value", {"justify": "right"}), ("", {"justify": "center"})):
        table.add_column(name, **kw)
    for task, metrics in results["metrics"].items():
        for k, (metric, value, arrow, is_primary) in enumerate(_rows(task, metrics, results.get("primary"))):
            style = "bold" if is_primary else None
            table.add_row(task if k == 0 else "", f"{metric} *" if is_primary else metric, value, arrow, style=style)
        table.add_section()
    dm = results.get("delta_m")
    caption = "* primary metric; ↑ higher is better, ↓ lower is better"
    if dm:
        caption = f"Δm = {dm['delta_m']:+.2f}% vs {dm.get('baseline_file', 'baseline')}\n{caption}"
    table.caption = caption
    return table
