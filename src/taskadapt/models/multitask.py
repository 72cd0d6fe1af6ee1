"""MultiTaskModel: image -> {task: dense prediction}, for every method (method.md §1).

Data flow of ours (``adapters``)::

    image (B, 3, H, W) -> normalise -> frozen backbone prefix, run ONCE   (no activations kept)
      -> z (B, ...)                                    <- TROA reads dL_t/dz here
      -> expand to T task streams (T*B, ...), conditioning w_t = TROA mix of task embeddings
      -> adapter layers: pretrained block with TSN norms and a TAA attention bias, then bottleneck
      -> taps -> shared multi-scale decoder (prefix taps projected once, then shared by the streams)
      -> per-task head on its own stream -> upsample to (H, W)

The baselines use the same code with one stream (decoder once, heads on the shared features), and
``stl`` is one independent such model per task (:class:`SingleTaskEnsemble`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from taskadapt.errors import ConfigError
from taskadapt.models.adapters import Bottleneck, TaskAttentionBias, TaskConditioning, TaskScaledNorm
from taskadapt.models.backbones import Backbone
from taskadapt.models.decoder import DECODER_LAYOUTS, MultiScaleDecoder, TaskHead
from taskadapt.models.lora import LoRALinear, add_lora
from taskadapt.models.methods import MethodPlan, get_method
from taskadapt.models.troa import TaskAffinity
from taskadapt.tasks import get_task


def default_adapter_blocks(backbone: Backbone) -> list[int]:
    """The last quarter of the transformer blocks (ViT and Swin); PVTv2: its last stage.

    [ours] On Swin-S/B (24 blocks) the last quarter is exactly the paper's figure: stage-3 blocks
    15-18 and stage 4. Applying "last 4 of stage 3 + stage 4" literally to Swin-T (12 blocks) would
    adapt half the network, and a last third on ViT-12: running those blocks once per task costs 2.0-2.5x
    a single-task forward, against about 1.75x for a quarter (benchmarks/bench_model.py). PVTv2's
    last stage is the one with square attention (no spatial reduction), which TAA needs.
    """
    steps = backbone.steps()
    stages = [steps[i].stage for i in backbone.block_steps()]
    if backbone.family == "pvt_v2":
        return [k for k, s in enumerate(stages) if s == max(stages)]
    n = len(stages)
    return list(range(n - max(1, -(-n // 4)), n))


def _attention_tokens(backbone: Backbone, step_indices: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(N_q, N_kv) of each listed block, from one dry run on a blank image of the model's size."""
    wanted = set(step_indices)
    out: dict[int, tuple[int, int]] = {}
    with torch.no_grad():
        state = backbone.stem(torch.zeros(1, 3, *backbone.img_size))
        for i, step in enumerate(backbone.steps()):
            if i in wanted:
                out[i] = step.module.attention_tokens(state)
            if i >= max(wanted):
                break
            state = step(state)
    return out


class AdapterLayer(nn.Module):
    """The trainable parts added to one pretrained block: TAA bias generator and bottleneck.

    The block itself stays in the backbone (its norms replaced by TSN there), so parameter names of
    pretrained weights never change.
    """

    def __init__(self, dim: int, bottleneck_ratio: float, bottleneck_norm: nn.Module,
                 taa: TaskAttentionBias | None):
        super().__init__()
        self.taa = taa
        self.bottleneck = Bottleneck(dim, bottleneck_ratio, bottleneck_norm)


class MultiTaskModel(nn.Module):
    """One backbone, one shared decoder, one head per task. ``forward(image)`` -> {task: (B, C_t, H, W)}.

    Raw outputs (logits for semseg/edge, metres for depth, unnormalised normals): pass them to the
    task specs' ``loss`` and ``postprocess``.
    """

    def __init__(
        self,
        backbone: Backbone,
        tasks: Sequence[str],
        num_classes: Mapping[str, int] | None = None,
        plan: MethodPlan | str = "adapters",
        *,
        adapter_blocks: Sequence[int] | None = None,
        bottleneck_ratio: float = 4.0,
        train_block_weights: bool = False,
        task_embed_dim: int | None = None,
        task_embed_std: float = 0.02,
        decoder_channels: int = 64,
        decoder: str = "shared",
        decoder_conv: str = "full",
        decoder_resample: str = "interpolate",
        prefix_lora: bool = False,
        tsn_hidden: int = 32,
        tsn_lr: str = "backbone",
        tsn_task_offset: bool = False,
        taa_per_head: bool = False,
        taa_block_size: int | None = None,
        taa_align_to_grid: bool = False,
        troa_measure: str = "projection",
        troa_momentum: float = 0.9,
        lora_rank: int = 4,
        lora_alpha: float = 8.0,
    ):
        super().__init__()
        self.plan = get_method(plan) if isinstance(plan, str) else plan
        self.tasks = list(tasks)
        if not self.tasks:
            raise ConfigError("a model needs at least one task")
        num_classes = dict(num_classes or {})
        self.num_classes = {t: num_classes[t] for t in self.tasks if t in num_classes}
        self.backbone = backbone
        self.register_buffer("pixel_mean", torch.tensor(backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(backbone.std).view(1, 3, 1, 1), persistent=False)
        plan = self.plan
        steps = backbone.steps()
        blocks = backbone.block_steps()
        self.tsn_lr = tsn_lr
        self.taps = sorted(backbone.default_taps())
        self.last_step = max(self.taps)

        for p in backbone.parameters():
            p.requires_grad_(plan.train_backbone)
        if plan.lora:
            add_lora(backbone, rank=lora_rank, alpha=lora_alpha)
        for step in steps[self.last_step + 1:]:  # after the last decoder tap (e.g. the final norm): unused
            for p in step.module.parameters():
                p.requires_grad_(False)

        # -- adapter layers ---------------------------------------------------------------------------
        self.adapter_steps: list[int] = []
        self.adapter_layers = nn.ModuleDict()
        self.conditioning = TaskConditioning()
        self.split = len(steps)  # steps [0, split) form the shared prefix
        if plan.adapters:
            chosen = list(adapter_blocks) if adapter_blocks is not None else default_adapter_blocks(backbone)
            bad = [k for k in chosen if not 0 <= k < len(blocks)]
            if bad:
                raise ConfigError(f"config key 'model.adapter_blocks' has indices {bad} out of range: "
                                  f"{backbone.name} has {len(blocks)} blocks (0..{len(blocks) - 1})")
            self.adapter_steps = sorted({blocks[k] for k in chosen})
            self.split = self.adapter_steps[0]
            if self.split > self.last_step:
                raise ConfigError("the adapter blocks come after the last decoder tap; choose earlier blocks")
            if prefix_lora:  # [ours] the shared prefix adapts too, once for every task (method.md)
                for step in steps[:self.split]:
                    add_lora(step.module, rank=lora_rank, alpha=lora_alpha)
            if task_embed_dim is None:
                window = getattr(backbone, "window_size", None)
                task_embed_dim = int(window) ** 3 if backbone.family == "swin" and window else 128
            # N(0, task_embed_std^2): the conditioning reaches TSN/TAA only through maps of w, so the scale
            # of w sets how fast the task-specific paths can grow from their zero init (docs/method.md)
            self.task_embeddings = nn.Parameter(torch.randn(len(self.tasks), task_embed_dim) * task_embed_std)
            self.affinity = TaskAffinity(len(self.tasks), troa_measure, troa_momentum)
            tokens = _attention_tokens(backbone, self.adapter_steps) if plan.taa else {}
            layers = {}
            for i in self.adapter_steps:
                block = steps[i].module
                dim = block.norm1.normalized_shape[0]
                if train_block_weights:
                    for p in block.parameters():
                        p.requires_grad_(True)
                if plan.tsn:
                    D, ctx = task_embed_dim, self.conditioning
                    T = len(self.tasks) if tsn_task_offset else 0
                    block.norm1 = TaskScaledNorm.from_layernorm(block.norm1, D, ctx, tsn_hidden, T)
                    block.norm2 = TaskScaledNorm.from_layernorm(block.norm2, D, ctx, tsn_hidden, T)
                    bn_norm: nn.Module = TaskScaledNorm(dim, D, ctx, eps=1e-6, hidden=tsn_hidden, num_tasks=T)
                else:
                    bn_norm = nn.LayerNorm(dim, eps=1e-6)
                taa = None
                if plan.taa:
                    n_q, n_kv = tokens[i]
                    if n_q != n_kv:
                        raise ConfigError(
                            f"TAA needs square attention but {steps[i].name} attends {n_q} queries to {n_kv} keys "
                            "(spatial reduction); put the adapters in the last stage or set model.taa.enabled=false"
                        )
                    heads = block.attn.num_heads
                    size = taa_block_size or self._default_taa_block(backbone, n_q)
                    prefix = getattr(backbone, "num_prefix_tokens", 0) if taa_align_to_grid else 0
                    taa = TaskAttentionBias(n_q, size, task_embed_dim, heads, taa_per_head, prefix)
                layers[str(i)] = AdapterLayer(dim, bottleneck_ratio, bn_norm, taa)
            self.adapter_layers = nn.ModuleDict(layers)

        #: the trainer turns this off on steps where TROA does not update (model.troa.every > 1)
        self.capture_affinity = True
        #: recompute the adapter layers' activations in backward, not store them (train.activation_checkpointing)
        self.activation_checkpointing = False
        #: run the decoder on channels-last tensors (train.channels_last)
        self.channels_last = False
        later = {id(p) for st in steps[self.split:] for p in st.module.parameters()}
        self._prefix_params = [p for p in backbone.parameters() if id(p) not in later]

        # -- decoder and heads ---------------------------------------------------------------------------
        if decoder not in DECODER_LAYOUTS:
            raise ConfigError(f"decoder layout '{decoder}' is unknown; use one of {', '.join(DECODER_LAYOUTS)}")

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
                raise ConfigError(f"task '{t}' needs its number of classes (num_classes={{'{t}': K}})")
            heads[t] = TaskHead(decoder_channels, spec.out_channels(k), conv=decoder_conv)
        self.heads = nn.ModuleDict(heads)

    def pretrained_parameter_names(self) -> set[str]:
        """Trainable parameters that start from pretrained values and fine-tune at ``train.backbone_lr``
        (the trainer asks; everything else trains at ``train.lr``): the backbone's own weights, and TSN's
        gamma'/beta' unless ``model.tsn.lr=new``. LoRA factors and TSN's maps live in the backbone but are new."""
        new: set[int] = set()
        for m in self.backbone.modules():
            if isinstance(m, LoRALinear):
                new |= {id(m.lora_A), id(m.lora_B)}
            elif isinstance(m, TaskScaledNorm):
                new |= {id(p) for p in m.film.parameters()}
                if m.task_offset is not None:
                    new.add(id(m.task_offset))
                if self.tsn_lr == "new":
                    new |= {id(m.weight), id(m.bias)}
        return {f"backbone.{n}" for n, p in self.backbone.named_parameters() if p.requires_grad and id(p) not in new}

    @staticmethod
    def _default_taa_block(backbone: Backbone, num_tokens: int) -> int:
        """Swin: the window; else about one row of patches, the square root of the token count with one
        class token counted (register tokens are left out, so a ViT with registers gets the same
        block size as one without)."""
        window = getattr(backbone, "window_size", None)
        if backbone.family == "swin" and window:
            return int(window)
        extra = max(0, getattr(backbone, "num_prefix_tokens", 1) - 1)
        return max(1, int(round((num_tokens - extra) ** 0.5)))

    # -- forward -------------------------------------------------------------------------------------------
    @property
    def streams(self) -> bool:
        return self.plan.streams

    @property
    def troa_active(self) -> bool:
        return self.plan.streams and self.plan.troa

    def _prefix_is_frozen(self) -> bool:
        """True when nothing before the split trains: then the prefix runs without autograd."""
        return not any(p.requires_grad for p in self._prefix_params)

    def conditioning_vectors(self) -> torch.Tensor:
        """w (T, D): each task's conditioning vector (affinity-weighted task embeddings)."""
        return self.affinity.mix(self.task_embeddings, enabled=self.plan.troa)

    def encode(self, image: torch.Tensor) -> tuple[dict[int, torch.Tensor], int]:
        """Backbone part: image (B, 3, H, W) in [0, 1] -> ({tap step: features}, number of streams T).

        Taps inside the shared prefix are (B, C, h, w); taps after the split are (T*B, C, h, w),
        stream-major. T is the number of tasks for stream methods, else 1.
        """
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(image.shape)}")
        B = image.shape[0]
        x = (image - self.pixel_mean) / self.pixel_std
        steps = self.backbone.steps()
        feats: dict[int, torch.Tensor] = {}
        with torch.no_grad() if self._prefix_is_frozen() else nullcontext():
            state = self.backbone.stem(x)
            for i in range(min(self.split, self.last_step + 1)):
                state = steps[i](state)
                if i in self.taps:
                    feats[i] = self.backbone.feature_map(state, i)

        T = len(self.tasks) if self.streams else 1
        if self.split > self.last_step:
            return feats, T
        z = state
        capture = self.training and self.troa_active and self.capture_affinity and torch.is_grad_enabled()
        if capture and not z.requires_grad:
            z = z.detach().requires_grad_(True)  # gradients stop here: the prefix is frozen
        z_exp = z.unsqueeze(0).expand(T, *z.shape)  # (T, B, ...) -- TROA reads its gradient
        if capture:
            self.affinity.watch(z_exp)
        s = z_exp.reshape(T * B, *z.shape[1:])
        w = self.conditioning_vectors() if self.streams else None
        self.conditioning.w = w
        try:
            checkpointing = self.activation_checkpointing and self.training and torch.is_grad_enabled()
            for i in range(self.split, self.last_step + 1):
                if checkpointing:
                    # the recomputation runs during backward, after this forward has returned: the block
                    # gets w explicitly and sets the shared conditioning itself
                    s = torch.utils.checkpoint.checkpoint(self._run_step, i, s, w, B, use_reentrant=False)
                else:
                    s = self._run_step(i, s, w, B)
                if i in self.taps:
                    feats[i] = self.backbone.feature_map(s, i)
        finally:
            self.conditioning.w = None
        return feats, T

    def _run_step(self, i: int, s: torch.Tensor, w: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Backbone step ``i`` after the split, with its adapter layer (TAA bias, bottleneck) if it has one.
        s: (T*B, ...) stream-major tokens."""
        steps = self.backbone.steps()
        previous, self.conditioning.w = self.conditioning.w, w
        try:
            layer = self.adapter_layers[str(i)] if i in self.adapter_steps else None
            bias = layer.taa(w, batch) if layer is not None and layer.taa is not None else None
            s = steps[i](s, attn_bias=bias) if bias is not None else steps[i](s)
            if layer is not None:
                s = layer.bottleneck(s)
            return s
        finally:
            self.conditioning.w = previous

    def decode(self, feats: dict[int, torch.Tensor], streams: int, image_hw: tuple[int, int]
               ) -> dict[str, torch.Tensor]:
        """Decoder and heads: taps -> {task: (B, C_t, H, W)} at the input resolution."""
        if self.channels_last:
            feats = {i: f.contiguous(memory_format=torch.channels_last) for i, f in feats.items()}
        if self.decoders is not None:  # per task: task t's decoder on task t's stream (or the one stream)
            fused = {task: self._decode(self.decoders[task], self._stream(feats, streams, t), image_hw, 1)[0]
                     for t, task in enumerate(self.tasks)}
        else:
            shared = self._decode(self.decoder, feats, image_hw, streams)  # (T, B, ch, H/4, W/4)
            fused = {task: shared[t if self.streams else 0] for t, task in enumerate(self.tasks)}
        return {task: F.interpolate(self.heads[task](fused[task]), size=image_hw, mode="bilinear",
                                    align_corners=False) for task in self.tasks}

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

    @torch.no_grad()
    def update_affinity(self, loss_weights: torch.Tensor, present: torch.Tensor | None = None,
                        samples: int | None = None) -> bool:
        """After ``loss.backward()``: fold the captured per-task gradients into the affinity EMA
        (of the first ``samples`` images of the batch; default all)."""
        if not self.troa_active:
            return False
        return self.affinity.update(loss_weights, present, samples)

    def freeze_tasks(self, tasks: Sequence[str]) -> None:
        """Zero-shot tasks (method.md §8): their head and task embedding keep their carried-over values.

        The head stops requiring gradients. The embedding rows are rows of one shared parameter (other
        tasks' conditioning vectors mix them through TROA), so a hook zeroes their gradient: with Adam's
        state starting at zero, a zero gradient is exactly no step. Their affinity row and column stay
        as they are because the task never has labels (TaskAffinity only updates labelled pairs).
        """
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise ConfigError(f"cannot freeze {unknown}: the model predicts {self.tasks}")
        for t in tasks:
            for p in self.heads[t].parameters():
                p.requires_grad_(False)
        if tasks and self.plan.adapters:
            rows = torch.tensor([self.tasks.index(t) for t in tasks])
            keep = torch.ones(len(self.tasks), 1)
            keep[rows] = 0.0
            self.task_embeddings.register_hook(lambda g: g * keep.to(g.device, g.dtype))
            for m in self.modules():  # TSN's free per-task offsets (model.tsn.task_offset): the same rows
                if isinstance(m, TaskScaledNorm) and m.task_offset is not None:
                    m.task_offset.register_hook(lambda g: g * keep.to(g.device, g.dtype))


class SingleTaskEnsemble(nn.Module):
    """``stl``: one independent :class:`MultiTaskModel` per task (nothing shared)."""

    def __init__(self, models: Mapping[str, MultiTaskModel]):
        super().__init__()
        self.tasks = list(models)
        self.models = nn.ModuleDict(models)
        self.plan = get_method("stl")

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: self.models[t](image)[t] for t in self.tasks}

    def update_affinity(self, loss_weights: torch.Tensor, present: torch.Tensor | None = None,
                        samples: int | None = None) -> bool:
        return False

    def pretrained_parameter_names(self) -> set[str]:
        """Each single-task model's pretrained parameters, named as in this ensemble."""
        return {f"models.{t}.{n}" for t, m in self.models.items() for n in m.pretrained_parameter_names()}

    def freeze_tasks(self, tasks: Sequence[str]) -> None:
        """Zero-shot tasks: their single-task models never train."""
        for t in tasks:
            for p in self.models[t].parameters():
                p.requires_grad_(False)
