"""Boundary detection ODS-F, OIS-F and AP, following the BSDS / SEISM protocol (§4.6 of the metrics doc).

Per image and threshold t (``num_thresholds`` = n values, :func:`edge_thresholds`: the float64 values
of the decimals 0.01, 0.02, ..., 0.99 for n = 99 -- SEISM reads its HED parameters as text lines
``0.01`` ... ``0.99`` and ``str2double``s them --, in general the doubles nearest to k / (n + 1)):

1. ``bmap = pred >= max(eps, t)``: ``>=``, as BSDS ``evaluation_bdry_image`` (``pb >= thresh(t)``),
   Piotr's ``edgesEvalImg`` (``E >= max(eps, thrs(k))``) and the NMS version of SEISM's
   ``read_one_cont_png`` (``contour >= max(eps, str2double(parameter))``); other SEISM versions of
   ``read_one_cont_png`` use ``>``. It only matters for a value exactly on a threshold, e.g. a
   PNG-saved 51/255, which is exactly the double 0.2. The comparison is in float64 (predictions are
   converted exactly);
2. optionally thinned to 1-px lines (``thin=True``: MATLAB ``bwmorph(bmap, 'thin', Inf)``, which
   SEISM applies to predictions; here :func:`taskadapt.morphology.thin`); the GT is used as given
   unless ``thin_targets=True`` (below),
3. predicted boundary pixels are matched one-to-one to GT boundary pixels no farther than
   ``maxDist = tolerance * sqrt(H^2 + W^2)`` pixels (inclusive, on the pixel lattice),
4. ``cntP`` = matched predicted pixels of ``sumP`` predicted pixels, ``cntR`` = matched GT pixels of
   ``sumR`` GT pixels.

Several annotators (BSDS ``evaluation_bdry_image``; :class:`MultiAnnotatorEdgeMetric`): the thinned
prediction is matched one-to-one against each annotator's map k separately; a predicted pixel is
correct when it is matched for ANY annotator (``cntP = |union_k matched_k|``) and recall runs over
every annotator's pixels (``cntR = sum_k |matched GT_k|``, ``sumR = sum_k |GT_k|``). One annotator
(K = 1) is the single-GT case above: :func:`image_counts` has one code path for both. The matched
SET can differ between maximum matchings of equal size; BSDS takes the one of its min-cost
assignment, we take the one Dinic's max flow ends with, so with K > 1 ``cntP`` (the union) may
differ slightly from BSDS's -- the per-annotator ``cntR`` does not.

Matching (``exact=True``). BSDS ``correspondPixels`` solves a min-cost perfect assignment (Goldberg's
CSA) in which a real pair costs its distance (<= maxDist) and leaving a pixel unmatched costs
``outlierCost = 100 * maxDist``. Enlarging the matching along an augmenting path with k + 1 new pairs
saves two outlier costs (200 maxDist) and adds at most (k + 1) maxDist of distance, so the
minimum-cost assignment has maximum cardinality unless an augmenting path needs more than ~200
pairs (and unless BSDS's sparse random outlier graph -- degree 6, with a high-cost fallback
overlay -- bites). Only the COUNT of matches enters the score, so we compute a
maximum-cardinality bipartite matching (unit-capacity max flow, Dinic's algorithm in
``scipy.sparse.csgraph.maximum_flow``) on the graph of (pred, GT) pixel pairs within maxDist. That
equivalence argument is ours; the implementation is not verified against MATLAB output.

Wide ground truth (``thin_targets=True``). The protocol matches against thin (1-px) boundaries:
matching is one-to-one, so a GT band 2-3 px wide (NYUD's ``edge`` maps) leaves most GT pixels
unmatched by a thin prediction, and recall, hence F, collapses (an odsF of 0.42 was reported on
NYUD against ~0.82 elsewhere). ``thin_targets=True`` thins each binary target map (after binarising
at 0.5 and dropping ignored pixels) with the same :func:`taskadapt.morphology.thin` the predictions
get, before matching (``sumR`` then counts the thinned pixels). Off by default: whether a dataset's
GT needs it is the dataset format's call, and reports should say which was used.

Approximate matching (``exact=False``): a predicted pixel counts as matched when ANY GT pixel lies
within maxDist (Euclidean distance transform of the GT) and a GT pixel when any predicted pixel does
-- not one-to-one, so it over-counts matches for thick or doubled predictions (it is an upper
bound of the exact counts). Faster, but name it "approximate" wherever it is reported.

Aggregation (all states are "sum", DDP-exact):

* ODS: per-threshold counts summed over the split; P = cntP / sumP, R = cntR / sumR with SEISM's
  ``gather_measure`` conventions for empty sets (no GT and no match -> R = 1, P = 0; no prediction
  and no match -> R = 0, P = 1); F = 2PR / (P + R); ``odsF`` = max over thresholds (no
  interpolation between thresholds, as SEISM's ``general_ods``; BSDS/Piotr's code interpolates).
* OIS: as SEISM's ``general_ois`` for the ``fb`` measure: for each image pick the threshold with the
  best per-image F (first one on ties), add that image's four counts to four OIS sums, and compute
  F from the summed counts. (Some papers describe OIS as the mean of the per-image best F; that is
  a different number.)
* AP: as SEISM's ``general_ap``: keep one point per distinct recall (the lowest threshold's), linearly
  interpolate precision at recall 0, 0.01, ..., 1 within the observed recall range, sum / 100.
  Kept for comparability with published AP, with its quirks: a curve with a single recall value
  scores 0, and a perfect curve scores 1.01 (101 points / 100).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from torchmetrics import Metric

from taskadapt.metrics.inputs import bhw_pair
from taskadapt.morphology import thin

# ----------------------------------------------------------------------------------------------
# Per-image counts
# ----------------------------------------------------------------------------------------------


def edge_thresholds(num_thresholds: int) -> np.ndarray:
    """The n thresholds k / (n + 1), k = 1..n, each the double nearest to that fraction.

    For n = 99 these are exactly the decimal values 0.01, 0.02, ..., 0.99 as parsed from text (SEISM's
    HED parameter file, values written with ``'%.2f'``), and likewise the ``'%.2f'`` values whenever
    n + 1 divides 100 (n = 3, 9, 19, ...). ``linspace(1/(n+1), n/(n+1), n)`` is not: its
    ``start + i * step`` is one ulp off at 25 of the 99 values (e.g. 0.06, 0.15, 0.35), which puts a
    prediction exactly at such a value on the other side of ``>=``. One correctly rounded division of
    two exact integers gives the nearest double for any n.
    """
    n = int(num_thresholds)
    return np.arange(1, n + 1, dtype=np.float64) / float(n + 1)


def max_dist_pixels(tolerance: float, height: int, width: int) -> float:
    """The matching radius in pixels: ``tolerance`` times the image diagonal (BSDS)."""
    return float(tolerance) * math.hypot(height, width)


def _disk_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) of all lattice offsets with dy^2 + dx^2 <= radius^2."""
    r = int(math.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy * dy + dx * dx <= radius * radius
    return dy[keep].astype(np.int64), dx[keep].astype(np.int64)


def max_matching(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> tuple[int, np.ndarray]:
    """A maximum-cardinality matching of the bipartite graph with edges (rows[i], cols[i]).

    ``rows`` must be sorted ascending (as ``np.nonzero`` returns them). Returns ``(size, matched)``:
    the matching's size and an ``(n_rows,)`` bool mask of the rows it uses (the multi-annotator
    protocol needs the matched predicted pixel SET, not only its size). Solved as a unit-capacity
    maximum flow with Dinic's algorithm (equivalent to Hopcroft-Karp, O(E sqrt(V))); a row is
    matched when one unit flows from the source into it. scipy's ``maximum_bipartite_matching``
    gives the same count but took > 100 ms on some boundary graphs of a few thousand edges where
    Dinic takes ~1 ms.
    """
    matched = np.zeros(n_rows, dtype=bool)
    if rows.size == 0:
        return 0, matched
    # nodes: 0 = source, 1..n_rows = predicted pixels, then n_cols GT pixels, last = sink
    n = n_rows + n_cols + 2
    m = rows.size
    indptr = np.concatenate(
        [
            [0, n_rows],
            n_rows + np.cumsum(np.bincount(rows, minlength=n_rows)),
            n_rows + m + np.arange(1, n_cols + 1),
            [n_rows + m + n_cols],
        ]
    )
    indices = np.concatenate([np.arange(1, n_rows + 1), cols + n_rows + 1, np.full(n_cols, n - 1)])
    graph = csr_matrix(
        (np.ones(indices.size, dtype=np.int32), indices.astype(np.int32), indptr.astype(np.int32)),
        shape=(n, n),
    )
    result = maximum_flow(graph, 0, n - 1, method="dinic")
    flow = result.flow.tocsr()
    lo, hi = flow.indptr[0], flow.indptr[1]  # row 0: the source's edges into the predicted pixels
    targets, values = flow.indices[lo:hi], flow.data[lo:hi]
    used = targets[(values > 0) & (targets >= 1) & (targets <= n_rows)]
    matched[used - 1] = True
    return int(result.flow_value), matched


def max_matching_size(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> int:
    """Size of a maximum-cardinality matching (:func:`max_matching` without the matched set)."""
    return max_matching(rows, cols, n_rows, n_cols)[0]


def image_counts(
    pred: np.ndarray,
    gt: np.ndarray,
    thresholds: np.ndarray,
    max_dist: float,
    *,
    exact: bool = True,
    thin_pred: bool = True,
) -> np.ndarray:
    """BSDS counts of one image at every threshold, against one or several annotators.

    pred: (H, W) float in [0, 1] (ignored pixels set to -inf); gt: (H, W) bool (one annotator) or
    (K, H, W) bool (K annotators, matched all at once as in the module docstring).
    Returns a (4, T) int64 array of rows cntP, sumP, cntR, sumR.
    """
    gts = np.asarray(gt, dtype=bool)
    if gts.ndim == 2:
        gts = gts[None]
    if gts.ndim != 3 or gts.shape[1:] != pred.shape:
        raise ValueError(f"edge GT must be (H, W) or (K, H, W) with (H, W) = {pred.shape}, got {gts.shape}")
    num_gt, h, w = gts.shape
    t = len(thresholds)
    out = np.zeros((4, t), dtype=np.int64)
    out[3] = int(gts.sum())

    # padded flat-index lattice so that neighbour look-ups need no bounds checks
    pad = int(math.floor(max_dist)) + 1
    wp = w + 2 * pad
    dy, dx = _disk_offsets(max_dist)
    flat_offsets = dy * wp + dx
    gt_flat, gt_ids, dist_gts = [], [], []
    for k in range(num_gt):
        gy, gx = np.nonzero(gts[k])
        gt_flat.append((gy + pad) * wp + (gx + pad))
        if exact:
            ids = np.full((h + 2 * pad) * wp, -1, dtype=np.int64)
            ids[gt_flat[k]] = np.arange(gy.size)
            gt_ids.append(ids)
        else:
            # distance from every pixel to the nearest GT pixel, once per image and annotator
            dist_gts.append(ndimage.distance_transform_edt(~gts[k]) if gy.size else np.full((h, w), np.inf))

    # thresholds that select the same pixel set give the same counts: detect them by set size
    flat_pred = pred.ravel()
    sorted_vals = np.sort(flat_pred)
    effective = np.maximum(thresholds, np.finfo(np.float64).eps)
    sizes = flat_pred.size - np.searchsorted(sorted_vals, effective, side="left")

    prev_size = -1
    for j in range(t):
        if sizes[j] == prev_size:
            out[:3, j] = out[:3, j - 1]
            continue
        prev_size = sizes[j]
        if sizes[j] == 0:
            continue  # no predicted pixel: cntP = sumP = cntR = 0 here and at all higher thresholds
        bmap = pred >= effective[j]  # >= as BSDS, Piotr's and SEISM's NMS reader (module docstring); float64
        if thin_pred:
            bmap = thin(bmap)
        py, px = np.nonzero(bmap)
        out[1, j] = py.size
        if not py.size:
            continue
        pflat = (py + pad) * wp + (px + pad)
        matched_pred = np.zeros(py.size, dtype=bool)  # OR over annotators
        cnt_r = 0
        if not exact:
            pred_pad = np.zeros((h + 2 * pad) * wp, dtype=bool)
            pred_pad[pflat] = True
        for k in range(num_gt):
            if not gt_flat[k].size:
                continue
            if exact:
                cand = gt_ids[k][pflat[:, None] + flat_offsets[None, :]]
                rows, slots = np.nonzero(cand >= 0)
                if not rows.size:
                    continue
                size, used = max_matching(rows, cand[rows, slots], py.size, gt_flat[k].size)
                matched_pred |= used
                cnt_r += size
            else:
                matched_pred |= dist_gts[k][py, px] <= max_dist
                cnt_r += int(pred_pad[gt_flat[k][:, None] + flat_offsets[None, :]].any(axis=1).sum())
        out[0, j] = int(matched_pred.sum())
        out[2, j] = cnt_r
    return out


def _f_measure(cnt_p, sum_p, cnt_r, sum_r) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F with SEISM's conventions for empty sets (arrays of any shape)."""
    cnt_p, sum_p, cnt_r, sum_r = (np.asarray(a, dtype=np.float64) for a in (cnt_p, sum_p, cnt_r, sum_r))
    prec = np.zeros_like(sum_p)
    rec = np.zeros_like(sum_p)
    no_gt = (sum_r == 0) & (cnt_p == 0)
    rec[no_gt], prec[no_gt] = 1.0, 0.0
    no_pred = (sum_p == 0) & (cnt_r == 0)
    rec[no_pred], prec[no_pred] = 0.0, 1.0
    both = (sum_p != 0) & (cnt_r != 0)
    rec[both] = cnt_r[both] / sum_r[both]
    prec[both] = cnt_p[both] / sum_p[both]
    denom = prec + rec
    f = np.where(denom > 0, 2 * prec * rec / np.where(denom > 0, denom, 1.0), 0.0)
    return prec, rec, f


def _per_image_f(counts: np.ndarray) -> np.ndarray:
    """Per-image F at each threshold, SEISM ``eval_cont`` conventions; counts (4, T)."""
    cnt_p, sum_p, cnt_r, sum_r = counts.astype(np.float64)
    if sum_r[0] == 0:  # no GT: recall 1, precision 0 everywhere
        return np.zeros_like(cnt_p)
    safe_p = np.where(sum_p > 0, sum_p, 1.0)
    prec = np.where(sum_p > 0, cnt_p / safe_p, 1.0)
    rec = np.where(sum_p > 0, cnt_r / sum_r, 0.0)
    denom = prec + rec
    return np.where(denom > 0, 2 * prec * rec / np.where(denom > 0, denom, 1.0), 0.0)


def average_precision(prec: np.ndarray, rec: np.ndarray) -> float:
    """SEISM ``general_ap``: mean of precision interpolated at recall 0, 0.01, ..., 1 (observed range)."""
    rec_u, first = np.unique(rec, return_index=True)
    if rec_u.size < 2:
        return 0.0
    grid = np.arange(101) / 100.0
    grid = grid[(grid >= rec_u[0]) & (grid <= rec_u[-1])]
    return float(np.interp(grid, rec_u, prec[first]).sum() / 100.0)


# ----------------------------------------------------------------------------------------------
# Metric
# ----------------------------------------------------------------------------------------------


class EdgeMetric(Metric):
    """ODS-F, OIS-F and AP of boundary maps with BSDS-style tolerant one-to-one matching.

    ``update(preds, target)``: preds ``(B, 1, H, W)`` or ``(B, H, W)`` boundary probabilities in
    [0, 1]; target same shape, {0, 1} (binarised at 0.5), NaN = ignore (dropped from both maps).
    ``compute()``: ``{"odsF", "oisF", "AP", "ods_threshold"}`` as 0-d float tensors (scores in
    [0, 1]). ``tolerance``: maxDist as a fraction of the image diagonal (0.0075 PASCAL-Context,
    0.011 NYUD). ``exact=False`` selects the approximate (distance-transform) matcher. ``thin``:
    thin each thresholded prediction to 1-px lines (SEISM). ``thin_targets`` (default False): also
    thin each binarised target map with the same :func:`taskadapt.morphology.thin` before matching,
    for datasets whose boundary GT is wider than 1 px (NYUD's 2-3 px maps; the module docstring says
    why). Off by default; the dataset format decides, and a report should say which was used.

    The per-image work runs on the CPU in numpy/scipy (tensors are copied there).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    primary: str = "odsF"
    #: what a summary table shows for the task, primary first
    shown: tuple[str, ...] = ("odsF",)
    directions: dict[str, bool] = {"odsF": True, "oisF": True, "AP": True}

    def __init__(
        self,
        tolerance: float = 0.011,
        num_thresholds: int = 99,
        exact: bool = True,
        thin: bool = True,
        thin_targets: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not tolerance > 0:
            raise ValueError(f"edge tolerance must be > 0 (fraction of the image diagonal), got {tolerance}")
        if num_thresholds < 1:
            raise ValueError(f"num_thresholds must be >= 1, got {num_thresholds}")
        self.tolerance = float(tolerance)
        self.exact = bool(exact)
        self.thin = bool(thin)
        self.thin_targets = bool(thin_targets)
        self.thresholds = edge_thresholds(num_thresholds)
        t = len(self.thresholds)
        for name in ("cnt_p", "sum_p", "cnt_r", "sum_r"):
            self.add_state(name, default=torch.zeros(t, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("ois_counts", default=torch.zeros(4, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target = bhw_pair(preds, target, "edge")
        p_np = preds.detach().to("cpu", torch.float64).numpy()
        t_np = target.detach().to("cpu", torch.float64).numpy()
        ignore = np.isnan(t_np)
        if not np.isfinite(p_np[~ignore]).all():
            raise ValueError("edge predictions contain NaN or inf at valid pixels")
        p_np = np.where(ignore, -np.inf, p_np)
        g_np = self._prepare_targets((t_np > 0.5) & ~ignore)
        h, w = p_np.shape[1:]
        max_dist = max_dist_pixels(self.tolerance, h, w)
        self._add_images(
            [
                image_counts(p_np[i], g_np[i], self.thresholds, max_dist, exact=self.exact, thin_pred=self.thin)
                for i in range(p_np.shape[0])
            ]
        )

    def _prepare_targets(self, maps: np.ndarray) -> np.ndarray:
        """(N, H, W) bool target maps, each thinned to 1-px lines when ``thin_targets`` (as the predictions)."""
        if not self.thin_targets:
            return maps
        return np.stack([thin(m) for m in maps]) if len(maps) else maps

    def _add_images(self, per_image: list[np.ndarray]) -> None:
        """Add the (4, T) counts of each image to the split sums and the OIS sums."""
        total = np.zeros((4, len(self.thresholds)), dtype=np.int64)
        ois = np.zeros(4, dtype=np.int64)
        for counts in per_image:
            total += counts
            ois += counts[:, int(np.argmax(_per_image_f(counts)))]
        dev = self.cnt_p.device
        self.cnt_p += torch.from_numpy(total[0]).to(dev)
        self.sum_p += torch.from_numpy(total[1]).to(dev)
        self.cnt_r += torch.from_numpy(total[2]).to(dev)
        self.sum_r += torch.from_numpy(total[3]).to(dev)
        self.ois_counts += torch.from_numpy(ois).to(dev)
        self.num_images += len(per_image)

    def compute(self) -> dict[str, torch.Tensor]:
        dev = self.cnt_p.device
        if int(self.num_images) == 0:
            nan = torch.tensor(math.nan, device=dev)
            return {"odsF": nan, "oisF": nan.clone(), "AP": nan.clone(), "ods_threshold": nan.clone()}
        counts = [s.cpu().numpy() for s in (self.cnt_p, self.sum_p, self.cnt_r, self.sum_r)]
        prec, rec, f = _f_measure(*counts)
        best = int(np.argmax(f))
        _, _, ois_f = _f_measure(*self.ois_counts.cpu().numpy())

        def scalar(v: float) -> torch.Tensor:
            return torch.tensor(float(v), dtype=torch.float32, device=dev)

        return {
            "odsF": scalar(f[best]),
            "oisF": scalar(ois_f),
            "AP": scalar(average_precision(prec, rec)),
            "ods_threshold": scalar(self.thresholds[best]),
        }


def image_scores(counts: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """One image's best F, the threshold giving it (first on ties) and its AP, from (4, T) counts."""
    f = _per_image_f(counts)
    best = int(np.argmax(f))
    prec, rec, _ = _f_measure(*counts)
    return {"F": float(f[best]), "threshold": float(thresholds[best]), "AP": average_precision(prec, rec)}


class MultiAnnotatorEdgeMetric(EdgeMetric):
    """:class:`EdgeMetric` against all annotators of an image at once (BSDS ``evaluation_bdry_image``).

    ``update(preds, target)``: ONE image per call (images of a split may differ in size and in their
    number of annotators): preds ``(H, W)`` or ``(1, H, W)`` boundary probabilities in [0, 1];
    target ``(K, H, W)`` {0, 1} boundary maps of its K annotators (binarised at 0.5; NaN = ignore, a
    pixel ignored by any annotator is dropped from every map and from the prediction). After each
    update ``last_counts`` holds that image's (4, T) counts (for per-image reports; not a state).
    ``compute()`` and the states are :class:`EdgeMetric`'s. ``tolerance`` defaults to BSDS's 0.0075;
    ``thin_targets`` thins each annotator's map separately (off by default, as in :class:`EdgeMetric`).
    """

    def __init__(self, tolerance: float = 0.0075, num_thresholds: int = 99, exact: bool = True,
                 thin: bool = True, thin_targets: bool = False, **kwargs):
        super().__init__(tolerance=tolerance, num_thresholds=num_thresholds, exact=exact, thin=thin,
                         thin_targets=thin_targets, **kwargs)
        self.last_counts: np.ndarray | None = None

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        p_np = torch.as_tensor(preds).detach().to("cpu", torch.float64).numpy()
        t_np = torch.as_tensor(target).detach().to("cpu", torch.float64).numpy()
        if p_np.ndim == 3 and p_np.shape[0] == 1:
            p_np = p_np[0]
        if p_np.ndim != 2 or t_np.ndim != 3 or t_np.shape[1:] != p_np.shape or t_np.shape[0] < 1:
            raise ValueError(f"edge preds must be (H, W) and target (K, H, W) of one image with K >= 1 annotators, "
                             f"got {tuple(p_np.shape)} and {tuple(t_np.shape)}")
        ignore = np.isnan(t_np).any(axis=0)
        if not np.isfinite(p_np[~ignore]).all():
            raise ValueError("edge predictions contain NaN or inf at valid pixels")
        p_np = np.where(ignore, -np.inf, p_np)
        g_np = self._prepare_targets((t_np > 0.5) & ~ignore)
        max_dist = max_dist_pixels(self.tolerance, *p_np.shape)
        counts = image_counts(p_np, g_np, self.thresholds, max_dist, exact=self.exact, thin_pred=self.thin)
        self.last_counts = counts
        self._add_images([counts])
