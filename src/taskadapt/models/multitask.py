"""MultiTaskModel: image -> {task: dense prediction}; the encode/decode path every method shares.

Data flow (method.md §1)::

    image (B, 3, H, W) -> normalise -> backbone steps [0, split)   (run once; no activations kept when frozen)
      -> the steps after the split, on T task streams folded into the batch (T*B, ...) when a method adds
         task-specific layers there (ours: :class:`~taskadapt.models.methods.adapters.AdapterModel`)
      -> taps -> multi-scale decoder (shared, or one per task; prefix taps projected once, then shared
         by the streams) -> per-task head on its own stream -> upsample to (H, W)

The baselines use this class as it is (one stream: decoder once, heads on the shared features); what
differs between methods -- which weights train, LoRA, adapter layers, one model per task -- is built by
the method (:mod:`taskadapt.models.methods`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from taskadapt.models.backbones import Backbone
from taskadapt.models.decoder import DECODER_LAYOUTS, MultiScaleDecoder, TaskHead
from taskadapt.models.lora import LoRALinear
from taskadapt.models.network import TaskNetwork
from taskadapt.tasks import get_task


class ModelOptionError(ValueError):
    """A model option has a value the model cannot be built with; ``option`` names the constructor option
    (the factory turns it into the config key)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


class MultiTaskModel(TaskNetwork):
    """One backbone, a multi-scale decoder, one head per task. ``forward(image)`` -> {task: (B, C_t, H, W)}.

    Raw outputs (logits for semseg/edge, metres for depth, unnormalised normals): pass them to the
    task specs' ``loss`` and ``postprocess``. Which backbone weights train is the caller's choice (the
    method sets ``requires_grad`` before building); ``add_task_layers(model)`` is called after the backbone
    is in place and before the decoder is built, so that parameters are created -- and randomly
    initialised -- in data-flow order.
    """

    def __init__(
        self,
        backbone: Backbone,
        tasks: Sequence[str],
        num_classes: Mapping[str, int] | None = None,
        *,
        decoder_channels: int = 64,
        decoder: str = "shared",
        decoder_conv: str = "full",
        decoder_resample: str = "interpolate",
        add_task_layers: Callable[[MultiTaskModel], None] | None = None,
    ):
        super().__init__()
        self.tasks = list(tasks)
        if not self.tasks:
            raise ModelOptionError("tasks", "a model needs at least one task")
        num_classes = dict(num_classes or {})
        self.num_classes = {t: num_classes[t] for t in self.tasks if t in num_classes}
        self.backbone = backbone
        self.register_buffer("pixel_mean", torch.tensor(backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(backbone.std).view(1, 3, 1, 1), persistent=False)
        steps = backbone.steps()
        self.taps = sorted(backbone.default_taps())
        self.last_step = max(self.taps)
        for step in steps[self.last_step + 1:]:  # after the last decoder tap (e.g. the final norm): unused
            for p in step.module.parameters():
                p.requires_grad_(False)
        #: steps [0, split) form the shared prefix, run once; the rest runs on ``num_streams`` streams
        self.split = len(steps)
        self.num_streams = 1
        #: steps that carry task-specific layers (ours); empty for the baselines
        self.adapter_steps: list[int] = []
        if add_task_layers is not None:
            add_task_layers(self)
        #: recompute the task layers' activations in backward, not store them (train.activation_checkpointing)
        self.activation_checkpointing = False
        #: run the decoder on channels-last tensors (train.channels_last)
        self.channels_last = False
        later = {id(p) for st in steps[self.split:] for p in st.module.parameters()}
        self._prefix_params = [p for p in backbone.parameters() if id(p) not in later]

        # -- decoder and heads ---------------------------------------------------------------------------
        if decoder not in DECODER_LAYOUTS:
            raise ModelOptionError("decoder", f"decoder layout '{decoder}' is unknown; use one of "
                                              f"{', '.join(DECODER_LAYOUTS)}")

        def new_decoder() -> MultiScaleDecoder:
            return MultiScaleDecoder([backbone.tap_channels(i) for i in self.taps],
                                     [backbone.tap_stride(i) for i in self.taps], decoder_channels,
                                     conv=decoder_conv, resample=decoder_resample)

        # shared: the parameter names stay decoder.* (checkpoints of earlier versions load as they are)
        self.decoder = new_decoder() if decoder == "shared" else None
        self.decoders = nn.ModuleDict({t: new_decoder() for t in self.tasks}) if decoder == "per_task" else None
        heads = {}
        for t in self.tasks:
            spec = get_task(t)
            k = self.num_classes.get(t)
            if spec.kind == "classification" and k is None:
                raise ModelOptionError("num_classes", f"task '{t}' needs its number of classes "
                                                      f"(num_classes={{'{t}': K}})")
            heads[t] = TaskHead(decoder_channels, spec.out_channels(k), conv=decoder_conv)
        self.heads = nn.ModuleDict(heads)

    # -- what the network is made of (TaskNetwork) ------------------------------------------------------
    def _lora_parameters(self) -> set[int]:
        return {id(p) for m in self.backbone.modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B)}

    def _new_backbone_parameters(self) -> set[int]:
        """Parameters living in the backbone that did not come with it (LoRA factors)."""
        return self._lora_parameters()

    def pretrained_parameters(self) -> set[str]:
        """The backbone's own trainable weights (LoRA factors live in the backbone but are new)."""
        new = self._new_backbone_parameters()
        return {f"backbone.{n}" for n, p in self.backbone.named_parameters() if p.requires_grad and id(p) not in new}

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}

    def frozen_pretrained_keys(self) -> set[str]:
        """The backbone's own frozen weights and its buffers (LoRA factors, TSN maps: new, so stored)."""
        new = self._new_backbone_parameters()
        frozen = {f"backbone.{n}" for n, p in self.backbone.named_parameters()
                  if not p.requires_grad and id(p) not in new}
        buffers = {f"backbone.{n}" for n, _ in self.backbone.named_buffers()}
        return (frozen | buffers) & set(self.state_dict())

    def _claim_components(self, owner: dict[int, str]) -> None:
        """Methods that add task layers name their parameters' components here (by parameter identity)."""

    def components(self) -> dict[str, str]:
        owner: dict[int, str] = {id(p): "backbone prefix" for p in self.backbone.parameters()}  # stem included
        for st in self.backbone.steps()[self.split:]:
            owner.update({id(p): "backbone after split" for p in st.module.parameters()})
        self._claim_components(owner)
        owner.update({i: "LoRA" for i in self._lora_parameters()})
        decoders = [self.decoder] if self.decoder is not None else list(self.decoders.values())
        owner.update({id(p): "decoder" for d in decoders for p in d.parameters()})
        owner.update({id(p): "heads" for p in self.heads.parameters()})
        return {n: owner.get(id(p), "other") for n, p in self.named_parameters()}

    def task_prefixes(self) -> dict[str, str]:
        out = {f"heads.{t}.": t for t in self.tasks}
        if self.decoders is not None:
            out.update({f"decoders.{t}.": t for t in self.tasks})
        return out

    def set_speed_options(self, activation_checkpointing: bool = False, channels_last: bool = False) -> None:
        self.activation_checkpointing = activation_checkpointing
        if channels_last:
            self.channels_last = True
            self.to(memory_format=torch.channels_last)

    def freeze_tasks(self, tasks: Sequence[str]) -> None:
        """Zero-shot tasks (method.md §8): their heads (and per-task decoders) keep their carried-over values."""
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise ModelOptionError("tasks", f"cannot freeze {unknown}: the model predicts {self.tasks}")
        for t in tasks:
            for p in self.heads[t].parameters():
                p.requires_grad_(False)
            # a per-task decoder gets no gradient without labels, but AdamW's weight decay would still move it
            for p in self.decoders[t].parameters() if self.decoders is not None else ():
                p.requires_grad_(False)

    # -- forward -------------------------------------------------------------------------------------------
    def _prefix_is_frozen(self) -> bool:
        """True when nothing before the split trains: then the prefix runs without autograd."""
        return not any(p.requires_grad for p in self._prefix_params)

    def encode(self, image: torch.Tensor) -> tuple[dict[int, torch.Tensor], int]:
        """Backbone part: image (B, 3, H, W) in [0, 1] -> ({tap step: features}, number of streams T).

        Taps inside the shared prefix are (B, C, h, w); taps after the split are (T*B, C, h, w),
        stream-major.
        """
        state, feats = self.encode_prefix(image)
        if self.split > self.last_step:
            return feats, self.num_streams
        return self._encode_after_split(state, feats, image.shape[0])

    def encode_prefix(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The shared prefix, run once: image (B, 3, H, W) in [0, 1] -> (the state after it, {tap: (B, C, h, w)})."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(image.shape)}")
        x = (image - self.pixel_mean) / self.pixel_std
        steps = self.backbone.steps()
        feats: dict[int, torch.Tensor] = {}
        with torch.no_grad() if self._prefix_is_frozen() else nullcontext():
            state = self.backbone.stem(x)
            for i in range(min(self.split, self.last_step + 1)):
                state = steps[i](state)
                if i in self.taps:
                    feats[i] = self.backbone.feature_map(state, i)
        return state, feats

    def _encode_after_split(self, state: torch.Tensor, feats: dict[int, torch.Tensor], batch: int
                            ) -> tuple[dict[int, torch.Tensor], int]:
        """The steps after the split up to the last tap, on one stream (methods with task layers override it)."""
        steps = self.backbone.steps()
        for i in range(self.split, self.last_step + 1):
            state = steps[i](state)
            if i in self.taps:
                feats[i] = self.backbone.feature_map(state, i)
        return feats, 1

    def decode(self, feats: dict[int, torch.Tensor], streams: int, image_hw: tuple[int, int],
               tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Decoder and heads: taps -> {task: (B, C_t, H, W)} at the input resolution. ``tasks`` (default: all)
        are the tasks of the streams, in stream order."""
        tasks = self.tasks if tasks is None else list(tasks)
        if self.channels_last:
            feats = {i: f.contiguous(memory_format=torch.channels_last) for i, f in feats.items()}
        if self.decoders is not None:  # per task: task t's decoder on task t's stream (or the one stream)
            fused = {task: self._decode(self.decoders[task], self._stream(feats, streams, t), image_hw, 1)[0]
                     for t, task in enumerate(tasks)}
        else:
            shared = self._decode(self.decoder, feats, image_hw, streams)  # (T, B, ch, H/4, W/4)
            fused = {task: shared[t if streams > 1 else 0] for t, task in enumerate(tasks)}
        return {task: F.interpolate(self.heads[task](fused[task]), size=image_hw, mode="bilinear",
                                    align_corners=False) for task in tasks}

    def _stream(self, feats: dict[int, torch.Tensor], streams: int, t: int) -> dict[int, torch.Tensor]:
        """Stream ``t``'s taps: (B, C, h, w) each (prefix taps are shared, later ones stream-major)."""
        if streams == 1:
            return feats
        return {i: f if i < self.split else f.view(streams, -1, *f.shape[1:])[t] for i, f in feats.items()}

    def _decode(self, decoder: MultiScaleDecoder, feats: dict[int, torch.Tensor], image_hw: tuple[int, int],
                streams: int) -> torch.Tensor:
        """Taps -> fused (T, B, ch, H/4, W/4); a prefix tap (B, ...) is projected once and shared by every
        stream, a later tap is (T*B, ...)."""
        T = streams
        projected = []
        for k, i in enumerate(self.taps):
            p = decoder.project(k, feats[i], image_hw)
            if T > 1 and i < self.split:
                p = p.unsqueeze(0).expand(T, *p.shape).reshape(T * p.shape[0], *p.shape[1:])
            projected.append(p)
        fused = decoder.fuse_levels(projected, image_hw)
        return fused.view(T, -1, *fused.shape[1:])

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (B, 3, H, W) in [0, 1] -> {task: raw prediction (B, C_t, H, W)}."""
        feats, T = self.encode(image)
        return self.decode(feats, T, (image.shape[-2], image.shape[-1]))
