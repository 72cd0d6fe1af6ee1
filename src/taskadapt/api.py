"""The Python API for trained models: ``taskadapt.load(checkpoint)`` -> :class:`Predictor`.

    import taskadapt
    p = taskadapt.load("runs/scenes/checkpoints/best.safetensors")
    out = p.predict("photo.jpg")      # {"semseg": (H, W) int64, "depth": (H, W) float32, ...}
    p.tasks, p.num_classes, p.class_names, p.affinity

``predict`` takes an RGB picture (8- or 16-bit), runs the model at the size it was trained for -- the
picture squashed to that square (``mode="squash"``, what evaluation does) or, with ``mode="keep"``, its
short side resized and overlapping square windows averaged -- and returns every task's prediction at the
picture's own size, in plain NumPy:

========  ==========================  ==========================================
task      array                       meaning
========  ==========================  ==========================================
semseg    (H, W) int64                class ids (``class_names["semseg"][id]``)
parts     (H, W) int64                part ids
depth     (H, W) float32              metres, >= 0
normals   (H, W, 3) float32           unit vectors, camera frame (x right, y up, z towards the camera)
edge      (H, W) float32              boundary probability in [0, 1]
saliency  (H, W) float32              saliency probability in [0, 1]
========  ==========================  ==========================================

Two ways to bring a picture to the model (``mode``):

- ``"squash"`` (default): the resizing evaluation uses (bilinear with antialiasing to the model's square
  size; raw outputs upsampled bilinearly back, then post-processed), so ``predict`` on a test image gives
  the prediction ``taskadapt evaluate`` scored.
- ``"keep"``: the short side goes to the model's size and the aspect ratio is kept; overlapping square
  windows (every ``Predictor.window_stride`` pixels, the last flush with the end) cover the long side,
  their raw outputs (logits, raw values) are averaged where they overlap, upsampled back to the picture's
  size and then post-processed. On a square picture both modes give the same prediction.

Pictures are shrunk on the CPU before they go to the model's device (a uint8 picture in row strips, so no
float copy of a huge photo is made), and :meth:`Predictor.predict_iter` brings the predictions to full
size one task at a time, in row blocks for very large maps.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from taskadapt.config import Config
from taskadapt.data.datasets import class_names_of
from taskadapt.data.datasets.files import UnreadableFile, load_rgb, to_rgb8
from taskadapt.data.datasets.png16 import SIGNATURE as PNG_SIGNATURE
from taskadapt.data.datasets.png16 import needs_png16
from taskadapt.data.sample import INTEGER_LABELS
from taskadapt.distributed import resolve_device
from taskadapt.errors import ConfigError, DatasetError, TaskadaptError
from taskadapt.evaluation.loaders import resize_to_input
from taskadapt.run import Run
from taskadapt.tasks import get_task

ImageInput = str | os.PathLike | np.ndarray | torch.Tensor | Any  # Any: a PIL image (PIL stays a lazy import)

RESIZE_MODES = ("squash", "keep")
MAX_BLOCK_VALUES = 1 << 25  # one picture's full-size raw map above this many values is upsampled in row strips
STRIP_VALUES = 1 << 22  # values of one such strip (16 MiB of float32)
STRIP_ROWS = 64  # rows of a uint8 picture converted to float at a time while it is shrunk


def load(path: str | os.PathLike, device: str | torch.device | None = None, *,
         backbone_weights: str | os.PathLike | None = None) -> Predictor:
    """Load a checkpoint written by ``taskadapt train`` (its ``.safetensors`` file), an adapter-only checkpoint
    (``taskadapt save-adapters``) or a model on the Hugging Face hub (``"hf-hub:OWNER/REPO"``, written by
    ``taskadapt push``) for inference.

    The model is rebuilt from the configuration stored in the checkpoint (``model.pretrained`` is
    ignored: the weights come from the checkpoint) and its weights are loaded with strict key and
    shape checking. An adapter-only checkpoint's frozen backbone comes from the weights its header names
    (bundled, a hub id or a file), or from ``backbone_weights`` -- the same weights elsewhere (SHA-256
    checked). ``device``: ``auto`` (default: CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``;
    asking for CUDA on a machine without it is a ConfigError. A missing, corrupt or foreign file raises
    :class:`~taskadapt.errors.CheckpointError`.
    """
    target = resolve_device(device)  # before the work: a wrong device fails fast
    run = Run.open(path, backbone_weights)
    return Predictor(run.build_model(target), run)


class Predictor:
    """A loaded model plus what it needs to turn pictures into per-task predictions.

    Attributes: ``model`` (the ``nn.Module``, in eval mode), ``run`` (the checkpoint,
    :class:`~taskadapt.run.Run`), ``config`` (the run's :class:`Config`), ``meta`` (the checkpoint
    header), ``path``, ``tasks``, ``num_classes``, ``input_size`` (the square side the model runs at),
    ``window_stride`` (pixels between the windows of ``mode="keep"``, in [1, input_size]; default half the
    input size), ``device``; ``class_names`` and ``affinity`` are properties.
    """

    def __init__(self, model: torch.nn.Module, run: Run):
        self.model = model
        self.run = run
        self.config: Config = run.config
        self.meta = run.meta
        self.path = run.path
        self.tasks: list[str] = run.tasks
        self.num_classes: dict[str, int] = run.num_classes
        self.input_size: int = run.input_size
        self.specs = {t: get_task(t) for t in self.tasks}
        self.window_stride: int = max(1, self.input_size // 2)  # "keep" mode: windows overlap by half

    def __repr__(self) -> str:
        return (f"Predictor('{self.path}', method={self.meta.get('method')!r}, backbone={self.meta.get('backbone')!r}, "
                f"tasks={self.tasks}, input_size={self.input_size}, device='{self.device}')")

    @property
    def device(self) -> torch.device:
        first = next(self.model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def affinity(self) -> np.ndarray | None:
        """The TROA matrix (T, T), ``A[i, j]`` = effect of task i on task j; None for models without one."""
        return self.run.affinity

    @cached_property
    def class_names(self) -> dict[str, list[str]]:
        """task -> class names, for the class-map tasks (semseg, parts).

        From the checkpoint header when it stores them, else the run's dataset format (which knows them,
        or lists them from the dataset folder named in the config); generic ``class_<i>`` names when none
        is readable.
        """
        names = self.run.class_names
        missing = [t for t in self.num_classes if t not in names]
        # only lists ids and class names, no image is read; a dataset that is not on this machine (or a
        # config without its root) falls back to the generic names below
        with contextlib.suppress(TaskadaptError, OSError, TypeError):
            names.update(class_names_of(self.config.data, missing) if missing else {})
        for task, k in self.num_classes.items():
            if len(names.get(task, [])) != k:
                names[task] = [f"class_{i}" for i in range(k)]
        return names

    # ------------------------------------------------------------------------------ inference

    def __call__(self, image: ImageInput, batch_size: int = 16, *, mode: str = "squash") -> dict[str, np.ndarray]:
        return self.predict(image, batch_size, mode=mode)

    def predict(self, image: ImageInput, batch_size: int = 16, *, mode: str = "squash") -> dict[str, np.ndarray]:
        """Predict every task for one picture (or a batch) of any size.

        ``image``: a file path; a PIL image; an (H, W, 3) ``uint8`` array (0..255) or float array
        in [0, 1] ((H, W) grey and (H, W, 4) RGBA are converted); a (3, H, W) or (B, 3, H, W) tensor
        in [0, 1] (``uint8`` tensors are divided by 255). Returns ``{task: array}`` at (H, W) as in
        the module table; a (B, 3, H, W) input gives arrays with a leading B axis. The model runs on
        chunks of ``batch_size`` pictures (or windows). ``mode``: ``"squash"`` or ``"keep"`` (module
        docstring).
        """
        return dict(self.predict_iter(image, mode=mode, batch_size=batch_size))

    def predict_iter(self, image: ImageInput, *, mode: str = "squash", batch_size: int = 16
                     ) -> Iterator[tuple[str, np.ndarray]]:
        """:meth:`predict`, one task at a time: yields ``(task, array)`` in the model's output order (that of
        :attr:`tasks`).

        The model runs once, before the first task; each task's full-size map is made only when it is
        asked for, so a caller that writes and drops it holds one task's full-size map at a time.
        """
        check_mode(mode)
        small, size, batched = self._prepare(image, mode)
        raw = self._raw_small(small, batch_size)
        del small
        for task in list(raw):
            value = self._full_size(task, raw.pop(task), size)
            yield task, (value if batched else value[0])
            del value  # before the next task's map is made

    @torch.inference_mode()
    def predict_raw(self, image: torch.Tensor, *, mode: str = "squash", batch_size: int = 16
                    ) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> raw head outputs {task: (B, C_t, H, W)} at the input's size, on the CPU."""
        x = image.detach().to("cpu", torch.float32)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        small = resize_images(x, model_shape(*size, self.input_size, mode))
        return {t: _bilinear(r, size) for t, r in self._raw_small(small, batch_size).items()}

    def _prepare(self, image: ImageInput, mode: str) -> tuple[torch.Tensor, tuple[int, int], bool]:
        """Any input -> (model-ready (B, 3, h, w) float32 on the CPU, the picture's (H, W), whether batched).

        Files, PIL images and (H, W, 3) uint8 arrays are shrunk from uint8 in row strips (:func:`shrink_rgb8`);
        other inputs go through :func:`to_batch` and :func:`resize_images` (the same numbers).
        """
        rgb = _rgb8_of(image)
        if rgb is not None:
            _check_not_empty((1, 3, *rgb.shape[:2]))
            size = (int(rgb.shape[0]), int(rgb.shape[1]))
            return shrink_rgb8(rgb, model_shape(*size, self.input_size, mode)), size, False
        x, batched = to_batch(image)
        _check_not_empty(tuple(x.shape))
        size = (int(x.shape[-2]), int(x.shape[-1]))
        return resize_images(x, model_shape(*size, self.input_size, mode)), size, batched

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, s, s) on the CPU -> raw outputs {task: (N, C, s', s')} float32 on the CPU."""
        return {t: p.float().cpu() for t, p in self.model(x.to(self.device)).items()}

    @torch.inference_mode()
    def _raw_small(self, small: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """(B, 3, h, w) model-ready pictures -> raw outputs {task: (B, C, h', w')} on the CPU.

        A square (h == w == input_size) picture runs as it is (h', w' = the model's output size); a longer
        one (``keep``) is covered by windows (:meth:`_windows`, h', w' = h, w). ``batch_size`` pictures or
        windows per forward.
        """
        step = max(1, int(batch_size))
        chunks = [self._forward(c) if c.shape[-2:] == (self.input_size, self.input_size) else self._windows(c, step)
                  for c in small.split(step)]
        return {t: torch.cat([c[t] for c in chunks]) for t in chunks[0]}

    def _windows(self, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """(B, 3, h, w) -> {task: (B, C, h, w)}: raw outputs of square windows of side ``input_size``
        (:func:`window_starts`), each brought to the window's size, averaged where windows overlap."""
        s, stride, (b, _, h, w) = self.input_size, self.window_stride, x.shape
        boxes = [(y, z) for y in window_starts(h, s, stride) for z in window_starts(w, s, stride)]
        per_forward = max(1, batch_size // b)
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros(1, 1, h, w)
        for i in range(0, len(boxes), per_forward):
            group = boxes[i:i + per_forward]
            raw = self._forward(torch.cat([x[:, :, y:y + s, z:z + s] for y, z in group]))
            for task, r in raw.items():
                r = _bilinear(r, (s, s))
                acc = sums.setdefault(task, torch.zeros(b, r.shape[1], h, w))
                for j, (y, z) in enumerate(group):
                    acc[:, :, y:y + s, z:z + s] += r[j * b:(j + 1) * b]
            for y, z in group:
                count[..., y:y + s, z:z + s] += 1
        return {task: acc / count for task, acc in sums.items()}

    @torch.inference_mode()
    def _full_size(self, task: str, raw: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """Raw (B, C, h, w) -> post-processed (B, H, W) / (B, H, W, 3) at size=(H, W), a picture and a row
        block (:func:`upsample_blocks`) at a time."""
        out: np.ndarray | None = None
        for b in range(raw.shape[0]):
            for rows, block in upsample_blocks(raw[b:b + 1], size):
                value = self._postprocess(task, block).numpy()
                if out is None:
                    out = np.empty((raw.shape[0], *size, *value.shape[3:]), value.dtype)
                out[b:b + 1, rows] = value
        return out

    def _postprocess(self, task: str, raw: torch.Tensor) -> torch.Tensor:
        """Raw (B, C, H, W) -> (B, H, W) / (B, H, W, 3) on the CPU: int64 class maps, float32 otherwise."""
        value = self.specs[task].postprocess(raw)
        if value.dim() == 4:
            value = value[:, 0] if value.shape[1] == 1 else value.permute(0, 2, 3, 1)
        dtype = torch.int64 if task in INTEGER_LABELS else torch.float32
        return value.to("cpu", dtype).contiguous()


# ---------------------------------------------------------------------------------- resizing


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`RESIZE_MODES`, else a ConfigError naming them."""
    if mode not in RESIZE_MODES:
        raise ConfigError(f"unknown resize mode {mode!r}; use 'keep' (aspect ratio kept, overlapping square "
                          "windows) or 'squash' (stretched to the model's square input)")
    return mode


def model_shape(height: int, width: int, size: int, mode: str) -> tuple[int, int]:
    """The (h, w) a (height, width) picture is resized to before the model runs.

    ``squash``: (size, size). ``keep``: the short side becomes ``size`` and the long side keeps the aspect
    ratio (rounded, at least ``size``); a square picture gives (size, size) in both modes.
    """
    if check_mode(mode) == "squash" or height == width:
        return size, size
    scale = size / min(height, width)
    if height < width:
        return size, max(size, round(width * scale))
    return max(size, round(height * scale)), size


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Starts of the windows of side ``size`` that cover [0, length): every ``stride`` pixels, the last one
    flush with the end (``length - size``); one window at 0 when ``length <= size``."""
    if not 1 <= stride <= size:
        raise ConfigError(f"window stride {stride} must be in [1, {size}] (the model's input size) so windows "
                          "leave no gap; set Predictor.window_stride to a value in that range")
    if length <= size:
        return [0]
    return [*range(0, length - size, stride), length - size]


def _antialiased(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w) bilinear with antialiasing (not clamped); the input itself at its shape."""
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False, antialias=True)


def _bilinear(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, H, W) bilinear, as evaluation upsamples raw outputs; the input at its shape."""
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)


def resize_images(images: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, h, w): the evaluation resize (:func:`resize_to_input`: antialiased
    bilinear, clamped to [0, 1]) to any shape; to a square it is ``resize_to_input`` itself."""
    if shape[0] == shape[1]:
        return resize_to_input(images, shape[0])
    if tuple(images.shape[-2:]) == tuple(shape):
        return images
    return _antialiased(images, shape).clamp(0, 1)


def shrink_rgb8(rgb: np.ndarray, shape: tuple[int, int], rows: int = STRIP_ROWS) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, h, w) float32 in [0, 1]: ``resize_images(to_batch(rgb)[0], shape)`` without a
    float copy of the whole picture. Strips of ``rows`` rows are converted and shrunk across, then the
    (3, H, w) result is shrunk down (the resize is separable: the same numbers, bit for bit, on the CPU)."""
    height = rgb.shape[0]
    if tuple(rgb.shape[:2]) == tuple(shape):
        return _array_to_chw(rgb).unsqueeze(0)
    across = torch.empty(1, 3, height, shape[1])  # filled in place: no pile of small pieces between big strips
    for y in range(0, height, rows):
        strip = _array_to_chw(rgb[y:y + rows]).unsqueeze(0)
        across[:, :, y:y + strip.shape[2]] = _antialiased(strip, (strip.shape[2], shape[1]))
    return _antialiased(across, shape).clamp(0, 1)


def upsample_blocks(raw: torch.Tensor, size: tuple[int, int], max_values: int | None = None
                    ) -> Iterator[tuple[slice, torch.Tensor]]:
    """(B, C, h, w) -> ``(rows, (B, C, len(rows), W))`` blocks of its bilinear upsampling to size=(H, W).

    One block, ``F.interpolate`` as evaluation uses it, when the map has at most ``max_values`` values
    (default :data:`MAX_BLOCK_VALUES`); larger maps are upsampled down the columns to (H, w) once, then
    across in strips of at most :data:`STRIP_VALUES` values (the same weights; equal to one block within
    float rounding, ~1e-6), so a huge raw map is never made whole.
    """
    max_values = MAX_BLOCK_VALUES if max_values is None else max_values
    height, width = size
    b, c, _, w = raw.shape
    if b * c * height * width <= max_values or tuple(raw.shape[-2:]) == tuple(size):
        yield slice(0, height), _bilinear(raw, size)
        return
    tall = _bilinear(raw, (height, w))
    step = max(1, min(max_values, STRIP_VALUES) // (b * c * width))
    for y in range(0, height, step):
        strip = tall[:, :, y:y + step]
        yield slice(y, y + strip.shape[2]), _bilinear(strip, (strip.shape[2], width))


def _check_not_empty(shape: tuple[int, ...]) -> None:
    """A ValueError for a batch without pictures or pictures without pixels."""
    if shape[0] == 0 or shape[-1] == 0 or shape[-2] == 0:
        raise ValueError(f"cannot predict on an empty image batch of shape {tuple(shape)}")


# ---------------------------------------------------------------------------------- input handling


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 (16-bit files scaled to 8 bits); a missing or undecodable file is a
    DatasetError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image '{path}' does not exist or is not a file; pass the path of an image file")
    try:
        rgb = _rgb8_by_strips(path)
        return rgb if rgb is not None else load_rgb(path)
    except UnreadableFile as err:
        raise DatasetError(f"image '{path}' cannot be read ({err.reason}); pass a PNG/JPEG/... picture that "
                           "Pillow can open") from None


def _rgb8_by_strips(path: Path, rows: int = 16 * STRIP_ROWS) -> np.ndarray | None:
    """An 8-bit RGB picture (a JPEG, an 8-bit PNG, ...) as (H, W, 3) uint8, copied out of Pillow ``rows`` rows
    at a time (no whole-picture temporaries besides Pillow's own); None for other pictures and for files
    that fail here (:func:`load_rgb` reads those and names the problem)."""
    try:
        with open(path, "rb") as f:
            if f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE and needs_png16(path):
                return None
        from PIL import Image

        with Image.open(path) as img:
            if img.mode != "RGB":
                return None
            img.load()
            width, height = img.size
            out = np.empty((height, width, 3), np.uint8)
            for y in range(0, height, rows):
                out[y:y + rows] = np.asarray(img.crop((0, y, width, min(height, y + rows))))
            return out
    except Exception:  # noqa: BLE001 -- any decoding problem: load_rgb reports it
        return None


def _array_to_chw(a: np.ndarray) -> torch.Tensor:
    """(H, W[, 1|3|4]) uint8 or float array -> (3, H, W) float32 in [0, 1]."""
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"an image array must be (H, W, 3) (or (H, W), (H, W, 4)), got shape {a.shape}; "
                         "for channels-first data pass a torch tensor (3, H, W)")
    a = a[..., :3] if a.shape[-1] == 4 else np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a
    return _tensor_to_unit(torch.tensor(a).permute(2, 0, 1))  # a copy: the input array may be read-only


def _tensor_to_unit(t: torch.Tensor) -> torch.Tensor:
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not t.is_floating_point():
        raise ValueError(f"image values must be uint8 (0..255) or float in [0, 1], got dtype {t.dtype}")
    t = t.float()
    lo, hi = (float(t.min()), float(t.max())) if t.numel() else (0.0, 0.0)
    if lo < -1e-3 or hi > 1 + 1e-3 or not np.isfinite(lo + hi):
        raise ValueError(f"float image values must be in [0, 1], got [{lo:g}, {hi:g}]; divide 0..255 data by 255")
    return t.clamp(0, 1)


def _rgb8_of(image: ImageInput) -> np.ndarray | None:
    """The picture as an (H, W, 3) uint8 array when it is a file, a PIL image or such an array; else None
    (tensors, float / grey / RGBA arrays: :func:`to_batch` converts them)."""
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    if isinstance(image, np.ndarray):
        return image if image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3 else None
    if isinstance(image, torch.Tensor):
        return None
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return None
    return to_rgb8(image) if isinstance(image, Image.Image) else None


def to_batch(image: ImageInput) -> tuple[torch.Tensor, bool]:
    """Any supported input -> ((B, 3, H, W) float32 in [0, 1], whether the input was a batch)."""
    if isinstance(image, str | os.PathLike):
        return _array_to_chw(read_image(image)).unsqueeze(0), False
    if isinstance(image, np.ndarray):
        return _array_to_chw(image).unsqueeze(0), False
    if isinstance(image, torch.Tensor):
        if image.dim() == 3 and image.shape[0] == 3:
            return _tensor_to_unit(image.detach().cpu()).unsqueeze(0), False
        if image.dim() == 4 and image.shape[1] == 3:
            return _tensor_to_unit(image.detach().cpu()), True
        raise ValueError(f"an image tensor must be (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}")
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return _array_to_chw(to_rgb8(image)).unsqueeze(0), False
    raise TypeError(f"cannot predict on a {type(image).__name__}; pass a path, a PIL image, an (H, W, 3) array "
                    "or a (3, H, W) / (B, 3, H, W) tensor")


__all__ = ["RESIZE_MODES", "Predictor", "check_mode", "load", "model_shape", "read_image", "resize_images",
           "shrink_rgb8", "to_batch", "upsample_blocks", "window_starts"]
