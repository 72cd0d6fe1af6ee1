"""Datasets and loaders for training: reproducible, resumable, shardable.

* Generated datasets (the procedural scenes) are written once, on the main process, before anything
  reads them (:meth:`TrainingData.prepare`).
* Model selection uses ``data.val_split`` when given, else a deterministic share of the *training*
  ids (``train.val_fraction``) -- never the test split.
* The order of samples and every augmentation are functions of (seed, step, position): the batch of
  step s is the same whether the run is fresh or resumed, single-process or sharded over ranks (each
  rank takes its slice of the global batch), so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from taskadapt.config import Config
from taskadapt.data.collate import collate
from taskadapt.data.datasets import MultiTaskDataset, dataset_root, open_section, prepare_dataset
from taskadapt.data.transforms import build_train_transform
from taskadapt.errors import ConfigError, DatasetError
from taskadapt.evaluation.loaders import eval_loader


def _seed_of(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class SubsetDataset(Dataset):
    """A fixed list of indices of another dataset (the carved validation / remaining training ids)."""

    def __init__(self, base: MultiTaskDataset, indices: list[int]):
        self.base, self.indices = base, indices
        self.num_classes, self.tasks = base.num_classes, base.tasks

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.base[self.indices[i]]


class CachedDataset(Dataset):
    """Memoises decoded samples (``data.cache``): after the first epoch nothing is read from disk.

    Only for datasets that fit in memory (the 64 px scenes: ~150 KB a sample). Transforms run after
    the cache, so augmentation is unchanged.
    """

    def __init__(self, base: Dataset):
        self.base = base
        self.num_classes = getattr(base, "num_classes", {})
        self.class_names = getattr(base, "class_names", {})
        self.tasks = getattr(base, "tasks", ())
        self._items: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        if i not in self._items:
            self._items[i] = self.base[i]
        return self._items[i]


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset | None
    num_classes: dict[str, int]
    class_names: dict[str, list[str]]


def build_splits(cfg: Config, train_transform: Callable | None = None) -> Splits:
    """Train (with ``train_transform`` applied by the loader), validation and test datasets."""
    d = cfg.data
    root, tasks = dataset_root(d), list(d.tasks)
    train: Dataset = open_section(d, d.train_split, tasks=tasks)
    if d.cache:
        train = CachedDataset(train)
    if d.val_split is not None:
        val: Dataset = open_section(d, d.val_split, tasks=tasks)
        train_part: Dataset = train
    else:
        n = len(train)
        n_val = max(1, int(round(n * cfg.train.val_fraction)))
        if n - n_val < 1:
            raise DatasetError(f"the '{d.train_split}' split of {root} has {n} images: too few to carve a "
                               "validation set; add images or set data.val_split")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_seed_of(cfg.seed, "val-carve"))).tolist()
        val, train_part = SubsetDataset(train, sorted(order[:n_val])), SubsetDataset(train, sorted(order[n_val:]))
    try:
        test: Dataset | None = open_section(d, d.test_split, tasks=tasks)
    except DatasetError:
        test = None  # no test split on disk: evaluation commands say so when they need it
    return Splits(train_part, val, test, dict(train.num_classes), dict(getattr(train, "class_names", {}) or {}))


class AugmentedDataset(Dataset):
    """Applies a random transform seeded per (run seed, step, slot), so augmentation is reproducible."""

    def __init__(self, base: Dataset, transform: Callable | None):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        sample = self.base[index]
        if self.transform is None:
            return sample
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(sample)


class StepBatchSampler(Sampler):
    """Yields the (index, augmentation seed) pairs of each step's batch, from ``start_step`` on.

    Epoch e visits a permutation seeded by (seed, e); step s takes positions
    [s * global_batch, (s + 1) * global_batch) of the concatenated epochs. Rank r of W takes every
    W-th element of the global batch.
    """

    def __init__(self, n: int, global_batch: int, steps: int, seed: int, start_step: int = 0,
                 rank: int = 0, world: int = 1):
        if global_batch % world:
            raise ConfigError(f"data.batch_size {global_batch} is not divisible by the {world} processes")
        self.n, self.global_batch, self.steps, self.seed = n, global_batch, steps, seed
        self.start_step, self.rank, self.world = start_step, rank, world

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def _perm(self, epoch: int) -> list[int]:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(_seed_of(self.seed, epoch))).tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        cache: dict[int, list[int]] = {}
        for step in range(self.start_step, self.steps):
            batch = []
            for slot in range(self.global_batch):
                pos = step * self.global_batch + slot
                epoch, offset = divmod(pos, self.n)
                if epoch not in cache:
                    cache = {epoch: self._perm(epoch)}
                batch.append((cache[epoch][offset], _seed_of(self.seed, "aug", step, slot)))
            yield batch[self.rank::self.world]


def train_loader(cfg: Config, train: Dataset, start_step: int = 0, rank: int = 0, world: int = 1) -> DataLoader:
    a = cfg.data.augment
    transform = build_train_transform(cfg.data.crop_size, scale=(a.scale_min, a.scale_max), flip=a.flip,
                                      jitter=a.color_jitter)
    sampler = StepBatchSampler(len(train), cfg.data.batch_size, cfg.train.steps, cfg.seed, start_step, rank, world)
    # pinned host memory lets the trainer's non_blocking copies to the GPU overlap with compute
    return DataLoader(AugmentedDataset(train, transform), batch_sampler=sampler, collate_fn=collate,
                      num_workers=cfg.data.num_workers, pin_memory=torch.cuda.is_available())


def target_loader(cfg: Config, start_step: int = 0, rank: int = 0, world: int = 1) -> DataLoader:
    """Unlabelled target images for domain adaptation (``adapt.target``), one batch per training step.

    The reader is opened with ``tasks=()``, so it reads image files only: no target label is ever
    loaded. Order and augmentation are seeded like the source loader (with another seed), so a resumed
    run sees the same target batches.
    """
    d = cfg.adapt.target
    dataset: Dataset = open_section(d, d.train_split, tasks=())
    if len(dataset) == 0:
        raise DatasetError(f"the '{d.train_split}' split of the target {dataset_root(d)} lists no images")
    if d.cache:
        dataset = CachedDataset(dataset)
    tcfg = dataclasses.replace(cfg, data=d, seed=_seed_of(cfg.seed, "target") % (2**31))
    return train_loader(tcfg, dataset, start_step, rank, world)


class TrainingData:
    """Everything a training run reads, opened once: the splits, their classes and the loaders.

    ``prepare(cfg)`` (main process, before the others open anything) writes generated datasets.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.splits = build_splits(cfg)
        self.num_classes = dict(self.splits.num_classes)
        self.class_names = dict(self.splits.class_names)

    @staticmethod
    def prepare(cfg: Config, progress: bool = True) -> None:
        """Write the run's generated datasets (source, and the adaptation target when it is used)."""
        prepare_dataset(cfg.data, progress=progress)
        if cfg.adapt.enabled:
            prepare_dataset(cfg.adapt.target, progress=progress)

    def train_loader(self, start_step: int = 0, rank: int = 0, world: int = 1) -> DataLoader:
        return train_loader(self.cfg, self.splits.train, start_step, rank, world)

    def target_loader(self, start_step: int = 0, rank: int = 0, world: int = 1) -> DataLoader:
        return target_loader(self.cfg, start_step, rank, world)

    def val_loader(self, rank: int = 0, world: int = 1) -> DataLoader:
        """The validation images (each rank its share), at the model's input size."""
        c = self.cfg
        return eval_loader(self.splits.val, c.model.img_size or c.data.crop_size, c.data.batch_size,
                           c.train.val_max_images, rank=rank, world=world)
