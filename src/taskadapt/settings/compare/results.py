"""What a comparison measured, as data: one row per method (:class:`MethodResult`), one comparison per
seed (:class:`CompareResult`), the seeds together (:class:`SeedsResult`), and the aggregation over seeds:
mean ± sample std per method and paired Delta_m differences with t intervals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taskadapt.metrics.paired import PairedDifference, Summary, paired_difference, summarize

BASELINE_METHOD = "stl"
#: the method the seeds comparison sets against every other one unless told otherwise ("ours")
REFERENCE_METHOD = "adapters"


@dataclass
class MethodResult:
    """One row of the comparison.

    ``primary``: task -> primary metric on the test split; ``metrics``: every test metric;
    ``delta_m``: percent against ``stl`` (None when there is no baseline or the method failed);
    ``status``: ``ok`` or ``failed``; ``error``: why the method failed, or why an ``ok`` row has no
    Delta_m (a non-finite metric); ``reused``: the finished run in ``out_dir`` was tested again
    instead of retrained; ``checkpoint``/``step``: the checkpoint tested (best validation loss).
    """

    method: str
    status: str
    out_dir: str
    trainable_params: int | None = None
    primary: dict[str, float] = field(default_factory=dict)
    delta_m: float | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    checkpoint: str | None = None
    step: int | None = None
    train_seconds: float | None = None
    reused: bool = False
    error: str | None = None


@dataclass
class CompareResult:
    """What :func:`run_compare` measured; ``rows`` are in run order (``stl`` first)."""

    out: Path
    tasks: list[str]
    primary_metrics: dict[str, str]
    higher_is_better: dict[str, bool]
    rows: list[MethodResult]
    protocol: dict[str, Any]
    #: the Delta_m baseline file, or None when it could not be made (then ``note`` says why)
    baseline: Path | None = None
    note: str = ""

    def row(self, method: str) -> MethodResult:
        for r in self.rows:
            if r.method == method:
                return r
        raise KeyError(f"no row for method '{method}' (have: {', '.join(r.method for r in self.rows)})")

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "tasks": self.tasks, "primary_metrics": self.primary_metrics,
                "higher_is_better": self.higher_is_better, "baseline_method": BASELINE_METHOD,
                "baseline": str(self.baseline) if self.baseline else None, "note": self.note,
                "rows": [asdict(r) for r in self.rows]}





@dataclass
class MethodSummary:
    """One method over the seeds: ``seeds`` it succeeded on, ``failed`` seed -> error, and mean ± sample
    std of its trainable parameters, of each task's primary metric and of Delta_m."""

    method: str
    seeds: list[int]
    failed: dict[int, str]
    trainable_params: Summary
    primary: dict[str, Summary]
    delta_m: Summary

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "seeds": self.seeds, "failed": {str(s): e for s, e in self.failed.items()},
                "trainable_params": self.trainable_params.to_dict(),
                "primary": {t: v.to_dict() for t, v in self.primary.items()}, "delta_m": self.delta_m.to_dict()}


@dataclass
class SeedsResult:
    """What :func:`run_compare_seeds` measured: ``runs`` maps each finished seed to its comparison."""

    out: Path
    seeds: list[int]
    methods: list[str]
    reference: str | None
    config: str
    runs: dict[int, CompareResult] = field(default_factory=dict)
    note: str = ""

    @property
    def first(self) -> CompareResult:
        """The first finished seed's comparison (tasks, metrics and protocol are the same on every seed)."""
        return next(iter(self.runs.values()))

    def protocol(self) -> dict[str, Any]:
        """The shared protocol: the first run's, with the seeds in place of its seed, plus the config."""
        protocol = {k: v for k, v in self.first.protocol.items() if k != "seed"}
        return {**protocol, "seeds": self.seeds, "methods": self.methods, "reference": self.reference,
                "config": self.config}

    def to_dict(self) -> dict[str, Any]:
        first = self.first
        return {"protocol": self.protocol(), "tasks": first.tasks, "primary_metrics": first.primary_metrics,
                "higher_is_better": first.higher_is_better, "baseline_method": BASELINE_METHOD,
                "reference": self.reference, "seeds": self.seeds, "seeds_done": list(self.runs),
                "notes": seed_notes(self),
                "aggregate": [m.to_dict() for m in aggregate(self.runs)],
                "paired": [{"reference": self.reference, "method": m, **d.to_dict()}
                           for m, d in paired(self.runs, self.reference).items()],
                "runs": {str(s): {"out": str(r.out), "baseline": str(r.baseline) if r.baseline else None,
                                  "note": r.note, "rows": [asdict(row) for row in r.rows]}
                         for s, r in self.runs.items()}}


def _values(runs: dict[int, CompareResult], method: str, value) -> dict[int, float | None]:
    """seed -> ``value(row)`` of ``method`` on the seeds where it succeeded."""
    rows = {s: r.row(method) for s, r in runs.items()}
    return {s: value(row) for s, row in rows.items() if row.status == "ok"}


def summarize_method(runs: dict[int, CompareResult], method: str) -> MethodSummary:
    """Mean ± sample std over the seeds where ``method`` succeeded (its parameters: over every seed)."""
    rows = {s: r.row(method) for s, r in runs.items()}
    tasks = next(iter(runs.values())).tasks
    return MethodSummary(
        method=method,
        seeds=[s for s, row in rows.items() if row.status == "ok"],
        failed={s: row.error or "" for s, row in rows.items() if row.status == "failed"},
        trainable_params=summarize([row.trainable_params for row in rows.values()]),
        primary={t: summarize(list(_values(runs, method, lambda row, t=t: row.primary.get(t)).values()))
                 for t in tasks},
        delta_m=summarize(list(_values(runs, method, lambda row: row.delta_m).values())),
    )


def aggregate(runs: dict[int, CompareResult]) -> list[MethodSummary]:
    """One :class:`MethodSummary` per method (in run order) from the per-seed comparisons."""
    if not runs:
        return []
    return [summarize_method(runs, row.method) for row in next(iter(runs.values())).rows]


def paired(runs: dict[int, CompareResult], reference: str | None,
           confidence: float = 0.95) -> dict[str, PairedDifference]:
    """method -> Delta_m of ``reference`` minus Delta_m of the method, paired by seed (only seeds where
    both have a Delta_m), with its t interval; empty without a reference."""
    if reference is None or not runs:
        return {}
    ours = _values(runs, reference, lambda row: row.delta_m)
    return {row.method: paired_difference(ours, _values(runs, row.method, lambda r: r.delta_m), confidence)
            for row in next(iter(runs.values())).rows if row.method != reference}


def seed_notes(result: SeedsResult) -> list[str]:
    """The notes of the whole run and of each seed (e.g. why a seed has no Delta_m)."""
    notes = [result.note] if result.note else []
    return notes + [f"seed {s}: {r.note}" for s, r in result.runs.items() if r.note]


