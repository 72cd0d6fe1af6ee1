"""Binary thinning and label-boundary extraction (for PASCAL-Context edge ground truth).

The field derives PASCAL edge labels as ``skimage.morphology.thin(|Laplacian(LabelMap)| > 0)``.
We do not depend on scikit-image or OpenCV, so both steps are written here with NumPy/SciPy:

* :func:`label_boundaries` -- pixels where the 4-neighbour Laplacian of the label map
  (kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]], mirrored border without repeating the edge pixel, as
  OpenCV's default ``BORDER_REFLECT_101``) is non-zero.
* :func:`thin` -- the two-subiteration parallel thinning of Guo & Hall (1989, "Parallel thinning
  with two-subiteration algorithms", CACM 32(3)), the algorithm scikit-image's ``thin`` implements.
  Each subiteration computes every pixel's 8-neighbour code at once and looks the deletion decision
  up in a 256-entry table, so the work per iteration is a handful of vectorised array operations.

Neighbour numbering (x1..x8 counter-clockwise from east): x1 = E, x2 = NE, x3 = N, x4 = NW,
x5 = W, x6 = SW, x7 = S, x8 = SE; bit i-1 of the code is x_i.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _bits(code: int) -> list[bool]:
    return [bool(code >> i & 1) for i in range(8)]


def _deletable(code: int, first: bool) -> bool:
    x = _bits(code)  # x[0] = x1 ... x[7] = x8
    # C(P): number of 4-connected "0 then 1" transitions around P must be exactly one
    c = sum((not x[i]) and (x[i + 1] or x[(i + 2) % 8]) for i in (0, 2, 4, 6))
    # N(P) = min(N1, N2): 2..3 keeps end points and does not eat short branches
    n1 = sum(x[i] or x[i + 1] for i in (0, 2, 4, 6))
    n2 = sum(x[i + 1] or x[(i + 2) % 8] for i in (0, 2, 4, 6))
    n = min(n1, n2)
    # G3 reads "((x2 or x3 or not x8) and x1) == 0": the first subiteration removes south-east
    # boundary and north-west corner points, the second (G3') the mirrored set
    g3 = (x[1] or x[2] or not x[7]) and x[0]
    g3_prime = (x[5] or x[6] or not x[3]) and x[4]
    side = not (g3 if first else g3_prime)
    return c == 1 and 2 <= n <= 3 and side


_LUT_FIRST = np.array([_deletable(c, True) for c in range(256)], dtype=bool)
_LUT_SECOND = np.array([_deletable(c, False) for c in range(256)], dtype=bool)


def _neighbour_code(img: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) uint8 code of the 8 neighbours (outside the image counts as 0)."""
    p = np.pad(img, 1).astype(np.uint8)
    code = p[1:-1, 2:].copy()  # x1 = E
    code |= p[:-2, 2:] << 1  # x2 = NE
    code |= p[:-2, 1:-1] << 2  # x3 = N
    code |= p[:-2, :-2] << 3  # x4 = NW
    code |= p[1:-1, :-2] << 4  # x5 = W
    code |= p[2:, :-2] << 5  # x6 = SW
    code |= p[2:, 1:-1] << 6  # x7 = S
    code |= p[2:, 2:] << 7  # x8 = SE
    return code


def thin(mask: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """Thin a binary (H, W) mask to 1-pixel-wide, 8-connected lines (Guo-Hall). Returns bool."""
    img = np.asarray(mask, dtype=bool).copy()
    it = 0
    while max_iter is None or it < max_iter:
        changed = False
        for lut in (_LUT_FIRST, _LUT_SECOND):
            remove = img & lut[_neighbour_code(img)]
            if remove.any():
                img &= ~remove
                changed = True
        it += 1
        if not changed:
            break
    return img


_LAPLACE = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.int64)


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """(H, W) integer label map -> bool mask where the 4-neighbour Laplacian is non-zero."""
    lap = ndimage.convolve(np.asarray(labels, dtype=np.int64), _LAPLACE, mode="mirror")
    return lap != 0


def edges_from_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W) label map -> (H, W) float32 {0, 1} thin boundary map (the PASCAL edge target)."""
    return thin(label_boundaries(labels)).astype(np.float32)
