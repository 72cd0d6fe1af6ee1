"""Real photographs (``taskadapt eval-real``): a trained model, unchanged, against human / sensor ground truth.

For every folder (:mod:`taskadapt.data.real`; edges in ``bsds`` layout, depth as ``depth_png`` or
``middlebury``) the model's full-resolution prediction (``taskadapt.load(ckpt).predict(photo)``: the
photo is resized -- squashed, aspect ratio not kept -- to the model's square input and the outputs
resized back) and every trivial baseline of :mod:`taskadapt.baselines` are scored the same way:

* edges -- ODS-F, OIS-F and AP against all annotators of an image at once
  (:class:`~taskadapt.metrics.edges.MultiAnnotatorEdgeMetric`: exact one-to-one matching, thinned
  predictions, 99 thresholds, maxDist = ``edge_tolerance`` x the image diagonal, 0.0075 as BSDS).
  The ground truth is thinned too (``thin_gt``, default on) with :func:`taskadapt.morphology.thin`:
  a no-op on BSDS maps, which are 1 px wide already, but the NYUD boundary maps of the shared set are
  2-3 px wide in places (thinning removes 16 % of their pixels), and each GT pixel needs its own
  matched predicted pixel, so a 1-px thinned prediction could never recall a wide GT band. The
  BSDS protocol thins predictions only, because its GT is thin by construction; thinning a wide GT
  restores that premise. Measured on the 5 shared NYUD images: Sobel odsF 0.601 -> 0.606, Canny
  0.614 -> 0.642 (``--no-thin-gt`` uses the maps as stored).
* depth -- per-image least-squares scale and, separately, median scaling, then SILog (natural log,
  not x100), AbsRel, RMSE and delta < 1.25^k on the valid pixels, averaged over images
  (:class:`~taskadapt.metrics.depth_aligned.AlignedDepthMetric`).

Writes ``metrics.json`` and ``report.md`` (atomically) and, per image, a picture sheet
``sheets/<folder>/<id>.png`` (photo, ground truth, model, the image's best baseline; per-image scores in
the titles). A folder whose task the checkpoint does not predict is skipped with a note; when no
folder is left, that is an error.

Modules: :mod:`.protocols` (one class per task: everything edges and depth do differently),
:mod:`.evaluate` (the flow, task-blind) and :mod:`.report` (tables and ``report.md``).
"""

from __future__ import annotations

from taskadapt.settings.real_images.evaluate import evaluate_real
from taskadapt.settings.real_images.protocols import (
    PROTOCOLS,
    DepthRealProtocol,
    EdgeRealProtocol,
    RealOptions,
    RealProtocol,
    at_input_size,
)
from taskadapt.settings.real_images.report import folder_table, real_tables, report_markdown

__all__ = ["PROTOCOLS", "DepthRealProtocol", "EdgeRealProtocol", "RealOptions", "RealProtocol", "at_input_size",
           "evaluate_real", "folder_table", "real_tables", "report_markdown"]
