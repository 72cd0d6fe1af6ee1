"""Paired, seeded comparison of runs from several seeded ``taskadapt compare`` folders (prints tables).

    python benchmarks/paired_runs.py --baseline runs/science-dec/per_task \\
        --run adapters/per_task=runs/science-dec/per_task:adapters \\
        --run adapters/shared=runs/science-dec/shared:adapters \\
        --reference adapters/per_task --markdown docs/results/decoder-study.md --json docs/results/decoder-study.json

``taskadapt compare --seeds N`` pairs methods that ran in the same command. This script pairs runs made by
different commands -- e.g. the same method under two values of a setting that applies to every method
(``model.decoder``) -- on the seeds they share: each ``--run LABEL=DIR:METHOD`` reads
``DIR/seed<s>/compare.json``; Delta_m of every run on seed s is taken against
``BASELINE/seed<s>/baseline_stl.json`` (the ``stl`` of the same seed; ``stl`` does not depend on
``model.decoder``, so one seeded ``stl`` serves both decoder layouts). Then, as the compare command does:
mean ± std over seeds of each primary metric and of Delta_m, and for ``--reference`` against every
other run the per-seed paired difference of Delta_m with a two-sided 95 % Student-t interval
(:mod:`taskadapt.metrics.paired`).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

from taskadapt.io import write_json, write_text
from taskadapt.metrics.delta_m import delta_m, load_baseline
from taskadapt.metrics.paired import Summary, paired_difference, summarize

console = Console()


def seeds_of(folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.glob("seed*") if (m := re.fullmatch(r"seed(\d+)", p.name)))


def run_metrics(folder: Path, method: str, seed: int) -> dict | None:
    """The test metrics of ``method`` on ``seed`` (None: no finished row)."""
    path = folder / f"seed{seed}" / "compare.json"
    if not path.is_file():
        return None
    rows = [r for r in json.loads(path.read_text())["rows"] if r["method"] == method and r["status"] == "ok"]
    return rows[0]["metrics"] if rows else None


def mean_std(s: Summary, spec: str) -> str:
    """``mean ± std`` over seeds (just the mean for one seed, ``-`` for none)."""
    if s.mean is None:
        return "-"
    return format(s.mean, spec) + (f" ± {format(s.std, spec.lstrip('+'))}" if s.std is not None else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="seeded compare folder with stl")
    parser.add_argument("--run", action="append", required=True, help="LABEL=DIR:METHOD (repeatable)")
    parser.add_argument("--reference", required=True, help="the LABEL compared against every other run")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--json", type=Path, help="also write every per-seed value here")
    args = parser.parse_args(argv)

    runs: dict[str, tuple[Path, str]] = {}
    for spec in args.run:
        label, _, where = spec.partition("=")
        folder, _, method = where.rpartition(":")
        if not (label and folder and method):
            parser.error(f"--run {spec!r}: expected LABEL=DIR:METHOD")
        runs[label] = (Path(folder), method)
    if args.reference not in runs:
        parser.error(f"--reference {args.reference!r} is not one of the --run labels {list(runs)}")
    seeds = seeds_of(args.baseline)
    baselines = {s: load_baseline(args.baseline / f"seed{s}" / "baseline_stl.json") for s in seeds
                 if (args.baseline / f"seed{s}" / "baseline_stl.json").is_file()}
    tasks = list(next(iter(baselines.values()))["tasks"]) if baselines else []

    values: dict[str, dict[int, dict]] = {}
    for label, (folder, method) in runs.items():
        values[label] = {}
        for s, base in baselines.items():
            metrics = run_metrics(folder, method, s)
            if metrics is None:
                continue
            primary = {t: float(metrics[t][base["tasks"][t]["metric"]]) for t in tasks}
            values[label][s] = {"primary": primary, "delta_m": delta_m(metrics, base).value}

    table = Table(title=f"seeds {sorted(baselines)}; Delta_m vs stl of the same seed")
    headers = ["run", *[f"{t} {next(iter(baselines.values()))['tasks'][t]['metric']}" for t in tasks], "Δm %", "n"]
    for h in headers:
        table.add_column(h, justify="right")
    rows = []
    for label, per_seed in values.items():
        cells = [label, *[mean_std(summarize([v["primary"][t] for v in per_seed.values()]), ".4f") for t in tasks]]
        d = summarize([v["delta_m"] for v in per_seed.values()])
        cells += [mean_std(d, "+.2f"), str(d.n)]
        rows.append(cells)
        table.add_row(*cells)
    console.print(table)

    ref = {s: v["delta_m"] for s, v in values[args.reference].items()}
    paired = Table(title=f"{args.reference} minus each run, Delta_m in points, paired by seed")
    paired_headers = ["run", "n", "mean difference", "95 % CI", "verdict"]
    for h in paired_headers:
        paired.add_column(h, justify="right")
    paired_rows, paired_json = [], {}
    for label in values:
        if label == args.reference:
            continue
        d = paired_difference(ref, {s: v["delta_m"] for s, v in values[label].items()})
        ci = f"[{d.low:+.2f}, {d.high:+.2f}]" if d.low is not None else "-"
        cells = [label, str(len(d.seeds)), f"{d.mean:+.2f}" if d.mean is not None else "-", ci, d.verdict]
        paired_rows.append(cells)
        paired.add_row(*cells)
        paired_json[label] = {"seeds": d.seeds, "differences": d.differences, "mean": d.mean,
                              "low": d.low, "high": d.high, "verdict": d.verdict}
    console.print(paired)

    if args.markdown:
        def md(head: list[str], body: list[list[str]]) -> str:
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])

        write_text(args.markdown, f"{md(headers, rows)}\n\n{args.reference} minus each run (Δm points, paired "
                                  f"by seed, 95 % t interval):\n\n{md(paired_headers, paired_rows)}\n")
    if args.json:
        write_json(args.json, {"baseline": str(args.baseline), "seeds": sorted(baselines),
                               "runs": {k: {"folder": str(f), "method": m} for k, (f, m) in runs.items()},
                               "values": {k: {str(s): v for s, v in per.items()} for k, per in values.items()},
                               "reference": args.reference, "paired": paired_json})


if __name__ == "__main__":
    main()
