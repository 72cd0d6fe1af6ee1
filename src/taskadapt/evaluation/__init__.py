"""Evaluation: scoring trained runs on dataset splits with the field's metrics, and showing the results.

* :mod:`.loaders` -- opening a split with clear errors; the deterministic eval loader and the one resize
  to the model's input size (shared with :class:`taskadapt.api.Predictor`);
* :mod:`.loop` -- :func:`evaluate`: a model over a loader, metrics at the labels' resolution, DDP-summable;
* :mod:`.scoring` -- :func:`evaluate_run` (the one path of eval, compare, the settings and the demo) and
  :func:`evaluate_checkpoint` (``taskadapt eval``: metrics.json, report.md, Delta_m);
* :mod:`.report` -- report.md and the terminal table;
* :mod:`.predictions` (``taskadapt predict``) and :mod:`.affinity` (``taskadapt affinity``) -- pictures of a
  checkpoint's predictions and of its task affinity.
"""

from taskadapt.evaluation.loaders import eval_loader, open_split, resize_to_input
from taskadapt.evaluation.loop import OnDevice, evaluate, make_metrics
from taskadapt.evaluation.report import metrics_table, report_markdown
from taskadapt.evaluation.scoring import eval_section, evaluate_checkpoint, evaluate_run

__all__ = ["OnDevice", "eval_loader", "eval_section", "evaluate", "evaluate_checkpoint", "evaluate_run",
           "make_metrics", "metrics_table", "open_split", "report_markdown", "resize_to_input"]
