"""taskadapt's default backbone and the weights shipped inside the package.

``vit_tiny_patch8_64`` is a ViT-Ti (192 wide, 12 blocks, 3 heads) with 8-pixel patches at 64 px,
pretrained by taskadapt itself with masked-image modelling on procedural scenes of the ``pretrain``
domain (recipe: :mod:`taskadapt.pretrain`, docs/pretraining.md). It stands in for ImageNet weights
on machines without internet:

>>> from taskadapt.models.backbones import create_backbone
>>> backbone = create_backbone("vit_tiny_patch8_64", pretrained="bundled")

The weights live in the package folder ``taskadapt/weights`` next to a provenance JSON (command,
seed, steps, duration, final loss, versions).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from taskadapt.errors import CheckpointError
from taskadapt.models.backbones.registry import register_backbone
from taskadapt.models.backbones.vit import VisionTransformer, _vit

#: the value of ``pretrained=`` that selects a backbone's shipped weights
BUNDLED = "bundled"
WEIGHTS_PACKAGE = "taskadapt.weights"
#: backbone name -> weights file in ``taskadapt/weights`` (its provenance: same stem, ``.json``)
BUNDLED_WEIGHTS: dict[str, str] = {"vit_tiny_patch8_64": "vit_tiny_patch8_64_scenes.safetensors"}
#: how to make the shipped weights again, in two stages: MAE, then MAE with the visible patches' loss
#: added (docs/pretraining.md; the provenance JSON records the command spelling of the time)
RECREATE_COMMAND = (
    "taskadapt pretrain --out stage1.safetensors --steps 3091 --seed 1000 && "
    "taskadapt pretrain --overwrite --out src/taskadapt/weights/vit_tiny_patch8_64_scenes.safetensors "
    "--init-from stage1.safetensors --steps 3000 --seed 1001 --lr 1e-3 --visible-weight 1"
)


@register_backbone
def vit_tiny_patch8_64(**kwargs) -> VisionTransformer:
    """ViT-Ti/8 at 64 px: 192 wide, 12 blocks, 3 heads, an 8 x 8 patch grid (5.4 M parameters).
    ``pretrained="bundled"`` loads the weights taskadapt ships for it."""
    defaults = {"img_size": 64, "patch_size": 8, "embed_dim": 192, "depth": 12, "num_heads": 3}
    return _vit("vit_tiny_patch8_64", defaults, kwargs)


def weights_dir() -> Path:
    """The package folder holding the bundled weights (a plain folder: taskadapt is never zipped)."""
    return Path(str(resources.files(WEIGHTS_PACKAGE)))


def bundled_weights_path(name: str) -> Path:
    """Path of the weights shipped for backbone ``name``; CheckpointError if there are none or the
    file is missing (e.g. a source checkout without the weights)."""
    filename = BUNDLED_WEIGHTS.get(name)
    if filename is None:
        raise CheckpointError(
            f"taskadapt ships no weights for backbone '{name}'; pretrained='{BUNDLED}' works for "
            f"{', '.join(sorted(BUNDLED_WEIGHTS))}. Pass a local weights file or hf-hub:timm/<repo> instead"
        )
    path = weights_dir() / filename
    if not path.is_file():
        raise CheckpointError(
            f"the bundled weights file {path} is missing (an incomplete install or checkout?); reinstall "
            f"taskadapt, or recreate the file with: {RECREATE_COMMAND}"
        )
    return path


def provenance_path(weights: Path) -> Path:
    """The provenance JSON written next to a weights file (same stem)."""
    return weights.with_suffix(".json")
