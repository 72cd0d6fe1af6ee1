"""Compare methods on one protocol: same data, schedule and seed; test-split metrics, parameters, Delta_m.

``run_compare(cfg, methods, out=...)`` trains every method of ``methods`` (default: every registered
method, ``stl`` first because it is the Delta_m baseline) with ``cfg`` changed only in
``model.method``, evaluates each on ``data.test_split`` with the exact edge matcher (unless
``exact_edges=False``), counts its trainable parameters and computes Delta_m (survey Eq. 10,
:mod:`taskadapt.metrics.delta_m`) against ``stl`` on each task's primary metric. It writes::

    out/<method>/          the method's training run (checkpoints, logs; see the trainer)
    out/baseline_stl.json  the Delta_m baseline made from stl's test results
    out/compare.json       protocol, primary metrics and one row per method (all test metrics)
    out/compare.md         the table: method, trainable params, one primary metric per task, Delta_m %

A method that fails (diverges, runs out of memory, ...) becomes a ``failed`` row carrying its error;
the other methods still run. Both summary files are rewritten (atomically) after every method, so an
interrupted comparison leaves the rows finished so far. Running the comparison again on the same
``out`` reuses every finished run whose configuration is unchanged, resumes unfinished ones from
their last checkpoint and retrains failed ones.

``run_compare_seeds(cfg, methods, seeds, out=...)`` repeats that comparison once per seed (only
``seed`` changes: the initialisation, the batch order and augmentations, and the validation images
carved from training; the dataset and its test split stay the same), each in ``out/seed<s>/`` with
its own ``stl`` baseline, so Delta_m on seed s is against ``stl`` of seed s. It then writes::

    out/seed<s>/           one single-seed comparison per seed (the layout above)
    out/compare.json       protocol (config YAML, seeds, methods, reference), every run's test metrics,
                           the per-method aggregate and the paired differences against the reference
    out/compare.md         table 1: mean ± sample std over seeds per method; table 2: the reference
                           method minus each other method in Delta_m, paired by seed, with a 95 % t
                           interval and a verdict (:mod:`taskadapt.metrics.paired`)

Both summary files are rewritten after every finished seed.

Modules: :mod:`.results` (the rows and their aggregation over seeds, as data), :mod:`.runs` (planning and
running the methods and seeds), :mod:`.tables` (compare.md / compare.json and the terminal tables).
"""

from taskadapt.settings.compare.results import CompareResult, SeedsResult
from taskadapt.settings.compare.runs import ensure_trained, resolve_seeds, run_compare, run_compare_seeds
from taskadapt.settings.compare.tables import compare_table, seeds_tables

__all__ = ["CompareResult", "SeedsResult", "compare_table", "ensure_trained", "resolve_seeds", "run_compare",
           "run_compare_seeds", "seeds_tables"]
