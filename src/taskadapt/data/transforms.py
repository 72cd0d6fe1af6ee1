"""Joint data augmentation on sample dicts (image and every label map move together).

Every transform is a callable ``sample -> sample`` on one sample in the conventions of
:mod:`taskadapt.data.sample` (``image`` (3, H, W) float in [0, 1]; any of ``semseg``/``parts`` (H, W)
int64, ``depth``/``edge``/``saliency`` (1, H, W), ``normals`` (3, H, W); ``meta`` passed through).
Transforms never modify their input in place: they return a new (shallow-copied) dict. Keys other
than ``image``, the label keys and ``meta`` are passed through unchanged.

Interpolation rules
-------------------
* The image is resampled bilinearly (``align_corners=False``), with antialiasing when shrinking.
* Every label is resampled with pixel-centre-aligned nearest neighbour (the same mapping as
  ``F.interpolate(mode="nearest-exact")``, which matches bilinear's ``align_corners=False`` grid),
  so class ids, depths and normals are never blended across object boundaries and 255/NaN ignore
  values survive unchanged. Nearest keeps normals unit length. A non-uniform (aspect-changing) resize
  would strictly also rotate surface normals; like the rest of the field we leave them as they are.
* Edge maps are resampled nearest too: a 1-pixel boundary line may break (when shrinking) or thicken
  to 2 pixels (when enlarging). Re-deriving edges from the resized semseg would avoid this; we accept
  the approximation, as the field's loaders do.
* Padding fills the image with 0, integer labels with 255 and float labels with NaN (ignored).

Depth under scaling
-------------------
By default depth values are left unchanged by zooming: enlarging an image is a change of the
camera intrinsics (focal length), not of the distance to the scene, so metric depth stays correct.
LibMTL/mtan instead divide depth by the scale factor ("as if the camera moved closer");
``RandomScaleCrop(scale_depth=True)`` reproduces that convention.

Randomness
----------
Each random transform takes ``generator: torch.Generator | None``. When given, every random number
is drawn from it, so a seeded generator makes a pipeline reproducible (tests rely on this). When
``None`` (the default, and the right choice for training), numbers come from torch's global RNG,
which ``torch.utils.data.DataLoader`` seeds differently in every worker. Do not pass one Generator
to a multi-worker DataLoader: each worker gets a copy in the same state, so all workers would draw
the same augmentations. Each call of a random transform draws a fixed number of values (even when,
say, ``p=0``), so the stream position does not depend on the outcome.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from taskadapt.data.sample import FLOAT_LABELS, IGNORE_INDEX, INTEGER_LABELS, LABEL_CHANNELS, LABEL_KEYS
from taskadapt.errors import ConfigError, DatasetError

Sample = dict
Transform = Callable[[Sample], Sample]
SizeLike = int | Sequence[int]


# --------------------------------------------------------------------------------------------
# argument and sample checking


def _as_size(size: SizeLike, name: str) -> tuple[int, int]:
    """``int`` -> (s, s); ``(h, w)`` -> (h, w); anything else raises ConfigError."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if isinstance(size, str | bytes | bool):
        size = None  # a string would otherwise unpack character by character
    try:
        h, w = (int(v) for v in size)  # type: ignore[union-attr]
        ok = all(float(v) == int(v) for v in size) and h > 0 and w > 0  # type: ignore[union-attr]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{name} must be a positive int or a pair (height, width) of positive ints, "
                          f"got {size!r}; e.g. {name}=256 or {name}=[240, 320]")
    return h, w


def _check_range(value: float, name: str, lo: float, hi: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [{lo}, {hi}], got {value!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _sample_id(sample: Sample) -> str:
    meta = sample.get("meta")
    return str(meta.get("id", "?")) if isinstance(meta, dict) else "?"


def check_sample(sample: Sample) -> tuple[int, int]:
    """Validate the shapes of ``sample`` against the conventions and return its (H, W).

    Raises :class:`DatasetError` naming the sample and key when the image is missing or a label's
    shape does not match the image (a reader bug or a corrupt file, not something to augment).
    """
    sid = _sample_id(sample)
    image = sample.get("image")
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise DatasetError(f"sample {sid!r}: 'image' must be a (3, H, W) float tensor, got {got}; "
                           "the dataset reader must convert images to that layout")
    h, w = image.shape[-2:]
    for key in LABEL_KEYS:
        if key not in sample:
            continue
        label = sample[key]
        want = (h, w) if key in INTEGER_LABELS else (LABEL_CHANNELS[key], h, w)
        if not isinstance(label, torch.Tensor) or tuple(label.shape) != want:
            got = tuple(label.shape) if isinstance(label, torch.Tensor) else type(label).__name__
            raise DatasetError(f"sample {sid!r}: {key!r} has shape {got}, expected {want} to match the "
                               f"image (3, {h}, {w}); the dataset reader must return labels at image size")
    return h, w


def _spatial_keys(sample: Sample) -> list[str]:
    return ["image", *(k for k in LABEL_KEYS if k in sample)]


def _fill_value(key: str) -> float:
    if key == "image":
        return 0.0
    if key in INTEGER_LABELS:
        return float(IGNORE_INDEX)
    if key in FLOAT_LABELS:
        return math.nan
    raise KeyError(key)


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _randint(lo: int, hi: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [lo, hi] (both inclusive)."""
    return int(torch.randint(lo, hi + 1, (), generator=generator))


# --------------------------------------------------------------------------------------------
# resampling primitives (single tensors, (..., H, W))


def nearest_index(in_len: int, out_len: int, device: torch.device | None = None) -> torch.Tensor:
    """Source index of each output pixel for a pixel-centre-aligned nearest resize, (out_len,) int64.

    Output pixel ``i`` has centre ``(i + 0.5) * in_len / out_len`` in source coordinates; it takes
    the source pixel containing that point. Same mapping as ``F.interpolate(mode="nearest-exact")``.
    """
    # float64 so the floor is exact for any realistic size (no off-by-one at integer ratios)
    pos = (torch.arange(out_len, dtype=torch.float64, device=device) + 0.5) * (in_len / out_len)
    return pos.floor().long().clamp_(0, in_len - 1)


def resize_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., H, W) any dtype -> (..., h, w) by exact index gathering (NaN/255 preserved)."""
    h, w = size
    H, W = x.shape[-2:]
    if (h, w) == (H, W):
        return x
    rows = nearest_index(H, h, x.device)
    cols = nearest_index(W, w, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def resize_bilinear(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) float -> (C, h, w) bilinear, antialiased when either side shrinks, clamped to [0, 1]."""
    h, w = size
    H, W = image.shape[-2:]
    if (h, w) == (H, W):
        return image
    out = F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False,
                        antialias=h < H or w < W)[0]
    return out.clamp_(0.0, 1.0)


def crop_pad(x: torch.Tensor, top: int, left: int, size: tuple[int, int], fill: float) -> torch.Tensor:
    """Cut the window ``[top, top + h) x [left, left + w)`` out of (..., H, W) ``x``.

    ``top``/``left`` may be negative and the window may extend past the border: the part outside
    ``x`` is filled with ``fill``. Returns (..., h, w) with ``x``'s dtype.
    """
    h, w = size
    H, W = x.shape[-2:]
    if top == 0 and left == 0 and (h, w) == (H, W):
        return x
    out = torch.full((*x.shape[:-2], h, w), fill, dtype=x.dtype, device=x.device)
    r0, r1 = max(top, 0), min(top + h, H)
    c0, c1 = max(left, 0), min(left + w, W)
    if r1 > r0 and c1 > c0:
        out[..., r0 - top:r1 - top, c0 - left:c1 - left] = x[..., r0:r1, c0:c1]
    return out


def _resize_sample(sample: Sample, size: tuple[int, int], image_interpolation: str) -> Sample:
    out = dict(sample)
    for key in _spatial_keys(sample):
        if key == "image" and image_interpolation == "bilinear":
            out[key] = resize_bilinear(sample[key], size)
        else:
            out[key] = resize_nearest(sample[key], size)
    return out


def _crop_pad_sample(sample: Sample, top: int, left: int, size: tuple[int, int]) -> Sample:
    out = dict(sample)
    for key in _spatial_keys(sample):
        out[key] = crop_pad(sample[key], top, left, size, _fill_value(key))
    return out


def _check_interp(mode: str) -> str:
    if mode not in ("bilinear", "nearest"):
        raise ConfigError(f"image_interpolation must be 'bilinear' or 'nearest', got {mode!r}")
    return mode


# --------------------------------------------------------------------------------------------
# transforms


class Compose:
    """Apply transforms in order: ``Compose([t1, t2])(s) == t2(t1(s))``."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])" if inner else "Compose([])"


class Resize:
    """Resize the whole sample to ``size`` ((h, w), or an int for a square).

    The image is bilinear (antialiased when shrinking) unless ``image_interpolation="nearest"``;
    labels are always nearest (see the module notes). Depth values are not changed.
    """

    def __init__(self, size: SizeLike, image_interpolation: str = "bilinear"):
        self.size = _as_size(size, "size")
        self.image_interpolation = _check_interp(image_interpolation)

    def __call__(self, sample: Sample) -> Sample:
        check_sample(sample)
        return _resize_sample(sample, self.size, self.image_interpolation)

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


class RandomScaleCrop:
    """Scale the sample by a random factor, then cut a random ``crop_size`` window out of it.

    Draws (from ``generator``, see the module notes), in this order: the scale ``s`` uniform in
    ``scale``, then the window's top and left corner. The scaled size is ``round(H * s)`` x
    ``round(W * s)``. When the scaled sample is smaller than the crop along an axis, the window is
    larger than the sample there and the sample lands at a random position inside it; the rest is
    padding (image 0, labels 255/NaN). Output spatial size is always ``crop_size``.

    ``scale_depth=True`` divides depth by ``s`` (LibMTL/mtan convention); the default keeps metric
    depth. ``image_interpolation="nearest"`` resamples the image like the labels (exact alignment).
    """

    def __init__(
        self,
        crop_size: SizeLike,
        scale: tuple[float, float] = (0.5, 2.0),
        scale_depth: bool = False,
        image_interpolation: str = "bilinear",
        generator: torch.Generator | None = None,
    ):
        self.crop_size = _as_size(crop_size, "crop_size")
        try:
            lo, hi = (float(v) for v in scale)
        except (TypeError, ValueError):
            lo = hi = float("nan")
        if not 0 < lo <= hi:  # False for NaN too
            raise ConfigError(f"scale must be a pair (min, max) with 0 < min <= max, got {scale!r}; "
                              "e.g. scale=[0.5, 2.0] (use [1.0, 1.0] to only crop)")
        self.scale = (lo, hi)
        self.scale_depth = bool(scale_depth)
        self.image_interpolation = _check_interp(image_interpolation)
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        H, W = check_sample(sample)
        s = _uniform(*self.scale, self.generator)
        hs, ws = max(1, round(H * s)), max(1, round(W * s))
        ch, cw = self.crop_size
        # window origin: inside the sample when it is larger than the crop, else a negative offset
        # that places the (smaller) sample at a random position within the padded crop
        top = _randint(min(0, hs - ch), max(0, hs - ch), self.generator)
        left = _randint(min(0, ws - cw), max(0, ws - cw), self.generator)
        out = dict(sample)
        for key in _spatial_keys(sample):
            x = sample[key]
            if key == "image" and self.image_interpolation == "bilinear":
                # bilinear needs neighbours outside the window, so resize the whole image first
                out[key] = crop_pad(resize_bilinear(x, (hs, ws)), top, left, self.crop_size, 0.0)
            else:
                out[key] = _nearest_window(x, (hs, ws), top, left, self.crop_size, _fill_value(key))
        if self.scale_depth and "depth" in out:
            out["depth"] = out["depth"] / s
        return out

    def __repr__(self) -> str:
        return (f"RandomScaleCrop(crop_size={self.crop_size}, scale={self.scale}, "
                f"scale_depth={self.scale_depth})")


def _nearest_window(x: torch.Tensor, scaled: tuple[int, int], top: int, left: int,
                    size: tuple[int, int], fill: float) -> torch.Tensor:
    """``crop_pad(resize_nearest(x, scaled), top, left, size, fill)`` without building the full
    scaled map: only the source rows/columns that land inside the window are gathered."""
    H, W = x.shape[-2:]
    (hs, ws), (h, w) = scaled, size
    r0, r1 = max(top, 0), min(top + h, hs)
    c0, c1 = max(left, 0), min(left + w, ws)
    out = torch.full((*x.shape[:-2], h, w), fill, dtype=x.dtype, device=x.device)
    if r1 > r0 and c1 > c0:
        rows = nearest_index(H, hs, x.device)[r0:r1]
        cols = nearest_index(W, ws, x.device)[c0:c1]
        out[..., r0 - top:r1 - top, c0 - left:c1 - left] = x.index_select(-2, rows).index_select(-1, cols)
    return out


class CenterCrop:
    """Cut the centred ``size`` window; pads (image 0, labels 255/NaN) where the sample is smaller."""

    def __init__(self, size: SizeLike):
        self.size = _as_size(size, "size")

    def __call__(self, sample: Sample) -> Sample:
        H, W = check_sample(sample)
        h, w = self.size
        # floor division keeps the window centred also when the difference is negative (padding)
        return _crop_pad_sample(sample, (H - h) // 2, (W - w) // 2, self.size)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class PadTo:
    """Pad at the bottom and right up to at least ``size`` (larger sides are left as they are).

    Bottom/right padding keeps pixel (0, 0) in place, so a prediction is cut back to the original
    size with ``pred[..., :H, :W]`` (H, W = the size before padding).
    """

    def __init__(self, size: SizeLike):
        self.size = _as_size(size, "size")

    def __call__(self, sample: Sample) -> Sample:
        H, W = check_sample(sample)
        return _crop_pad_sample(sample, 0, 0, (max(H, self.size[0]), max(W, self.size[1])))

    def __repr__(self) -> str:
        return f"PadTo(size={self.size})"


#: multiplies normals on a horizontal flip: the x axis points right, so mirroring negates it
_NORMALS_FLIP = torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)


class RandomHorizontalFlip:
    """Mirror the image and every label left-right with probability ``p``.

    Normals are in the camera frame (x right), so their x component is negated. Draws one uniform
    number per call from ``generator``.
    """

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p = _check_range(p, "p", 0.0, 1.0)
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        check_sample(sample)
        if float(torch.rand((), generator=self.generator)) >= self.p:
            return dict(sample)
        return hflip(sample)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def hflip(sample: Sample) -> Sample:
    """Deterministic left-right mirror of a sample (normals' x negated)."""
    out = dict(sample)
    for key in _spatial_keys(sample):
        out[key] = sample[key].flip(-1)
    if "normals" in out:
        out["normals"] = out["normals"] * _NORMALS_FLIP.to(out["normals"])
    return out


# ITU-R BT.601 luma, as in torchvision's rgb_to_grayscale
_LUMA = torch.tensor([0.299, 0.587, 0.114])
# RGB -> YIQ (NTSC); a hue shift is a rotation of the (I, Q) chroma plane around the Y axis
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114],
                         [0.595716, -0.274453, -0.321263],
                         [0.211456, -0.522591, 0.311135]], dtype=torch.float64)


def hue_matrix(shift: float) -> torch.Tensor:
    """(3, 3) float32 matrix ``M`` with ``rgb' = M @ rgb`` rotating hue by ``shift`` turns (YIQ).

    A rotation in YIQ keeps luma exactly and approximates an HSV hue shift; it is one matrix
    product, so the whole image is shifted in a single vectorised operation.
    """
    a = 2.0 * math.pi * shift
    c, s = math.cos(a), math.sin(a)
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
    return (torch.linalg.inv(_RGB2YIQ) @ rot @ _RGB2YIQ).float()


class ColorJitter:
    """Random brightness, contrast, saturation and hue changes of the image only (labels untouched).

    Factors are drawn uniformly, in this fixed order, each call (always all four, see the module
    notes): brightness ``b`` in ``[max(0, 1 - brightness), 1 + brightness]``, contrast ``c`` and
    saturation ``s`` likewise, hue shift ``h`` in ``[-hue, hue]`` turns (``hue <= 0.5``). Then:
    ``img * b``; ``c * img + (1 - c) * mean(gray(img))``; ``s * img + (1 - s) * gray(img)``; a YIQ
    rotation by ``h`` (:func:`hue_matrix`); clamping to [0, 1] after each step. The fixed order
    (torchvision shuffles it) keeps the draw simple and reproducible.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0, generator: torch.Generator | None = None):
        self.brightness = _check_range(brightness, "brightness", 0.0, math.inf)
        self.contrast = _check_range(contrast, "contrast", 0.0, math.inf)
        self.saturation = _check_range(saturation, "saturation", 0.0, math.inf)
        self.hue = _check_range(hue, "hue", 0.0, 0.5)
        self.generator = generator

    def _factor(self, amount: float) -> float:
        return _uniform(max(0.0, 1.0 - amount), 1.0 + amount, self.generator)

    def __call__(self, sample: Sample) -> Sample:
        check_sample(sample)
        b = self._factor(self.brightness)
        c = self._factor(self.contrast)
        s = self._factor(self.saturation)
        h = _uniform(-self.hue, self.hue, self.generator)
        out = dict(sample)
        out["image"] = adjust_color(sample["image"], b, c, s, h)
        return out

    def __repr__(self) -> str:
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")


def adjust_color(image: torch.Tensor, brightness: float = 1.0, contrast: float = 1.0,
                 saturation: float = 1.0, hue: float = 0.0) -> torch.Tensor:
    """Deterministic colour change of a (3, H, W) image in [0, 1]; factors as in :class:`ColorJitter`."""
    img = image
    if brightness != 1.0:
        img = (img * brightness).clamp(0.0, 1.0)
    luma = _LUMA.to(img).view(3, 1, 1)
    if contrast != 1.0:
        mean = (img * luma).sum(0).mean()
        img = (contrast * img + (1.0 - contrast) * mean).clamp(0.0, 1.0)
    if saturation != 1.0:
        gray = (img * luma).sum(0, keepdim=True)
        img = (saturation * img + (1.0 - saturation) * gray).clamp(0.0, 1.0)
    if hue != 0.0:
        # (3, 3) @ (3, H*W): a plain matmul (einsum took a slow path here, ~6 ms per 64 px image)
        img = (hue_matrix(hue).to(img) @ img.reshape(3, -1)).reshape(img.shape).clamp(0.0, 1.0)
    return img


# --------------------------------------------------------------------------------------------
# standard pipelines


def build_train_transform(
    crop_size: SizeLike,
    scale: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    jitter: float = 0.2,
    scale_depth: bool = False,
    generator: torch.Generator | None = None,
) -> Compose:
    """Random scale-crop, then horizontal flip (``flip``), then colour jitter (``jitter > 0``).

    ``jitter`` is the brightness/contrast/saturation amount; the hue amount is ``jitter / 4``
    (0.05 turns = 18 degrees at the default 0.2, the hue delta of the common photometric
    distortion recipe). All random steps share ``generator``.
    """
    steps: list[Transform] = [RandomScaleCrop(crop_size, scale, scale_depth=scale_depth, generator=generator)]
    if flip:
        steps.append(RandomHorizontalFlip(0.5, generator=generator))
    jitter = _check_range(jitter, "jitter", 0.0, 2.0)
    if jitter > 0:
        steps.append(ColorJitter(jitter, jitter, jitter, min(jitter / 4, 0.5), generator=generator))
    return Compose(steps)


def build_eval_transform(size: SizeLike | None = None) -> Compose:
    """Identity, or a deterministic :class:`Resize` of image and labels to ``size``."""
    return Compose([] if size is None else [Resize(size)])
