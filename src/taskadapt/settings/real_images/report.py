"""Tables of an ``eval-real`` document: a row per method, a column per metric of the folder's task."""

from __future__ import annotations

from typing import Any

import numpy as np

from taskadapt.settings.common import markdown_table, rich_table
from taskadapt.settings.real_images.protocols import PROTOCOLS, protocol_for
from taskadapt.version import __version__


def _cell(scores: dict[str, Any], key: str) -> str:
    value: Any = scores
    for part in key.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def folder_table(entry: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of one folder: a row per method (model first), a column per metric."""
    columns = protocol_for(entry["task"]).columns
    header = ["method"] + [h for _, h in columns]
    rows = [[m] + [_cell(entry["scores"][m], k) for k, _ in columns] for m in entry["methods"]]
    return header, rows


def _describe(entry: dict[str, Any]) -> str:
    text = f"{entry['images']} image(s), format {entry['format']}, task {entry['task']}"
    text += protocol_for(entry["task"]).describe_notes(entry)
    if entry.get("calibration"):
        c = entry["calibration"]
        text += f", calibration f={c['f']:g} px, B={c['baseline_m']:g} m, doffs={c['doffs']:g} px ({c['source']})"
    return text


def report_markdown(doc: dict[str, Any]) -> str:
    """The ``report.md`` text of an :func:`~taskadapt.settings.real_images.evaluate_real` document."""
    lines = ["# Evaluation on real photographs", "", "| | |", "|---|---|"]
    if doc.get("checkpoint"):
        lines.append(f"| checkpoint | `{doc['checkpoint']}` (step {doc.get('step')}, method {doc.get('method')}, "
                     f"backbone {doc.get('backbone')}, input {doc.get('input_size')} px) |")
        lines.append(f"| resizing | {doc['resize']} |")
    else:
        lines.append("| checkpoint | none: baselines only |")
    lines += [protocol.report_row(doc["protocol"][task]) for task, protocol in PROTOCOLS.items()]
    lines += [
        f"| taskadapt | {doc.get('taskadapt_version', __version__)} |",
        "",
        "Few images: read every number with its image count and beside the trivial baselines.",
        "",
    ]
    for entry in doc["folders"]:
        header, rows = folder_table(entry)
        lines += [f"## {entry['name']}", "", f"`{entry['root']}`: {_describe(entry)}.", "",
                  markdown_table(header, rows).rstrip("\n"), ""]
        if entry.get("sheets"):
            lines += [f"Picture sheets: `{entry['sheets']}/`.", ""]
    if doc.get("skipped"):
        lines += ["## Skipped", ""]
        lines += [f"- `{s['root']}` ({s['format']}): {s['reason']}" for s in doc["skipped"]]
        lines.append("")
    return "\n".join(lines)


def real_tables(doc: dict[str, Any]) -> list:
    """One ``rich`` table per scored folder, for the terminal."""
    tables = []
    for entry in doc["folders"]:
        header, rows = folder_table(entry)
        table = rich_table(entry["name"], header, rows)
        table.caption = _describe(entry)
        tables.append(table)
    return tables


__all__ = ["folder_table", "real_tables", "report_markdown"]
