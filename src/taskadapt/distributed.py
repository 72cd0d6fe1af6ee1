"""Process-group set-up for ``torchrun`` (DDP): gloo on CPU, NCCL on GPU, single process otherwise."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from taskadapt.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    #: this process group was created by :func:`init_from_env` (and is destroyed by :func:`cleanup`)
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


#: what ``train.device`` / ``--device`` take: auto (CUDA when available), cpu, cuda, cuda:N
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(name: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` (or None): this process's GPU when CUDA is available, else the CPU; ``cpu``; ``cuda``
    (this process's GPU under torchrun) or ``cuda:N``. Asking for CUDA where there is none is a ConfigError."""
    if isinstance(name, torch.device):
        name = str(name)
    name = "auto" if name is None else str(name)
    if not DEVICE_PATTERN.match(name):
        raise ConfigError(f"device '{name}' is unknown; use auto, cpu, cuda or cuda:N")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was asked for but this machine has no CUDA GPU (or this torch has no "
                          "CUDA support); use device cpu or auto")
    index = int(name.split(":")[1]) if ":" in name else local_rank
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}': this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                          f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device(f"cuda:{index}")


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (or run alone), on ``device``
    (see :func:`resolve_device`)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device, local_rank)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    owns = world > 1 and not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank, world, local_rank, device, owns)


def is_main_process() -> bool:
    """True unless this is a rank > 0 of a ``torchrun`` launch (read from the environment, so it works
    before the process group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (any other module as it is)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
