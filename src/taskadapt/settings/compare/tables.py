"""The comparison as tables: ``compare.md`` and the terminal table of one seed, ``compare.md`` of several
seeds (per method, then the paired differences), and writing them with ``compare.json`` (atomically)."""

from __future__ import annotations

import math

from rich.table import Table

from taskadapt.io import write_json, write_text
from taskadapt.metrics.paired import NEEDS_TWO, PairedDifference, Summary
from taskadapt.settings.compare.results import (
    BASELINE_METHOD,
    CompareResult,
    MethodResult,
    MethodSummary,
    SeedsResult,
    aggregate,
    paired,
    seed_notes,
)

# --------------------------------------------------------------------------------------------------
# output


def _columns(result: CompareResult) -> list[str]:
    arrows = {True: "↑", False: "↓"}
    return ["method", "trainable params",
            *[f"{t} {result.primary_metrics[t]} {arrows[result.higher_is_better[t]]}" for t in result.tasks],
            "Δm %", "notes"]


def _cells(result: CompareResult, row: MethodResult) -> list[str]:
    params = f"{row.trainable_params:,}" if row.trainable_params is not None else "-"
    values = [f"{row.primary[t]:.4f}" if t in row.primary and math.isfinite(row.primary[t]) else "-"
              for t in result.tasks]
    dm = f"{row.delta_m:+.2f}" if row.delta_m is not None else "-"
    if row.status == "failed":
        note = f"failed: {row.error}"
    else:
        note = "; ".join(x for x in ("baseline" if row.method == BASELINE_METHOD else "",
                                     "reused run" if row.reused else "", row.error or "") if x)
    return [row.method, params, *values, dm, note]


def compare_markdown(result: CompareResult) -> str:
    """``compare.md``: the protocol in a few lines, then the table."""
    p = result.protocol
    lines = [
        "# Method comparison",
        "",
        f"{p['dataset']} ({p['root'] or 'procedural scenes'}), tested on the '{p['test_split']}' split "
        f"({p['test_images']} images); backbone {p['backbone']} (pretrained: {p['pretrained'] or 'none'}); "
        f"every method trained {p['steps']} steps, batch {p['batch_size']}, crop {p['crop_size']}, seed {p['seed']}. "
        f"Edge odsF with the {p['edge_matcher']} matcher (tolerance {p['edge_tolerance']:g} of the diagonal). "
        f"Δm: mean over tasks of the signed relative change of the primary metric against "
        f"{BASELINE_METHOD} (Vandenhende et al., Eq. 10), in percent; higher is better.",
        "",
    ]
    if result.note:
        lines += [f"Note: {result.note}.", ""]
    cols = _columns(result)
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(cols) - 2) + ["---"]) + " |")
    for row in result.rows:
        cells = [c.replace("|", "\\|") for c in _cells(result, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(result: CompareResult) -> None:
    """Write ``compare.json`` and ``compare.md`` into ``result.out`` (atomically)."""
    write_json(result.out / "compare.json", result.to_dict())
    write_text(result.out / "compare.md", compare_markdown(result))


def compare_table(result: CompareResult) -> Table:
    """The comparison as a rich table (failed rows in red)."""
    table = Table(title=f"{result.protocol['dataset']} '{result.protocol['test_split']}': methods compared")
    for i, col in enumerate(_columns(result)):
        table.add_column(col, justify="left" if i == 0 or col == "notes" else "right")
    for row in result.rows:
        table.add_row(*_cells(result, row), style="red" if row.status == "failed" else None)
    return table


def _mean_std(s: Summary, spec: str, std_spec: str | None = None) -> str:
    """``mean ± std`` (just the mean for one value, ``-`` for none)."""
    if s.mean is None or not math.isfinite(s.mean):
        return "-"
    text = format(s.mean, spec)
    return text if s.std is None else f"{text} ± {format(s.std, std_spec or spec)}"


def _seed_columns(first: CompareResult) -> list[str]:
    return [*_columns(first)[:-2], "Δm %", "n seeds", "notes"]


def _seed_cells(m: MethodSummary, tasks: list[str], reference: str | None) -> list[str]:
    params = _mean_std(Summary(m.trainable_params.n, m.trainable_params.mean, None), ",.0f")
    failed = "; ".join(f"seed {s}: {e}" for s, e in m.failed.items())
    note = "; ".join(x for x in ("baseline" if m.method == BASELINE_METHOD else "",
                                 "reference" if m.method == reference else "",
                                 f"failed on {failed}" if failed else "") if x)
    return [m.method, params, *[_mean_std(m.primary[t], ".4f") for t in tasks],
            _mean_std(m.delta_m, "+.2f", ".2f"), str(len(m.seeds)), note]


def _paired_columns(reference: str, confidence: float = 0.95) -> list[str]:
    return ["method", "n", f"Δm {reference} − method (pp)", f"{confidence:.0%} CI", "verdict"]


def _paired_cells(method: str, d: PairedDifference) -> list[str]:
    mean = f"{d.mean:+.2f}" if d.mean is not None else "-"
    ci = f"[{d.low:+.2f}, {d.high:+.2f}]" if d.low is not None and d.high is not None else "-"
    return [method, str(d.n), mean, ci, d.verdict]


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |",
             "| " + " | ".join(["---"] + ["---:"] * (len(columns) - 2) + ["---"]) + " |"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows]


def seeds_markdown(result: SeedsResult) -> str:
    """``compare.md`` of several seeds: the protocol, the per-method table and the paired table."""
    first, p = result.first, result.protocol()
    done = ", ".join(str(s) for s in result.runs)
    lines = [
        "# Method comparison over seeds",
        "",
        f"{p['dataset']} ({p['root'] or 'procedural scenes'}), tested on the '{p['test_split']}' split "
        f"({p['test_images']} images); backbone {p['backbone']} (pretrained: {p['pretrained'] or 'none'}); "
        f"every method trained {p['steps']} steps, batch {p['batch_size']}, crop {p['crop_size']}, on each of the "
        f"seeds {done} (of {', '.join(str(s) for s in result.seeds)}). The seed sets the initialisation, the batch "
        f"order and augmentations and the validation images carved from training; the data stay the same. "
        f"Edge odsF with the {p['edge_matcher']} matcher (tolerance {p['edge_tolerance']:g} of the diagonal). "
        f"Δm (Vandenhende et al., Eq. 10, percent, higher is better) of a method on a seed is against "
        f"{BASELINE_METHOD} of the same seed. Values: mean ± sample standard deviation over the seeds where the "
        f"method succeeded (n seeds).",
        "",
    ]
    lines += [f"Note: {n}." for n in seed_notes(result)]
    if seed_notes(result):
        lines.append("")
    rows = [_seed_cells(m, first.tasks, result.reference) for m in aggregate(result.runs)]
    lines += ["## Methods", "", *_md_table(_seed_columns(first), rows), ""]
    diffs = paired(result.runs, result.reference)
    if diffs:
        lines += [f"## {result.reference} against each method", "",
                  f"Δm of {result.reference} minus Δm of the method, paired by seed (only seeds where both have a "
                  f"Δm; n), in percentage points: mean and two-sided 95 % Student-t interval "
                  f"(mean ± t(0.975, n-1) · sd / √n). Verdict: better or worse when the interval excludes 0, else "
                  f"within noise ({NEEDS_TWO} for an interval).", "",
                  *_md_table(_paired_columns(result.reference), [_paired_cells(m, d) for m, d in diffs.items()]),
                  ""]
    return "\n".join(lines)


def write_seed_outputs(result: SeedsResult) -> None:
    """Write ``compare.json`` and ``compare.md`` of the seeds finished so far into ``result.out``."""
    write_json(result.out / "compare.json", result.to_dict())
    write_text(result.out / "compare.md", seeds_markdown(result))


def seeds_tables(result: SeedsResult) -> list[Table]:
    """The seeds comparison as rich tables: per method, then the paired differences (if any)."""
    first = result.first
    title = f"{first.protocol['dataset']} '{first.protocol['test_split']}': methods over seeds " + \
        ", ".join(str(s) for s in result.runs)
    table = Table(title=title)
    for i, col in enumerate(_seed_columns(first)):
        table.add_column(col, justify="left" if i == 0 or col == "notes" else "right")
    for m in aggregate(result.runs):
        table.add_row(*_seed_cells(m, first.tasks, result.reference), style="red" if m.failed else None)
    tables = [table]
    diffs = paired(result.runs, result.reference)
    if diffs:
        pt = Table(title=f"{result.reference} against each method: paired Δm difference, 95 % t interval")
        for i, col in enumerate(_paired_columns(result.reference)):
            pt.add_column(col, justify="left" if i in (0, 4) else "right")
        for m, d in diffs.items():
            pt.add_row(*_paired_cells(m, d))
        tables.append(pt)
    return tables


