"""Ours: frozen backbone prefix run once, task streams through adapter layers with TAA, TSN and
TROA-conditioned task embeddings, shared decoder, per-task heads (Bhattacharjee et al., ICCV 2023).

Data flow of :class:`AdapterModel` (method.md §1)::

    image -> frozen backbone prefix, run ONCE (no activations kept)
      -> z (B, ...)                                    <- TROA reads dL_t/dz here
      -> expand to T task streams (T*B, ...), conditioning w_t = TROA mix of task embeddings
      -> adapter layers: pretrained block with TSN norms and a TAA attention bias, then bottleneck
      -> taps -> decoder (prefix taps projected once, then shared by the streams) -> per-task heads

The ablations ``no_taa``, ``no_tsn`` and ``no_troa`` are this method with one part switched off.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

from taskadapt.models.adapters import Bottleneck, TaskAttentionBias, TaskConditioning, TaskScaledNorm
from taskadapt.models.backbones import Backbone
from taskadapt.models.lora import add_lora
from taskadapt.models.methods.base import (
    DECODER_OPTIONS,
    LORA_OPTIONS,
    BackboneSource,
    Method,
    check_options,
    make_backbone,
    pick,
    register_method,
)
from taskadapt.models.multitask import ModelOptionError, MultiTaskModel
from taskadapt.models.troa import TaskAffinity

#: model.tsn.lr values: the learning rate of TSN's gamma'/beta' (initialised from the pretrained LayerNorm)
TSN_LEARNING_RATES = ("backbone", "new")


@dataclass(frozen=True)
class AdapterOptions:
    """The options of ours (config keys in docs/configuration.md; ``taa``/``tsn``/``troa`` switch the parts)."""

    adapter_blocks: Sequence[int] | None = None
    bottleneck_ratio: float = 4.0
    train_block_weights: bool = False
    task_embed_dim: int | None = None
    task_embed_std: float = 0.02
    prefix_lora: bool = False
    tsn_hidden: int = 32
    tsn_lr: str = "backbone"
    tsn_task_offset: bool = False
    taa_per_head: bool = False
    taa_block_size: int | None = None
    taa_align_to_grid: bool = False
    troa_measure: str = "projection"
    troa_momentum: float = 0.9
    lora_rank: int = 4
    lora_alpha: float = 8.0
    taa: bool = True
    tsn: bool = True
    troa: bool = True
    task_groups: Sequence[Sequence[str]] | None = None


ADAPTER_OPTIONS = tuple(f.name for f in dataclasses.fields(AdapterOptions))


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


def _default_taa_block(backbone: Backbone, num_tokens: int) -> int:
    """Swin: the window; else about one row of patches, the square root of the token count with one
    class token counted (register tokens are left out, so a ViT with registers gets the same
    block size as one without)."""
    window = getattr(backbone, "window_size", None)
    if backbone.family == "swin" and window:
        return int(window)
    extra = max(0, getattr(backbone, "num_prefix_tokens", 1) - 1)
    return max(1, int(round((num_tokens - extra) ** 0.5)))


def _group_bounds(tasks: Sequence[str], groups: Sequence[Sequence[str]] | None) -> list[tuple[int, int]]:
    """``model.task_groups`` as index ranges [(lo, hi), ...] over ``tasks``; one group of every task by default."""
    if groups is None:
        return [(0, len(tasks))]
    if [t for g in groups for t in g] != list(tasks) or not all(groups):
        raise ModelOptionError("task_groups", f"task groups {[list(g) for g in groups]} must split the tasks "
                                              f"{list(tasks)} into non-empty groups, in order")
    ends = list(itertools.accumulate(len(g) for g in groups))
    return list(zip([0, *ends[:-1]], ends, strict=True))


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


class AdapterModel(MultiTaskModel):
    """:class:`MultiTaskModel` with T task streams through adapter layers after a shared, frozen prefix.

    The backbone comes frozen (the method sets that); the adapter blocks' pretrained weights train only
    with ``train_block_weights``. Parameter names are those of earlier versions (``task_embeddings``,
    ``affinity.*``, ``adapter_layers.<step>.*``, TSN inside the backbone's blocks), so checkpoints load.
    """

    def __init__(self, backbone: Backbone, tasks: Sequence[str], num_classes: Mapping[str, int] | None = None,
                 options: AdapterOptions | None = None, **decoder: Any):
        opts = options or AdapterOptions()
        super().__init__(backbone, tasks, num_classes, add_task_layers=lambda m: m._add_adapters(opts), **decoder)

    def _add_adapters(self, o: AdapterOptions) -> None:
        """Called by MultiTaskModel.__init__ before the decoder is built (parameters in data-flow order)."""
        self.adapter_options = o
        backbone = self.backbone
        steps, blocks = backbone.steps(), backbone.block_steps()
        self.num_streams = len(self.tasks)
        self.conditioning = TaskConditioning()
        self.group_bounds = _group_bounds(self.tasks, o.task_groups)
        chosen = list(o.adapter_blocks) if o.adapter_blocks is not None else default_adapter_blocks(backbone)
        bad = [k for k in chosen if not 0 <= k < len(blocks)]
        if bad:
            raise ModelOptionError("adapter_blocks", f"indices {bad} are out of range: {backbone.name} has "
                                                     f"{len(blocks)} blocks (0..{len(blocks) - 1})")
        self.adapter_steps = sorted({blocks[k] for k in chosen})
        self.split = self.adapter_steps[0]
        if self.split > self.last_step:
            raise ModelOptionError("adapter_blocks", "the adapter blocks come after the last decoder tap; "
                                                     "choose earlier blocks")
        if o.prefix_lora:  # [ours] the shared prefix adapts too, once for every task (method.md)
            for step in steps[:self.split]:
                add_lora(step.module, rank=o.lora_rank, alpha=o.lora_alpha)
        D = o.task_embed_dim
        if D is None:
            window = getattr(backbone, "window_size", None)
            D = int(window) ** 3 if backbone.family == "swin" and window else 128
        # N(0, task_embed_std^2): the conditioning reaches TSN/TAA only through maps of w, so the scale
        # of w sets how fast the task-specific paths can grow from their zero init (docs/method.md)
        self.task_embeddings = nn.Parameter(torch.randn(len(self.tasks), D) * o.task_embed_std)
        self.affinity = TaskAffinity(len(self.tasks), o.troa_measure, o.troa_momentum)
        tokens = _attention_tokens(backbone, self.adapter_steps) if o.taa else {}
        layers = {}
        for i in self.adapter_steps:
            block = steps[i].module
            dim = block.norm1.normalized_shape[0]
            if o.train_block_weights:
                for p in block.parameters():
                    p.requires_grad_(True)
            if o.tsn:
                ctx, T = self.conditioning, len(self.tasks) if o.tsn_task_offset else 0
                block.norm1 = TaskScaledNorm.from_layernorm(block.norm1, D, ctx, o.tsn_hidden, T)
                block.norm2 = TaskScaledNorm.from_layernorm(block.norm2, D, ctx, o.tsn_hidden, T)
                bn_norm: nn.Module = TaskScaledNorm(dim, D, ctx, eps=1e-6, hidden=o.tsn_hidden, num_tasks=T)
            else:
                bn_norm = nn.LayerNorm(dim, eps=1e-6)
            taa = None
            if o.taa:
                n_q, n_kv = tokens[i]
                if n_q != n_kv:
                    raise ModelOptionError(
                        "taa", f"TAA needs square attention but {steps[i].name} attends {n_q} queries to {n_kv} "
                               "keys (spatial reduction); put the adapters in the last stage or switch TAA off")
                size = o.taa_block_size or _default_taa_block(backbone, n_q)
                prefix = getattr(backbone, "num_prefix_tokens", 0) if o.taa_align_to_grid else 0
                taa = TaskAttentionBias(n_q, size, D, block.attn.num_heads, o.taa_per_head, prefix)
            layers[str(i)] = AdapterLayer(dim, o.bottleneck_ratio, bn_norm, taa)
        self.adapter_layers = nn.ModuleDict(layers)

    # -- what the network is made of -----------------------------------------------------------------
    def _tsn_modules(self, within: nn.Module | None = None) -> list[TaskScaledNorm]:
        """The TSN norms in ``within`` (default: the whole model, the bottlenecks' norms included)."""
        return [m for m in (within or self).modules() if isinstance(m, TaskScaledNorm)]

    def _new_backbone_parameters(self) -> set[int]:
        """LoRA factors, and TSN's maps and offsets (new), and with ``tsn_lr=new`` TSN's gamma'/beta' too."""
        new = super()._new_backbone_parameters()
        for m in self._tsn_modules(self.backbone):
            new |= {id(p) for p in m.film.parameters()}
            if m.task_offset is not None:
                new.add(id(m.task_offset))
            if self.adapter_options.tsn_lr == "new":
                new |= {id(m.weight), id(m.bias)}
        return new

    def no_weight_decay(self) -> set[str]:
        """The backbone's embeddings, the task embeddings and TSN's per-task offsets (rows of embeddings)."""
        offsets = {id(m.task_offset) for m in self._tsn_modules() if m.task_offset is not None}
        return super().no_weight_decay() | {"task_embeddings"} | {
            n for n, p in self.named_parameters() if id(p) in offsets}

    def _claim_components(self, owner: dict[int, str]) -> None:
        steps = self.backbone.steps()
        for i in self.adapter_steps:
            owner.update({id(p): "adapter blocks (pretrained)" for p in steps[i].module.parameters()})
        for m in self._tsn_modules(self.backbone):  # the blocks' norms; the bottleneck's norm is the bottleneck's
            owner.update({id(p): "TSN" for p in m.parameters()})
        for layer in self.adapter_layers.values():
            owner.update({id(p): "bottleneck" for p in layer.bottleneck.parameters()})
            if layer.taa is not None:
                owner.update({id(p): "TAA" for p in layer.taa.parameters()})
        owner[id(self.task_embeddings)] = "task embeddings"

    def task_rows(self) -> dict[str, int]:
        """The task embeddings and TSN offsets (a row per task), the affinity matrix (rows and columns)."""
        offsets = {id(m.task_offset) for m in self._tsn_modules() if m.task_offset is not None}
        out = {n: 1 for n, p in self.named_parameters() if id(p) in offsets}
        return {"task_embeddings": 1, "affinity.affinity": 2, **out}

    def affinity_matrix(self) -> torch.Tensor | None:
        """The TROA matrix (the identity when TROA is off: ``no_troa`` never updates it)."""
        return self.affinity.affinity

    def freeze_tasks(self, tasks: Sequence[str]) -> None:
        """Zero-shot tasks (method.md §8): their head and task embedding keep their carried-over values.

        The head stops requiring gradients. The embedding rows are rows of one shared parameter (other
        tasks' conditioning vectors mix them through TROA), so a hook zeroes their gradient: with Adam's
        state starting at zero, a zero gradient is exactly no step. A zero-shot task's affinity row and
        column stay as they are because it never has labels (TaskAffinity only updates labelled pairs);
        the affinity between two frozen tasks is fixed too, since they may have labels (``taskadapt extend``
        scores the old tasks so that TROA measures how they relate to the new one).
        """
        super().freeze_tasks(tasks)
        if not tasks:
            return
        rows = torch.tensor([self.tasks.index(t) for t in tasks])
        keep = torch.ones(len(self.tasks), 1)
        keep[rows] = 0.0
        frozen = keep.view(-1) == 0
        self.affinity.fixed = frozen.view(-1, 1) & frozen.view(1, -1)  # pairs of frozen tasks keep their affinity
        self.task_embeddings.register_hook(lambda g: g * keep.to(g.device, g.dtype))
        for m in self._tsn_modules():  # TSN's free per-task offsets (model.tsn.task_offset): the same rows
            if m.task_offset is not None:
                m.task_offset.register_hook(lambda g: g * keep.to(g.device, g.dtype))

    # -- forward -------------------------------------------------------------------------------------------
    def conditioning_vectors(self, group: tuple[int, int] | None = None) -> torch.Tensor:
        """w (T, D): each task's conditioning vector (affinity-weighted task embeddings); for ``group`` (lo, hi)
        only its tasks' rows (hi - lo, D), mixed over the tasks of that group and the earlier ones."""
        if group is None:
            return self.affinity.mix(self.task_embeddings, enabled=self.adapter_options.troa)
        lo, hi = group
        return self.affinity.mix(self.task_embeddings[:hi], enabled=self.adapter_options.troa)[lo:hi]

    def _expand(self, state: torch.Tensor) -> torch.Tensor:
        """z (B, ...) -> (T, B, ...), every task's copy of the shared representation; TROA reads its gradient."""
        z = state
        capture = self.training and self.adapter_options.troa and self.capture_affinity and torch.is_grad_enabled()
        if capture and not z.requires_grad:
            z = z.detach().requires_grad_(True)  # gradients stop here: the prefix is frozen
        z_exp = z.unsqueeze(0).expand(self.num_streams, *z.shape)
        if capture:
            self.affinity.watch(z_exp)
        return z_exp

    def _encode_after_split(self, state: torch.Tensor, feats: dict[int, torch.Tensor], batch: int
                            ) -> tuple[dict[int, torch.Tensor], int]:
        """z (B, ...) -> T stream-major streams (T*B, ...) through the adapter steps up to the last tap."""
        T = self.num_streams
        s = self._expand(state).reshape(T * batch, *state.shape[1:])
        return self._run_streams(s, self.conditioning_vectors(), None, feats, batch), T

    def _run_streams(self, s: torch.Tensor, w: torch.Tensor, rows: slice | None, feats: dict[int, torch.Tensor],
                     batch: int) -> dict[int, torch.Tensor]:
        """Streams s (K*B, ...) of the tasks ``rows`` (None: all) with conditioning w (K, D) through the steps
        after the split; their taps are added to ``feats``."""
        checkpointing = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i in range(self.split, self.last_step + 1):
            if checkpointing:
                # the recomputation runs during backward, after this forward has returned: the block
                # gets w explicitly and sets the shared conditioning itself
                s = torch.utils.checkpoint.checkpoint(self._run_step, i, s, w, batch, rows, use_reentrant=False)
            else:
                s = self._run_step(i, s, w, batch, rows)
            if i in self.taps:
                feats[i] = self.backbone.feature_map(s, i)
        return feats

    def _run_step(self, i: int, s: torch.Tensor, w: torch.Tensor, batch: int, rows: slice | None = None
                  ) -> torch.Tensor:
        """Backbone step ``i`` after the split, with its adapter layer (TAA bias, bottleneck) if it has one.
        s: (K*B, ...) stream-major tokens of the tasks ``rows``, w (K, D) their conditioning."""
        steps = self.backbone.steps()
        previous = self.conditioning.w, self.conditioning.rows
        self.conditioning.w, self.conditioning.rows = w, rows
        try:
            layer = self.adapter_layers[str(i)] if i in self.adapter_steps else None
            bias = layer.taa(w, batch) if layer is not None and layer.taa is not None else None
            s = steps[i](s, attn_bias=bias) if bias is not None else steps[i](s)
            if layer is not None:
                s = layer.bottleneck(s)
            return s
        finally:
            self.conditioning.w, self.conditioning.rows = previous

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (B, 3, H, W) in [0, 1] -> {task: raw prediction (B, C_t, H, W)}.

        With task groups (``model.task_groups``), the prefix still runs once; each group's streams then run
        on their own, conditioned on a mix of their own and the earlier groups' tasks, so the earlier groups
        compute exactly what they computed before a group was added.
        """
        if len(self.group_bounds) == 1:
            return super().forward(image)
        state, prefix_feats = self.encode_prefix(image)
        batch, size = image.shape[0], (image.shape[-2], image.shape[-1])
        z_exp = self._expand(state)
        out: dict[str, torch.Tensor] = {}
        for lo, hi in self.group_bounds:
            s = z_exp[lo:hi].reshape((hi - lo) * batch, *state.shape[1:])
            w = self.conditioning_vectors((lo, hi))
            feats = self._run_streams(s, w, slice(lo, hi), dict(prefix_feats), batch)
            out.update(self.decode(feats, hi - lo, size, self.tasks[lo:hi]))
        return {t: out[t] for t in self.tasks}

    @torch.no_grad()
    def update_affinity(self, loss_weights: torch.Tensor, present: torch.Tensor | None = None,
                        samples: int | None = None) -> bool:
        if not self.adapter_options.troa:
            return False
        return self.affinity.update(loss_weights, present, samples)


@register_method
class Adapters(Method):
    name = "adapters"
    summary = "frozen prefix once; per-task streams through adapter layers (TAA + TSN + bottleneck), TROA"
    options = ADAPTER_OPTIONS + LORA_OPTIONS
    learns_affinity = True
    #: the parts of the adapter layer this method keeps (the ablations switch one off)
    taa, tsn, troa = True, True, True

    def build(self, backbone: BackboneSource, tasks: Sequence[str], num_classes: Mapping[str, int] | None = None,
              **options: Any) -> AdapterModel:
        check_options(options)
        opts = AdapterOptions(**pick(options, ADAPTER_OPTIONS))
        opts = dataclasses.replace(opts, taa=opts.taa and self.taa, tsn=opts.tsn and self.tsn,
                                   troa=opts.troa and self.troa)
        net = make_backbone(backbone).requires_grad_(False)
        return AdapterModel(net, tasks, num_classes, opts, **pick(options, DECODER_OPTIONS))


@register_method
class NoTAA(Adapters):
    name = "no_taa"
    summary = "ours without task-adapted attention"
    taa = False


@register_method
class NoTSN(Adapters):
    name = "no_tsn"
    summary = "ours with plain LayerNorms instead of TSN"
    tsn = False


@register_method
class NoTROA(Adapters):
    name = "no_troa"
    summary = "ours with each task's own embedding (no affinity mixing)"
    troa = False
    learns_affinity = False
