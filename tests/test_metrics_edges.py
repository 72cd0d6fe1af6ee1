"""EdgeMetric: BSDS/SEISM-style ODS/OIS/AP, one-to-one matching (metrics doc §4.6; thinning: test_morphology)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from taskadapt.metrics import EdgeMetric
from taskadapt.metrics.edges import (
    MultiAnnotatorEdgeMetric,
    average_precision,
    edge_thresholds,
    image_counts,
    max_dist_pixels,
    max_matching_size,
)
from taskadapt.morphology import thin


def _run(pred: np.ndarray, gt: np.ndarray, **kw) -> dict[str, float]:
    m = EdgeMetric(**kw)
    m.update(torch.from_numpy(pred).float()[None, None], torch.from_numpy(gt).float()[None, None])
    return {k: v.item() for k, v in m.compute().items()}


def _square_outline(size: int, lo: int, hi: int) -> np.ndarray:
    gt = np.zeros((size, size), dtype=bool)
    gt[lo, lo:hi] = gt[hi - 1, lo:hi] = gt[lo:hi, lo] = gt[lo:hi, hi - 1] = True
    return gt


def _blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    return ndimage.gaussian_filter(rng.random((size, size)), 2.0) > 0.52


# --- thresholds, radius, AP -----------------------------------------------------------------


def test_thresholds_and_radius():
    thr = edge_thresholds(99)
    assert thr[0] == pytest.approx(0.01) and thr[-1] == pytest.approx(0.99) and len(thr) == 99
    assert max_dist_pixels(0.011, 300, 400) == pytest.approx(5.5)
    assert max_dist_pixels(0.0075, 300, 400) == pytest.approx(3.75)


def test_average_precision_hand_computed():
    # thresholds ascending: recall falls, precision rises
    prec = np.array([0.5, 0.8, 1.0])
    rec = np.array([1.0, 0.5, 0.0])
    # sum of P interpolated at 0, .01, ..., 1 = 45.9 + 32.35 (two linear pieces), divided by 100
    assert average_precision(prec, rec) == pytest.approx(0.7825)
    # a single recall value is a degenerate curve: AP 0 (SEISM general_ap / BSDS)
    assert average_precision(np.array([1.0, 1.0]), np.array([0.5, 0.5])) == 0.0


# --- matching -------------------------------------------------------------------------------


def test_max_matching_size_agrees_with_scipy_hopcroft_karp():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n1, n2 = rng.integers(1, 40, 2)
        dense = rng.random((n1, n2)) < rng.uniform(0.02, 0.3)
        rows, cols = np.nonzero(dense)
        ref = (maximum_bipartite_matching(csr_matrix(dense.astype(np.int8)), perm_type="column") >= 0).sum()
        assert max_matching_size(rows, cols, n1, n2) == ref


def test_perfect_prediction_scores_one():
    gt = _square_outline(64, 10, 50)
    r = _run(gt * 0.9, gt, thin=False)  # (thinning would drop the 4 corner pixels: F 0.987)
    assert r["odsF"] == pytest.approx(1.0) and r["oisF"] == pytest.approx(1.0)
    # PR curve: (R=1, P=1) up to 0.9, then no prediction (R=0, P=1): SEISM's sum/100 over 101
    # recall points gives 1.01 for a perfect curve (kept for comparability with published AP)
    assert r["AP"] == pytest.approx(1.01)
    assert r["ods_threshold"] == pytest.approx(0.01)


def test_shift_within_tolerance_matches_and_beyond_does_not():
    gt = np.zeros((100, 100), dtype=bool)
    gt[50, 10:90] = True  # maxDist = 0.011 * 141.4 = 1.56 px
    assert _run(np.roll(gt, 1, axis=0) * 1.0, gt)["odsF"] == pytest.approx(1.0)
    assert _run(np.roll(gt, 2, axis=0) * 1.0, gt)["odsF"] == 0.0
    # the radius scales with the diagonal: on a 200x200 image (maxDist 3.1 px) a 2-px shift matches
    gt2 = np.zeros((200, 200), dtype=bool)
    gt2[100, 20:180] = True
    assert _run(np.roll(gt2, 2, axis=0) * 1.0, gt2)["odsF"] == pytest.approx(1.0)


def test_matching_is_one_to_one():
    gt = np.zeros((100, 100), dtype=bool)
    gt[50, 10:90] = True
    double = gt | np.roll(gt, 1, axis=0)  # a 2-px thick prediction of a 1-px GT line
    thr = edge_thresholds(9)
    md = max_dist_pixels(0.011, 100, 100)
    cnt_p, sum_p, cnt_r, sum_r = image_counts(double * 1.0, gt, thr, md, thin_pred=False)[:, 0]
    assert (cnt_p, sum_p, cnt_r, sum_r) == (80, 160, 80, 80)  # precision 0.5, recall 1
    # the approximate matcher is not one-to-one: every doubled pixel finds a GT neighbour
    approx = image_counts(double * 1.0, gt, thr, md, exact=False, thin_pred=False)[:, 0]
    assert tuple(approx) == (160, 160, 80, 80)
    # thinning removes the doubling before matching (and shortens the line by one end pixel)
    assert tuple(image_counts(double * 1.0, gt, thr, md)[:, 0]) == (79, 79, 79, 80)


def test_hand_computed_counts_and_scores():
    gt = np.zeros((10, 10), dtype=bool)
    gt[2, 2:5] = True  # GT pixels (2,2), (2,3), (2,4)
    pred = np.zeros((10, 10))
    pred[3, 3] = pred[3, 4] = 0.8  # within 1 px of the GT line
    pred[6, 6] = 0.3  # far from every GT pixel
    tolerance = 1.5 / math.hypot(10, 10)  # maxDist = 1.5 px
    counts = image_counts(pred, gt, edge_thresholds(3), 1.5, thin_pred=False)  # thresholds .25 .5 .75
    assert counts.tolist() == [[2, 2, 2], [3, 2, 2], [2, 2, 2], [3, 3, 3]]
    r = _run(pred, gt, tolerance=tolerance, num_thresholds=3, thin=False)
    # F = [2/3, 0.8, 0.8]; the first best threshold wins
    assert r["odsF"] == pytest.approx(0.8) and r["ods_threshold"] == pytest.approx(0.5)
    assert r["oisF"] == pytest.approx(0.8)
    assert r["AP"] == 0.0  # recall is 2/3 at every threshold: degenerate curve


def test_ois_sums_counts_at_each_image_best_threshold():
    line = np.zeros((40, 40), dtype=bool)
    line[20, 5:35] = True
    clutter = np.zeros((40, 40), dtype=bool)
    clutter[5, 5:35] = True
    img_a = line * 0.8 + clutter * 0.3  # best alone at t > 0.3
    img_b = line * 0.2 + clutter * 0.6  # best alone at t <= 0.2
    m = EdgeMetric(num_thresholds=9, thin=False)
    m.update(
        torch.from_numpy(np.stack([img_a, img_b])).float()[:, None],
        torch.from_numpy(np.stack([line, line])).float()[:, None],
    )
    r = {k: v.item() for k, v in m.compute().items()}
    # image a at t >= 0.4: 30/30 matched; image b at t <= 0.2: 30 of 60 predicted, recall 1
    p, rec = 60 / 90, 60 / 60
    assert r["oisF"] == pytest.approx(2 * p * rec / (p + rec))
    assert r["oisF"] > r["odsF"]


def test_ignored_pixels_are_dropped_from_both_maps():
    gt = np.zeros((40, 40))
    gt[20, 5:35] = 1
    pred = gt.copy()
    pred[5, 5:35] = 1  # a false positive line ...
    gt[3:8, :] = np.nan  # ... inside an ignored region
    assert _run(pred, gt, thin=False)["odsF"] == pytest.approx(1.0)


def test_batched_update_equals_single_updates():
    rng = np.random.default_rng(3)
    gts = np.stack([_blobs(rng, 48) ^ ndimage.binary_erosion(_blobs(rng, 48)) for _ in range(3)])
    preds = np.clip(ndimage.gaussian_filter(gts.astype(float), (0, 1, 1)) * 3, 0, 1)
    a, b = EdgeMetric(num_thresholds=15), EdgeMetric(num_thresholds=15)
    a.update(torch.from_numpy(preds)[:, None], torch.from_numpy(gts)[:, None].float())
    for i in range(3):
        b.update(torch.from_numpy(preds[i : i + 1]), torch.from_numpy(gts[i : i + 1]).float())
    assert all(torch.equal(a.metric_state[k], b.metric_state[k]) for k in a.metric_state)


def _blurred_boundaries(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundaries of random blobs; predictions = displaced, blurred boundaries plus clutter and noise."""
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(n):
        gt = ndimage.gaussian_filter(rng.random((size, size)), size / 24) > 0.5
        gt ^= ndimage.binary_erosion(gt)
        clutter = ndimage.gaussian_filter(rng.random((size, size)), size / 24) > 0.5
        clutter ^= ndimage.binary_erosion(clutter)
        moved = ndimage.shift(gt.astype(float), rng.uniform(-1.5, 1.5, 2), order=1)
        soft = ndimage.gaussian_filter(moved + 0.5 * clutter, 1.5)
        soft += ndimage.gaussian_filter(rng.random((size, size)), 2.0) * 0.05
        preds.append(soft / soft.max())
        gts.append(gt)
    return torch.from_numpy(np.stack(preds))[:, None], torch.from_numpy(np.stack(gts))[:, None].float()


@pytest.mark.parametrize(("thin_pred", "max_gap"), [(True, 0.08), (False, 0.4)])
def test_approximate_matcher_is_an_upper_bound_of_exact(thin_pred, max_gap):
    """Measured on 6 images of 96x96 (maxDist 1.5 px), 19 thresholds: the distance-transform
    matcher over-counts; odsF gap 0.048 with thinning and 0.31 without (thick ridges)."""
    p, g = _blurred_boundaries(6, 96, seed=7)
    exact = EdgeMetric(num_thresholds=19, thin=thin_pred)
    approx = EdgeMetric(num_thresholds=19, exact=False, thin=thin_pred)
    exact.update(p, g)
    approx.update(p, g)
    assert (approx.cnt_p >= exact.cnt_p).all() and (approx.cnt_r >= exact.cnt_r).all()
    assert (approx.sum_p == exact.sum_p).all()
    gap = approx.compute()["odsF"].item() - exact.compute()["odsF"].item()
    assert 0.0 < gap < max_gap


# --- thresholds: the BSDS/SEISM decimal values, and predictions exactly on them ---------------------


def test_thresholds_are_the_decimal_values_parsed_from_text():
    """SEISM reads its HED thresholds as text lines '0.01' ... '0.99' ('%.2f'); linspace(0.01, 0.99, 99)
    is one ulp off at 25 of them."""
    text = "\n".join(f"{k / 100:.2f}" for k in range(1, 100))
    parsed = [float(line) for line in text.splitlines()]
    thr = edge_thresholds(99)
    assert thr.dtype == np.float64 and thr.tolist() == parsed
    assert thr.tolist() == [float(f"{(k + 1) / 100:.2f}") for k in range(99)]
    assert int((np.linspace(1 / 100, 99 / 100, 99) != thr).sum()) == 25  # what the old thresholds were
    # any n: the doubles nearest to k / (n + 1) -- the '%.2f' values when n + 1 divides 100
    for n in (1, 3, 9, 19, 49):
        assert edge_thresholds(n).tolist() == [float(f"{(k + 1) / (n + 1):.2f}") for k in range(n)]
    for n in (7, 15, 200, 999):
        thr = edge_thresholds(n)
        assert thr.tolist() == [(k + 1) / (n + 1) for k in range(n)]  # Python's int / int rounds correctly
        assert len(thr) == n and (np.diff(thr) > 0).all()


def test_prediction_exactly_at_a_threshold_counts_there():
    """One pixel at exactly each decimal threshold value (float64): BSDS's ``pb >= thresh(t)`` (also
    Piotr's ``edgesEvalImg`` and SEISM's NMS ``read_one_cont_png``: ``>= max(eps, t)``) counts it at
    its own threshold, so at threshold j the pixels j..98 are predicted. With the old linspace
    thresholds 23 of them (e.g. 0.06, 0.15, 0.35) were one ulp above the value and missed it."""
    thr = edge_thresholds(99)
    pred = np.zeros((3, 200))
    pred[1, 1:199:2] = [float(f"{(k + 1) / 100:.2f}") for k in range(99)]  # isolated: thinning keeps them
    no_gt = np.zeros(pred.shape, dtype=bool)
    assert image_counts(pred, no_gt, thr, 1.5)[1].tolist() == list(range(99, 0, -1))
    m = EdgeMetric()
    m.update(torch.from_numpy(pred)[None, None], torch.zeros(1, 1, *pred.shape))
    assert m.sum_p.tolist() == list(range(99, 0, -1))
    # a PNG-saved prediction (what SEISM reads): 51/255 is exactly the double 0.2, counted up to t = 0.20
    png = np.zeros((10, 10))
    png[5, 5] = 51 / 255
    assert png[5, 5] == thr[19] == 0.2
    assert image_counts(png, np.zeros((10, 10), dtype=bool), thr, 1.5)[1].tolist() == [1] * 20 + [0] * 79


# --- wide ground truth: thin_targets ----------------------------------------------------------------


def _wide_line() -> tuple[np.ndarray, np.ndarray]:
    """A 3-px-wide true line (NYUD-like GT) and a 1-px predicted line along its centre; thinning
    shortens the band by one pixel at each end, so the predicted line spans columns 11..48."""
    gt = np.zeros((40, 60))
    gt[19:22, 10:50] = 1.0
    pred = np.zeros((40, 60))
    pred[20, 11:49] = 0.9
    return pred, gt


def test_thin_targets_scores_a_thin_prediction_of_a_wide_true_line_one():
    pred, gt = _wide_line()
    assert np.array_equal(thin(gt > 0.5), pred > 0)  # the GT's thinned centre line is the prediction
    thinned = _run(pred, gt, thin_targets=True)
    assert thinned["odsF"] == 1.0 and thinned["oisF"] == 1.0
    # as given, the 120-pixel band can match only 38 of its pixels one-to-one: P = 1, R = 38/120
    wide = _run(pred, gt)
    r = 38 / 120
    assert wide["odsF"] == pytest.approx(2 * r / (1 + r)) and wide["odsF"] < 1.0
    assert EdgeMetric().thin_targets is False  # off by default


def test_thin_targets_drops_ignored_pixels_first_and_thins_each_annotator():
    pred, gt = _wide_line()
    m = EdgeMetric(thin_targets=True)
    m.update(torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None])
    assert int(m.sum_r[0]) == 38  # sumR counts the thinned GT
    # ignored pixels are dropped before thinning: ignoring the band's left half leaves a 3 x 20 band
    ignored = gt.copy()
    ignored[:, :30] = np.nan
    m = EdgeMetric(thin_targets=True)
    m.update(torch.from_numpy(pred)[None, None], torch.from_numpy(ignored)[None, None])
    assert int(m.sum_r[0]) == int(thin(np.nan_to_num(ignored) > 0.5).sum()) == 18
    # several annotators: each map thinned separately
    multi = MultiAnnotatorEdgeMetric(tolerance=0.011, thin_targets=True)
    multi.update(torch.from_numpy(pred), torch.from_numpy(np.stack([gt, gt])))
    assert multi.compute()["odsF"].item() == 1.0
    plain = MultiAnnotatorEdgeMetric(tolerance=0.011)
    plain.update(torch.from_numpy(pred), torch.from_numpy(np.stack([gt, gt])))
    assert plain.compute()["odsF"].item() < 1.0
