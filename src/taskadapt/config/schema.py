"""The configuration schema: one typed dataclass per section, with the defaults and a comment per key.

This module imports no registry (no task, backbone, method or dataset module), so every other package
may import it; checking names against the registries is :mod:`taskadapt.config.validation`'s job,
reading YAML and ``key=value`` overrides :mod:`taskadapt.config.loading`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_TASKS = ("semseg", "depth", "normals", "edge")


@dataclass
class ScenesConfig:
    """How procedural scenes are generated when ``data.format`` is ``scenes``."""

    domain: str = "studio"
    train: int = 2000
    val: int = 200
    test: int = 500
    size: int = 128
    seed: int = 0


@dataclass
class AugmentConfig:
    """Training-time joint transforms (see :mod:`taskadapt.data.transforms`)."""

    scale_min: float = 0.75
    scale_max: float = 1.5
    flip: bool = True
    color_jitter: float = 0.2


@dataclass
class DataConfig:
    """Which dataset, which tasks, how it is batched."""

    #: ``scenes`` (procedural, generated into ``root``) or a reader format: nyud, pascal, ...
    format: str = "scenes"
    #: dataset folder; for ``scenes`` the folder the scenes are written to / read from
    root: str | None = None
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    train_split: str = "train"
    #: split used for model selection; null = carved from the training split (train.val_fraction),
    #: never the test split (the field's common flaw)
    val_split: str | None = None
    test_split: str = "test"
    crop_size: int = 128
    #: edge match tolerance as a fraction of the image diagonal; null = the format's (pascal 0.0075, others 0.011)
    edge_tolerance: float | None = None
    batch_size: int = 16
    num_workers: int = 0
    #: keep decoded samples in memory after their first read (small datasets such as the 64 px scenes)
    cache: bool = False
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    #: options of the format's reader, e.g. {num_classes: 16} for cityscapes/synthia (docs/datasets.md)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TAAConfig:
    """Task-adapted attention (method.md §5)."""

    enabled: bool = True
    #: one bias per attention head instead of one shared by the heads
    per_head: bool = False
    #: block width b of the block-diagonal bias; null = family default (Swin: window size, ViT/PVT: grid width)
    block_size: int | None = None
    #: ViT: the class/register tokens get blocks of their own and patch blocks start on a row [ours]
    align_to_grid: bool = False


@dataclass
class TSNConfig:
    """Task-scaled norm (method.md §6)."""

    enabled: bool = True
    #: width of w~_t = Linear(w_t) that feeds gamma_t and beta_t (a low-rank map; ours)
    hidden: int = 32
    #: learning rate of gamma'/beta' (initialised from the pretrained LayerNorm): backbone = train.backbone_lr,
    #: as every fine-tuned pretrained weight; new = train.lr, as the other adapter parameters [ours]
    lr: str = "backbone"
    #: a free per-task offset of gamma_t/beta_t (T x 2C per norm, zero-initialised) on top of the
    #: embedding-conditioned maps [ours] (docs/method.md, "TSN")
    task_offset: bool = False


@dataclass
class TROAConfig:
    """Task-affinity from gradients (method.md §4)."""

    enabled: bool = True
    #: projection (asymmetric, default) or cosine
    measure: str = "projection"
    momentum: float = 0.9
    #: update the affinity every K training steps
    every: int = 1


@dataclass
class LoRAConfig:
    """The LoRA baseline's rank and scale."""

    rank: int = 4
    alpha: float = 8.0


@dataclass
class ModelConfig:
    """The network: backbone, method, adapter layers, decoder."""

    backbone: str = "vit_tiny_patch16_224"
    #: local .safetensors/.pth file, ``hf-hub:timm/<repo>``, or null for random initialisation
    pretrained: str | None = None
    #: architecture overrides passed to the backbone (e.g. {depth: 6, embed_dim: 192, patch_size: 8})
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    #: input size the model is built for; null = data.crop_size
    img_size: int | None = None
    #: adapters (ours), stl, mtl_finetune, frozen_heads, lora, no_taa, no_tsn, no_troa
    method: str = "adapters"
    #: 0-based indices over all transformer blocks; null = the last quarter of the blocks (on Swin-S/B the
    #: paper's figure: stage-3 blocks 15-18 + stage 4); PVTv2: the last stage
    adapter_blocks: list[int] | None = None
    #: bottleneck C -> C / r -> C
    bottleneck_ratio: float = 4.0
    #: also train the pretrained weights of the adapter blocks (the released code's mode)
    train_block_weights: bool = False
    #: size D of the task embeddings; null = family default (Swin: window^3 = 343 as the paper; else 128)
    task_embed_dim: int | None = None
    #: standard deviation of the task embeddings' initialisation N(0, std^2) (the authors' code: 1)
    task_embed_std: float = 0.02
    decoder_channels: int = 64
    #: shared: one multi-scale decoder for every task (task streams still decoded separately); per_task: one
    #: decoder per task, each reading its own task's stream (docs/method.md, "Decoder")
    decoder: str = "shared"
    #: full: dense 3x3 convolutions in the decoder and heads; separable: depthwise + pointwise [ours]
    decoder_conv: str = "full"
    #: interpolate: bilinear resampling of ViT taps to the pyramid levels; learned: depthwise strided /
    #: transposed convolutions [ours] (docs/method.md, "Decoder")
    decoder_resample: str = "interpolate"
    #: ours (adapters): LoRA (model.lora.rank/alpha) on the attention of the blocks before the adapter
    #: blocks, shared by every task [ours] (docs/method.md, "Shared adaptation of the prefix")
    prefix_lora: bool = False
    taa: TAAConfig = field(default_factory=TAAConfig)
    tsn: TSNConfig = field(default_factory=TSNConfig)
    troa: TROAConfig = field(default_factory=TROAConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    #: task -> loss weight; tasks not listed use their default (semseg 1, depth 1, normals 10, edge 50)
    loss_weights: dict[str, float] = field(default_factory=dict)
    #: tasks the model predicts; null = data.tasks. Tasks listed here but not in data.tasks have no labels
    #: in this run: they are predicted zero-shot (their head and task embedding never train; docs/settings.md)
    tasks: list[str] | None = None
    #: ours: task streams in groups, in model.tasks order; a task's conditioning mixes (TROA) only the tasks of
    #: its own and earlier groups, so a group added later leaves the earlier tasks' outputs bit-identical
    #: (``taskadapt extend``, docs/sharing.md); null = one group of every task
    task_groups: list[list[str]] | None = None


@dataclass
class TrainConfig:
    """The optimisation schedule and the run's bookkeeping."""

    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.01
    #: learning rate of the backbone weights when they train (fine-tuning baselines); null = lr
    backbone_lr: float | None = 1e-4
    warmup_steps: int = 100
    #: cosine, onecycle or constant (after the warm-up)
    schedule: str = "cosine"
    #: clip the gradient norm to this value; 0 = off
    grad_clip: float = 1.0
    #: bfloat16 autocast for the forward pass
    bf16: bool = False
    #: torch.compile the model (off by default: on CPU it did not pay off, docs/performance.md)
    compile: bool = False
    #: recompute the adapter layers' activations in backward instead of storing them (saves memory)
    activation_checkpointing: bool = False
    #: channels-last memory format for the convolutional decoder and heads
    channels_last: bool = False
    #: share of the training split held out for model selection when data.val_split is null
    val_fraction: float = 0.1
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 10
    #: images evaluated on the validation split at each evaluation; 0 = all
    val_max_images: int = 0
    #: start from the weights of this checkpoint (e.g. a source-domain model); null = fresh adapters
    init_from: str | None = None
    #: train only these tasks' own parameters (head, per-task decoder, task-embedding row); everything shared
    #: and every other task stays as train.init_from left it (adding a task, ``taskadapt extend``); null = all
    train_tasks: list[str] | None = None
    #: auto (this process's CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N
    device: str = "auto"


@dataclass
class ZeroShotConfig:
    """Zero-shot task transfer (``taskadapt zeroshot``, docs/settings.md)."""

    #: tasks that have no labels in the target setting: predicted, never trained there
    tasks: list[str] = field(default_factory=lambda: ["normals"])
    #: the target dataset; its labels of ``zeroshot.tasks`` are read only to score them on the test split
    target: DataConfig = field(default_factory=DataConfig)
    #: training steps on the target's labelled tasks (from the source model's weights)
    steps: int = 200
    #: learning rate on the target; null = train.lr
    lr: float | None = None


@dataclass
class AdaptConfig:
    """Unsupervised domain adaptation with output-space discriminators (``taskadapt adapt``)."""

    #: train with the adversarial loss on ``adapt.target`` (set by ``taskadapt adapt`` for its adapted run)
    enabled: bool = False
    #: the unlabelled target dataset: training reads its images only; labels only score the test split
    target: DataConfig = field(default_factory=DataConfig)
    #: lambda_adv, the weight of every task's adversarial loss on target batches
    adv_weight: float = 0.005
    #: per-task override of adv_weight, e.g. {depth: 0.001}
    adv_weights: dict[str, float] = field(default_factory=dict)
    #: discriminators: Adam with betas (0.9, 0.99)
    disc_lr: float = 1e-4
    #: width of the first discriminator layer (doubles per layer, 4 layers)
    disc_channels: int = 64
    #: constant, or poly (lr * (1 - step / steps) ** 0.9, as AdaptSegNet)
    disc_schedule: str = "constant"
    #: ramp the adversarial weight linearly from 0 over this many steps
    rampup_steps: int = 0


@dataclass
class Config:
    """The whole run configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    zeroshot: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    seed: int = 0
    out_dir: str = "runs/default"

    def model_tasks(self) -> list[str]:
        """The tasks the model predicts: ``model.tasks``, else ``data.tasks``."""
        return list(self.model.tasks) if self.model.tasks is not None else list(self.data.tasks)

