"""Binary thinning (Guo-Hall) and label boundaries: the shared helpers of edge labels and the edge metric."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from taskadapt.morphology import _THIN_LUTS, edges_from_labels, label_boundaries, thin

EIGHT = np.ones((3, 3), dtype=bool)


def _blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    return ndimage.gaussian_filter(rng.random((size, size)), 2.0) > 0.52


def _reference_thin(mask: np.ndarray) -> np.ndarray:
    """Plain Guo-Hall: full-image subiterations until nothing changes (no candidate bookkeeping)."""
    img = mask.astype(bool)
    changed = True
    while changed:
        changed = False
        for lut in _THIN_LUTS:
            p = np.pad(img, 1).astype(np.int64)
            h, w = img.shape
            shifts = [(0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1)]
            code = sum(p[1 + dy : h + 1 + dy, 1 + dx : w + 1 + dx] << k for k, (dy, dx) in enumerate(shifts))
            remove = img & lut[code]
            if remove.any():
                img = img & ~remove
                changed = True
    return img


def test_thinning_matches_reference_example():
    # scikit-image's documented example for `thin` (Guo-Hall)
    square = np.zeros((7, 7), bool)
    square[1:-1, 2:-2] = True
    square[0, 1] = True
    expected = np.zeros((7, 7), bool)
    expected[0, 1] = expected[1, 2] = True
    expected[2:5, 3] = True
    assert np.array_equal(thin(square), expected)


def test_thinning_equals_plain_full_image_guo_hall():
    # the candidate-set shortcut must not change the result, also for masks touching the border
    rng = np.random.default_rng(3)
    for size in ((1, 1), (1, 6), (9, 7), (40, 52)):
        for fill in (0.3, 0.7, 1.0):
            mask = rng.random(size) < fill
            assert np.array_equal(thin(mask), _reference_thin(mask))
    thick = ndimage.gaussian_filter(rng.random((48, 48)), 3.0) > 0.4
    assert np.array_equal(thin(thick), _reference_thin(thick))


def test_thinning_a_thick_bar_gives_a_one_pixel_line():
    bar = np.zeros((20, 40), dtype=bool)
    bar[5:12, 5:35] = True
    t = thin(bar)
    assert ndimage.label(t, EIGHT)[1] == 1
    assert (t[:, 10:30].sum(axis=0) == 1).all()  # away from the ends, exactly one pixel per column
    assert t[8, 10:30].all()  # on the centre line


def test_thinning_keeps_topology_and_thin_lines():
    ring = np.zeros((30, 30), dtype=bool)
    ring[5:25, 5:25] = True
    ring[10:20, 10:20] = False
    t = thin(ring)
    assert ndimage.label(t, EIGHT)[1] == 1
    assert ndimage.label(~np.pad(t, 1))[1] == 2  # the hole survives (outside + inside)
    diamond = np.zeros((21, 21), dtype=bool)
    for k in range(10):  # an 8-connected 1-px closed curve without redundant corner pixels
        diamond[k, 10 + k] = diamond[10 + k, 20 - k] = diamond[20 - k, 10 - k] = diamond[10 - k, k] = True
    assert np.array_equal(thin(diamond), diamond)
    square = np.zeros((20, 20), dtype=bool)
    square[3, 3:15] = square[14, 3:15] = square[3:15, 3] = square[3:15, 14] = True
    # a 4-connected outline loses exactly its 4 corner pixels (8-connectivity survives without them)
    expected = square.copy()
    expected[[3, 3, 14, 14], [3, 14, 3, 14]] = False
    assert np.array_equal(thin(square), expected)
    dot = np.zeros((5, 5), dtype=bool)
    dot[2, 2] = True
    assert np.array_equal(thin(dot), dot)


def test_thinning_random_blobs_preserves_components_and_leaves_no_2x2_block():
    rng = np.random.default_rng(0)
    for _ in range(20):
        b = _blobs(rng, 40)
        t = thin(b)
        assert not (t & ~b).any()
        assert ndimage.label(t, EIGHT)[1] == ndimage.label(b, EIGHT)[1]
        assert ndimage.label(~np.pad(t, 1))[1] == ndimage.label(~np.pad(b, 1))[1]
        assert not (t[:-1, :-1] & t[1:, :-1] & t[:-1, 1:] & t[1:, 1:]).any()


def test_thinning_properties():
    rng = np.random.default_rng(0)
    labels = ndimage.median_filter(rng.integers(0, 4, (60, 80)), 7)
    band = label_boundaries(labels)
    edge = edges_from_labels(labels).astype(bool)
    assert edge.any() and not (edge & ~band).any()  # a subset of the boundary band
    assert np.array_equal(thin(edge), edge)  # idempotent
    rect = np.zeros((14, 34), bool)
    rect[2:12, 2:32] = True
    line = thin(rect)
    p = np.pad(line, 1)
    interior = line & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    assert 0 < line.sum() <= 30 and not interior.any()  # a thick blob becomes a thin line
    assert not label_boundaries(np.full((5, 5), 3)).any()  # uniform map: no boundary at the border


def test_label_boundaries_and_edges_by_hand():
    labels = np.zeros((6, 8), dtype=np.int64)
    labels[:, 4:] = 5
    band = label_boundaries(labels)
    expected_band = np.zeros((6, 8), bool)
    expected_band[:, 3:5] = True  # both sides of the vertical label change
    assert np.array_equal(band, expected_band)
    edge = edges_from_labels(labels)
    assert edge.dtype == np.float32 and set(np.unique(edge)) <= {0.0, 1.0}
    # thinning keeps one of the two columns (minus the band's top-left end pixel, as in the PASCAL test)
    expected = np.zeros((6, 8), np.float32)
    expected[1:, 3] = 1
    assert np.array_equal(edge, expected)


def test_thin_rejects_non_2d_input():
    with pytest.raises(ValueError, match="2-D"):
        thin(np.zeros((2, 3, 4), dtype=bool))
