"""The Python API for trained models: ``taskadapt.load(checkpoint)`` -> :class:`Predictor`.

    import taskadapt
    p = taskadapt.load("runs/scenes/checkpoints/best.safetensors")
    out = p.predict("photo.jpg")      # {"semseg": (H, W) int64, "depth": (H, W) float32, ...}
    p.tasks, p.num_classes, p.class_names, p.affinity

``predict`` takes any RGB picture of any size, runs the model at the size it was trained for and
returns every task's prediction at the picture's own size, in plain NumPy:

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

The resizing is the one evaluation uses (bilinear with antialiasing down to the model's size; raw
outputs upsampled bilinearly back, then post-processed), so ``predict`` on a test image gives the
prediction ``taskadapt evaluate`` scored.
"""

from __future__ import annotations

import contextlib
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from taskadapt.config import Config
from taskadapt.data.datasets import class_names_of
from taskadapt.data.datasets.files import UnreadableFile, load_rgb, to_rgb8
from taskadapt.data.sample import INTEGER_LABELS
from taskadapt.distributed import resolve_device
from taskadapt.errors import DatasetError, TaskadaptError
from taskadapt.evaluation.loaders import resize_to_input
from taskadapt.run import Run
from taskadapt.tasks import get_task

ImageInput = str | os.PathLike | np.ndarray | torch.Tensor | Any  # Any: a PIL image (PIL stays a lazy import)


def load(path: str | os.PathLike, device: str | torch.device | None = None) -> Predictor:
    """Load a checkpoint written by ``taskadapt train`` (its ``.safetensors`` file) for inference.

    The model is rebuilt from the configuration stored in the checkpoint (``model.pretrained`` is
    ignored: the weights come from the checkpoint) and its weights are loaded with strict key and
    shape checking. ``device``: ``auto`` (default: CUDA when available, else CPU), ``cpu``, ``cuda`` or
    ``cuda:N``; asking for CUDA on a machine without it is a ConfigError. A missing, corrupt or foreign file
    raises :class:`~taskadapt.errors.CheckpointError`.
    """
    target = resolve_device(device)  # before the work: a wrong device fails fast
    run = Run.open(path)
    return Predictor(run.build_model(target), run)


class Predictor:
    """A loaded model plus what it needs to turn pictures into per-task predictions.

    Attributes: ``model`` (the ``nn.Module``, in eval mode), ``run`` (the checkpoint,
    :class:`~taskadapt.run.Run`), ``config`` (the run's :class:`Config`), ``meta`` (the checkpoint
    header), ``path``, ``tasks``, ``num_classes``, ``input_size`` (the square side the model runs at),
    ``device``; ``class_names`` and ``affinity`` are properties.
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

    def __call__(self, image: ImageInput, batch_size: int = 16) -> dict[str, np.ndarray]:
        return self.predict(image, batch_size)

    def predict(self, image: ImageInput, batch_size: int = 16) -> dict[str, np.ndarray]:
        """Predict every task for one picture (or a batch) of any size.

        ``image``: a file path; a PIL image; an (H, W, 3) ``uint8`` array (0..255) or float array
        in [0, 1] ((H, W) grey and (H, W, 4) RGBA are converted); a (3, H, W) or (B, 3, H, W) tensor
        in [0, 1] (``uint8`` tensors are divided by 255). Returns ``{task: array}`` at (H, W) as in
        the module table; a (B, 3, H, W) input gives arrays with a leading B axis. The batch runs
        in chunks of ``batch_size``.
        """
        x, batched = to_batch(image)
        if x.shape[0] == 0 or x.shape[-1] == 0 or x.shape[-2] == 0:
            raise ValueError(f"cannot predict on an empty image batch of shape {tuple(x.shape)}")
        outs: list[dict[str, torch.Tensor]] = []
        for chunk in x.split(max(1, int(batch_size))):
            outs.append(self._predict_tensor(chunk))
        result = {t: torch.cat([o[t] for o in outs]).numpy() for t in outs[0]}
        return result if batched else {t: v[0] for t, v in result.items()}

    @torch.inference_mode()
    def predict_raw(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> raw head outputs {task: (B, C_t, H, W)} at the input's size."""
        size = (image.shape[-2], image.shape[-1])
        # the eval loader's resize, so predictions match what evaluation scored
        x = resize_to_input(image.to(self.device, torch.float32), self.input_size)
        raw = self.model(x)
        return {t: (p.float() if p.shape[-2:] == size
                    else F.interpolate(p.float(), size=size, mode="bilinear", align_corners=False))
                for t, p in raw.items()}

    def _predict_tensor(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) -> {task: post-processed (B, H, W) / (B, H, W, 3)} on the CPU."""
        out = {}
        for task, raw in self.predict_raw(image).items():
            value = self.specs[task].postprocess(raw)
            if value.dim() == 4:
                value = value[:, 0] if value.shape[1] == 1 else value.permute(0, 2, 3, 1)
            dtype = torch.int64 if task in INTEGER_LABELS else torch.float32
            out[task] = value.to("cpu", dtype).contiguous()
        return out


# ---------------------------------------------------------------------------------- input handling


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 (16-bit files scaled to 8 bits); a missing or undecodable file is a
    DatasetError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image '{path}' does not exist or is not a file; pass the path of an image file")
    try:
        return load_rgb(path)
    except UnreadableFile as err:
        raise DatasetError(f"image '{path}' cannot be read ({err.reason}); pass a PNG/JPEG/... picture that "
                           "Pillow can open") from None


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


__all__ = ["Predictor", "load", "read_image", "to_batch"]
