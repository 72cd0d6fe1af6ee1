"""Novel domains without fine-tuning (method.md §8): ``taskadapt eval CKPT [CKPT ...] --data A --data B ...``.

Every checkpoint is scored, unchanged, on the test split of every dataset (the first ``--data`` is
the in-domain reference); the table gives each task's metrics per domain and the relative drop from
the in-domain value on the primary metric (positive = worse, whatever the metric's direction).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taskadapt.distributed import is_main_process
from taskadapt.errors import ConfigError
from taskadapt.evaluation.loaders import available_splits
from taskadapt.evaluation.scoring import evaluate_checkpoint
from taskadapt.io import write_json, write_text
from taskadapt.run import Run
from taskadapt.settings.common import fmt, markdown_table, metric_header, rich_table, shown_metrics
from taskadapt.tasks import get_task


@dataclass
class Domain:
    name: str
    root: str
    format: str | None = None


@dataclass
class DomainsResult:
    domains: list[Domain]
    models: list[str]
    checkpoints: list[str]
    split: str | None
    metrics: dict[str, dict[str, dict[str, dict[str, float]]]]  # model -> domain -> task -> metric -> value
    drops: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # model -> domain -> task -> drop

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_domain(spec: str, fmt: str | None = None) -> Domain:
    """``NAME=DIR``, ``NAME=FORMAT:DIR`` or ``DIR`` (the name is then the folder's name); ``fmt`` is the
    format of entries that name none (None: the checkpoint's own)."""
    from taskadapt.data.datasets import list_formats

    name, sep, root = spec.partition("=")
    if not sep:
        name, root = Path(spec.rstrip("/")).name or spec, spec
    prefix, colon, rest = root.partition(":")
    if colon and prefix in list_formats():
        fmt, root = prefix, rest
    if not name or not root:
        raise ConfigError(f"--data '{spec}' must be FOLDER, NAME=FOLDER or NAME=FORMAT:FOLDER "
                          "(e.g. --data dusk=runs/scenes/dusk --data nyud=nyud:/datasets/NYUD_MT)")
    return Domain(name, root, fmt)


def default_split(own_format: str, domain: Domain) -> str | None:
    """None (the checkpoint's own test split) on the checkpoint's format ``own_format``; on another
    format that format's ``test`` split, else ``val`` (NYUD's test set)."""
    if domain.format is None or domain.format == own_format:
        return None
    available = available_splits(domain.format, domain.root) or []
    return next((s for s in ("test", "val") if s in available), None)


def relative_drop(task: str, in_domain: float, other: float) -> float | None:
    """(other - in) / in for lower-is-better metrics, (in - other) / in for higher-is-better; + = worse."""
    if abs(in_domain) < 1e-12:
        return None
    change = (other - in_domain) / abs(in_domain)
    return -change if get_task(task).higher_is_better else change


def model_name(checkpoint: Path, used: set[str]) -> str:
    """A short unique label: the run folder's name (``.../<run>/checkpoints/best.safetensors``)."""
    parts = checkpoint.absolute().parts
    name = parts[-3] if len(parts) >= 3 and parts[-2] == "checkpoints" else checkpoint.stem
    base, k = name, 2
    while name in used:
        name, k = f"{base}-{k}", k + 1
    used.add(name)
    return name


def evaluate_domains(checkpoints: list[str | os.PathLike], domains: list[Domain], split: str | None = None,
                     out: str | os.PathLike = "runs/domains", progress: bool = True,
                     device: str | None = None) -> DomainsResult:
    """Score every checkpoint on every domain; write ``domains.json`` and ``domains.md`` to ``out``."""
    if not checkpoints or not domains:
        raise ConfigError("give at least one checkpoint and one --data folder")
    out = Path(out)
    names = [d.name for d in domains]
    if len(set(names)) != len(names):
        raise ConfigError(f"two --data entries are named alike ({names}); name them: --data NAME=FOLDER")
    used: set[str] = set()
    models, metrics, drops = [], {}, {}
    for ckpt in checkpoints:
        label = model_name(Path(ckpt), used)
        models.append(label)
        metrics[label], drops[label] = {}, {}
        own_format = Run.open(ckpt).config.data.format
        for d in domains:
            doc = evaluate_checkpoint(ckpt, data=d.root, format=d.format, split=split or default_split(own_format, d),
                                      out=str(out / _safe(label) / _safe(d.name)), progress=progress, device=device)
            metrics[label][d.name] = doc["metrics"]
        reference = metrics[label][domains[0].name]
        for d in domains[1:]:
            drops[label][d.name] = {}
            for task, values in metrics[label][d.name].items():
                primary = get_task(task).primary_metric
                if task in reference and primary in values:
                    drops[label][d.name][task] = relative_drop(task, reference[task][primary], values[primary])
    result = DomainsResult(domains, models, [str(c) for c in checkpoints], split, metrics, drops)
    if is_main_process():  # under torchrun every rank has the results; one writes
        write_json(out / "domains.json", result.to_dict())
        write_text(out / "domains.md", domains_markdown(result))
    return result


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _table(result: DomainsResult) -> tuple[list[str], list[list[str]]]:
    tasks: list[str] = []
    for per_domain in result.metrics.values():
        for per_task in per_domain.values():
            tasks += [t for t in per_task if t not in tasks]
    sample = {t: next(m[d.name][t] for m in result.metrics.values() for d in result.domains if t in m[d.name])
              for t in tasks}
    columns = [(t, n) for t in tasks for n in shown_metrics(t, sample[t])[:1]]
    header = ["model", "domain"] + [metric_header(t, n) for t, n in columns]
    rows = []
    reference = result.domains[0].name
    for model in result.models:
        for d in result.domains:
            cells = [model, d.name + (" (in-domain)" if d.name == reference else "")]
            for t, n in columns:
                value = result.metrics[model][d.name].get(t, {}).get(n)
                drop = result.drops.get(model, {}).get(d.name, {}).get(t)
                cells.append(fmt(value) + (f" ({100 * drop:+.1f} %)" if drop is not None else ""))
            rows.append(cells)
    return header, rows


def domains_markdown(result: DomainsResult) -> str:
    header, rows = _table(result)
    return ("# Novel domains without fine-tuning\n\n"
            f"Each model is applied unchanged to the test split of every domain; in brackets, the relative drop "
            f"of the primary metric from the in-domain value ({result.domains[0].name}); positive = worse.\n\n"
            + markdown_table(header, rows))


def domains_table(result: DomainsResult):
    header, rows = _table(result)
    return rich_table("novel domains without fine-tuning (relative drop from in-domain, + = worse)", header, rows)
