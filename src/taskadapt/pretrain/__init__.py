"""Self-supervised pretraining of taskadapt's default backbone (``vit_tiny_patch8_64``).

Recipe (docs/pretraining.md argues the choices): a masked autoencoder (He et al. 2022, "Masked
Autoencoders Are Scalable Vision Learners") on procedural scenes of the ``pretrain`` appearance
domain, which no downstream label and no demo scene ever enters:

* images: 64 px scenes rendered on the fly into a pool that is partly re-rendered every step (fresh
  scenes at a fraction of the rendering cost), random resized crops and horizontal flips;
* the encoder sees only the 25 % visible patches (16 of 64 tokens + the class token): this is what
  makes MAE cheap enough for a CPU;
* a light decoder (2 blocks, 128 wide) fills in mask tokens and predicts every patch's pixels; the
  loss is the MSE on the *masked* patches of per-patch-normalised pixels (MAE's ``norm_pix_loss``);
* AdamW (betas 0.9/0.95, weight decay 0.05), linear warm-up then cosine decay, on a step or a
  wall-clock budget.

Only the encoder is saved (timm parameter names, float16 safetensors, strict-loadable by
``create_backbone("vit_tiny_patch8_64", pretrained=<file>)``) with a provenance JSON next to it.

Command line: ``taskadapt pretrain --out weights.safetensors --minutes 20 --seed 1000``. The parts:
:mod:`~taskadapt.pretrain.mae` (the model), :mod:`~taskadapt.pretrain.data` (scenes, augmentation,
normalisation), :mod:`~taskadapt.pretrain.recipe` (the loop, saving, provenance).
"""

from taskadapt.pretrain.data import DOMAIN, SPLIT, ScenePool, augment, normalize
from taskadapt.pretrain.mae import (
    MaskedAutoencoder,
    normalized_targets,
    patchify,
    random_masking,
    sincos_pos_embed,
    unpatchify,
)
from taskadapt.pretrain.recipe import BACKBONE, pretrain, save_encoder, save_reconstructions

__all__ = [
    "BACKBONE",
    "DOMAIN",
    "SPLIT",
    "MaskedAutoencoder",
    "ScenePool",
    "augment",
    "normalize",
    "normalized_targets",
    "patchify",
    "pretrain",
    "random_masking",
    "save_encoder",
    "save_reconstructions",
    "sincos_pos_embed",
    "unpatchify",
]
