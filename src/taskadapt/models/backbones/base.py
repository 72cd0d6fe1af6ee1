"""The contract between backbone families and the multitask adapter model.

A backbone is our own plain-PyTorch re-implementation of a timm architecture, with timm's parameter
names and shapes (so a timm ``state_dict`` loads with strict key checking) and a
``forward_features`` whose output equals timm's. On top of that, every family exposes its forward pass
as an ordered list of :class:`Step` s over a family-specific *state* tensor, so the adapter model can
run any prefix of the network once, fold task streams into the batch, and run the remaining steps
with per-stream attention biases (TAA) -- with no monkey-patching:

    state = backbone.stem(x)                          # image (B, 3, H, W) -> state
    for step in backbone.steps():                     # blocks, downsamplings, final norm
        state = step(state)                           # blocks also accept attn_bias=...
    out = backbone.finalize(state)                    # == timm forward_features(x)

State layouts: ViT (B, 1 + N, C) tokens; Swin (B, H, W, C); PVTv2 (B, H, W, C) (blocks flatten it
internally). ``backbone.feature_map(state, step_index)`` turns the state after a step into a
(B, C, h, w) map for the dense decoder.

Blocks (``Step.kind == "block"``) are called as ``step(state, attn_bias=None)``. ``attn_bias`` is
an additive float bias on the pre-softmax attention logits, broadcastable to
(B, heads, N_q, N_kv) where B is the state's batch (task streams folded in), N_q/N_kv the query/key
tokens of one attention call (Swin: of one window, the bias is shared by all windows of an image;
PVTv2: N_kv is the spatially reduced key count). ``block.attention_tokens(state)`` returns (N_q, N_kv)
for a state so the caller can size its bias. Each block keeps timm's ``norm1`` and ``norm2``
LayerNorm submodules; the adapter model may replace them with modules of the same call signature
``norm(x) -> x`` (TSN), so blocks must call them as ``self.norm1(x)``/``self.norm2(x)``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

StepKind = Literal["block", "transition", "norm"]


@dataclass(eq=False)
class Step:
    """One step of a backbone's forward pass.

    ``module`` is the timm-named submodule (e.g. ``blocks.7`` or ``layers.2.blocks.3``), ``kind``
    says what it is, ``stage`` is the pyramid stage it belongs to (ViT: 0), ``name`` the dotted
    parameter prefix (so configs can name blocks and parameter tables can group them).
    """

    name: str
    kind: StepKind
    module: nn.Module
    stage: int = 0
    extra: dict = field(default_factory=dict)

    def __call__(self, state: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "block":
            return self.module(state, attn_bias=attn_bias)
        if attn_bias is not None:
            raise ValueError(f"step {self.name} ({self.kind}) takes no attention bias")
        return self.module(state)


class Backbone(nn.Module, metaclass=abc.ABCMeta):
    """Base class of the backbone families. Subclasses set the attributes and implement the methods.

    Attributes:
        name: registered model name (timm's, e.g. ``vit_small_patch16_224``)
        img_size: (H, W) the model is built for (position embeddings / windows sized for it)
        num_features: channels of the final output
        mean, std: the input normalisation the pretrained weights expect (images come in [0, 1])
    """

    name: str = ""
    family: str = ""
    img_size: tuple[int, int] = (224, 224)
    num_features: int = 0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    # -- the step view ------------------------------------------------------------------------------
    @abc.abstractmethod
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W), already normalised -> initial state."""
        ...

    @abc.abstractmethod
    def steps(self) -> list[Step]:
        """The ordered steps after the stem (blocks, transitions, final norm)."""
        ...

    @abc.abstractmethod
    def finalize(self, state: torch.Tensor) -> torch.Tensor:
        """State after the last step -> exactly what timm's ``forward_features`` returns."""
        ...

    @abc.abstractmethod
    def feature_map(self, state: torch.Tensor, step_index: int) -> torch.Tensor:
        """State after step ``step_index`` -> (B, C, h, w) map for the decoder."""
        ...

    @abc.abstractmethod
    def default_taps(self) -> list[int]:
        """Step indices whose outputs feed the multi-scale decoder (ViT: 4 evenly spaced blocks;
        Swin/PVTv2: the last block of each stage)."""
        ...

    @abc.abstractmethod
    def tap_channels(self, step_index: int) -> int:
        """Channels C of ``feature_map`` after step ``step_index``."""
        ...

    @abc.abstractmethod
    def tap_stride(self, step_index: int) -> int:
        """Downsampling factor of ``feature_map`` after step ``step_index`` relative to the input."""
        ...

    def no_weight_decay(self) -> set[str]:
        """Names (relative to the backbone) of parameters trained without weight decay besides the 1-D
        ones: embeddings such as ViT's position embedding and class token (timm's ``no_weight_decay``)."""
        return set()

    def checkpoint_filter(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Adapt a timm checkpoint to this model before a strict load: drop the classifier
        (``head.*``) and resize size-dependent tensors (ViT position embeddings, Swin
        relative-position tables). Families override it and call ``super()``."""
        return {k: v for k, v in state_dict.items() if not k.startswith(("head.", "fc_norm."))}

    # -- derived helpers ----------------------------------------------------------------------------
    def block_steps(self) -> list[int]:
        """Indices (into :meth:`steps`) of the transformer blocks, in order."""
        return [i for i, s in enumerate(self.steps()) if s.kind == "block"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Same output as timm's ``forward_features`` for the same weights and (normalised) input."""
        state = self.stem(x)
        for step in self.steps():
            state = step(state)
        return self.finalize(state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)
