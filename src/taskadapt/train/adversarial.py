"""Unsupervised domain adaptation in the output space (method.md §8, docs/settings.md).

[paper] Labelled source and unlabelled target batches go through the same network; the supervised
losses use the source only; one output-space discriminator per task tells source predictions from
target predictions, and an adversarial loss on the target pushes the network to make its target
outputs look like source outputs (the XTAM-UDA / AdaptSegNet pattern the paper compares to).

[ours, where the paper is silent] What each discriminator sees (:func:`discriminator_input`):

* classification tasks (semseg, parts): the per-class self-information map ``-p log p / log K`` of
  the softmax (AdvEnt's weighted entropy map; it sums to the normalised entropy), K channels;
* depth: the prediction standardised per image (zero mean, unit deviation), so the discriminator
  judges the *shape* of the depth map rather than the scene's absolute scale, 1 channel;
* normals: the unit normals, 3 channels;
* binary tasks (edge, saliency): the sigmoid probability map, 1 channel.

The discriminator is AdaptSegNet's fully convolutional net (4 x 4 convolutions of stride 2, widths
c, 2c, 4c, 8c, LeakyReLU 0.2) and a 3 x 3 convolution to one logit per location. Losses are binary
cross-entropy on logits: the discriminators learn source = 1, target = 0; the network's adversarial
loss asks them to answer 1 on target outputs. Defaults follow the paper's baseline: lambda_adv 0.005,
Adam lr 1e-4 with betas (0.9, 0.99). Under DDP every rank computes its discriminator gradients on its
own shard and they are averaged (all-reduce) before the step, so the discriminators stay identical.

The target loader is built with ``tasks=()``: the reader then opens only the images, never a label
file (tests/test_settings.py corrupts every target label to prove it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from taskadapt.tasks import get_task

if TYPE_CHECKING:  # the config validates adapt.disc_schedule against DISC_SCHEDULES below: no runtime import
    from taskadapt.config.schema import AdaptConfig

#: adapt.disc_schedule values: a constant discriminator learning rate, or AdaptSegNet's poly decay
DISC_SCHEDULES = ("constant", "poly")

SOURCE_LABEL, TARGET_LABEL = 1.0, 0.0


class OutputDiscriminator(nn.Sequential):
    """(B, C, H, W) output-space map -> (B, 1, H / 16, W / 16) source-vs-target logits.

    Maps smaller than 32 px on a side are upsampled to 32 first (four stride-2 layers need it).
    """

    MIN_SIZE = 32

    def __init__(self, in_channels: int, channels: int = 64):
        widths = [in_channels, channels, 2 * channels, 4 * channels, 8 * channels]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(widths[-1], 1, 3, padding=1))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.MIN_SIZE:
            scale = self.MIN_SIZE / min(x.shape[-2:])
            size = (math.ceil(x.shape[-2] * scale), math.ceil(x.shape[-1] * scale))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return super().forward(x)


def input_channels(task: str, num_classes: int | None) -> int:
    """Channels of :func:`discriminator_input` for ``task``."""
    return get_task(task).out_channels(num_classes)


def discriminator_input(task: str, pred: torch.Tensor) -> torch.Tensor:
    """The map the task's discriminator judges, from the raw prediction (B, C, H, W) -> (B, C, H, W)."""
    spec = get_task(task)
    if spec.kind == "classification":
        p = pred.float().softmax(dim=1)
        k = max(pred.shape[1], 2)
        return -p * torch.log(p.clamp_min(1e-12)) / math.log(k)
    if spec.kind == "binary":
        return torch.sigmoid(pred.float())
    if pred.shape[1] == 3:  # surface normals
        return F.normalize(pred.float(), dim=1, eps=1e-12)
    flat = pred.float().flatten(1)
    mean, std = flat.mean(1).view(-1, 1, 1, 1), flat.std(1).view(-1, 1, 1, 1)
    return (pred.float() - mean) / (std + 1e-6)


class DomainAdversary(nn.Module):
    """The discriminators, their optimiser, and the two losses of one adaptation step.

    ``tasks`` / ``num_classes``: the model's tasks; only tasks with an adversarial weight > 0 get a
    discriminator. Use per step: ``generator_loss(target_preds, step)`` is added to the supervised loss
    before its backward; after the network's optimiser step, ``discriminator_step(source_preds)``.
    """

    def __init__(self, cfg: AdaptConfig, tasks: Sequence[str], num_classes: Mapping[str, int], total_steps: int):
        super().__init__()
        self.cfg, self.total_steps = cfg, total_steps
        self.weights = {t: float(cfg.adv_weights.get(t, cfg.adv_weight)) for t in tasks}
        self.discriminators = nn.ModuleDict({
            t: OutputDiscriminator(input_channels(t, num_classes.get(t)), cfg.disc_channels)
            for t, w in self.weights.items() if w > 0
        })
        params = list(self.discriminators.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.disc_lr, betas=(0.9, 0.99)) if params else None
        self._target_inputs: dict[str, torch.Tensor] = {}

    def ramp(self, step: int) -> float:
        """Linear ramp of the adversarial weight over ``rampup_steps`` (1 after it)."""
        n = self.cfg.rampup_steps
        return 1.0 if n <= 0 else min(1.0, (step + 1) / n)

    def disc_lr(self, step: int) -> float:
        if self.cfg.disc_schedule == "poly":
            return self.cfg.disc_lr * max(0.0, 1.0 - step / max(self.total_steps, 1)) ** 0.9
        return self.cfg.disc_lr

    def generator_loss(self, target_preds: Mapping[str, torch.Tensor], step: int
                       ) -> tuple[torch.Tensor, dict[str, float]]:
        """sum_t lambda_t BCE(D_t(target output), source): the network's adversarial loss (scalar)."""
        ref = next(iter(target_preds.values()))
        total = ref.new_zeros((), dtype=torch.float32)
        logs: dict[str, float] = {}
        scale = self.ramp(step)
        self._target_inputs = {}
        for task, disc in self.discriminators.items():
            x = discriminator_input(task, target_preds[task])
            self._target_inputs[task] = x.detach()
            for p in disc.parameters():  # the network's loss must not train the discriminator
                p.requires_grad_(False)
            logits = disc(x)
            for p in disc.parameters():
                p.requires_grad_(True)
            loss = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, SOURCE_LABEL))
            total = total + scale * self.weights[task] * loss
            logs[f"adv/{task}"] = float(loss.detach())
        return total, logs

    def discriminator_step(self, source_preds: Mapping[str, torch.Tensor], step: int) -> dict[str, float]:
        """One Adam step of every discriminator: source outputs -> 1, the last target outputs -> 0."""
        if self.optimizer is None or not self._target_inputs:
            return {}
        for group in self.optimizer.param_groups:
            group["lr"] = self.disc_lr(step)
        self.optimizer.zero_grad(set_to_none=True)
        logs: dict[str, float] = {}
        for task, disc in self.discriminators.items():
            xs = discriminator_input(task, source_preds[task].detach())
            ls, lt = disc(xs), disc(self._target_inputs[task])
            loss = 0.5 * (F.binary_cross_entropy_with_logits(ls, torch.full_like(ls, SOURCE_LABEL))
                          + F.binary_cross_entropy_with_logits(lt, torch.full_like(lt, TARGET_LABEL)))
            loss.backward()
            logs[f"disc/{task}"] = float(loss.detach())
        if dist.is_available() and dist.is_initialized():
            world = dist.get_world_size()
            for p in self.discriminators.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= world
        self.optimizer.step()
        self._target_inputs = {}
        return logs

    def train_state(self) -> dict[str, Any]:
        """Weights and optimiser state, for the run's ``.state.pt`` (loadable with weights_only=True)."""
        return {"discriminators": self.discriminators.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None}

    def load_train_state(self, state: Mapping[str, Any]) -> None:
        self.discriminators.load_state_dict(state["discriminators"])
        if self.optimizer is not None and state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
