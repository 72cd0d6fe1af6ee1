"""Datasets and loaders for training: reproducible, resumable, shardable.

* Procedural scenes are written to ``data.root`` once (``make-scenes``) and then read like NYUD.
* Model selection uses ``data.val_split`` when given, else a deterministic share of the *training*
  ids (``train.val_fraction``) -- never the test split.
* The order of samples and every augmentation are functions of (seed, step, position): the batch of
  step s is the same whether the run is fresh or resumed, single-process or sharded over ranks (each
  rank takes its slice of the global batch), so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from taskadapt.config import Config, DataConfig
from taskadapt.data.datasets import MultiTaskDataset, create_dataset
from taskadapt.data.transforms import build_train_transform
from taskadapt.errors import ConfigError, DatasetError


def _data(cfg: Config | DataConfig) -> DataConfig:
    return cfg if isinstance(cfg, DataConfig) else cfg.data


def scenes_root(cfg: Config | DataConfig) -> Path:
    """Where the procedural scenes of a run (or of one dataset section, e.g. ``adapt.target``) live."""
    d = _data(cfg)
    s = d.scenes
    return Path(d.root or f"runs/scenes/{s.domain}-seed{s.seed}-{s.size}px")


def prepare_scenes(cfg: Config | DataConfig, progress: bool = True) -> Path:
    """Write the configured procedural scenes unless their root already holds exactly them."""
    from taskadapt.data.scenes import write_scenes

    s = _data(cfg).scenes
    root = scenes_root(cfg)
    counts = {"train": s.train, "val": s.val, "test": s.test}
    meta_path = root / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        have = (meta.get("domain"), meta.get("seed"), meta.get("size"), meta.get("counts"))
        if have != (s.domain, s.seed, s.size, counts):
            raise ConfigError(
                f"data.root '{root}' holds other scenes (domain, seed, size, counts = {have}); "
                f"delete the folder or set data.root to a new folder for {(s.domain, s.seed, s.size, counts)}"
            )
        return root
    return write_scenes(root, domain=s.domain, counts=counts, size=s.size, seed=s.seed, progress=progress)


def dataset_root(cfg: Config | DataConfig) -> Path:
    d = _data(cfg)
    return scenes_root(d) if d.format == "scenes" else Path(d.root)


def reader_format(cfg: Config | DataConfig) -> str:
    d = _data(cfg)
    return "nyud" if d.format == "scenes" else d.format


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
    root, fmt, d = dataset_root(cfg), reader_format(cfg), cfg.data
    tasks = list(d.tasks)
    train = create_dataset(fmt, root, d.train_split, tasks=tasks, **d.options)
    if d.cache:
        train = CachedDataset(train)
    if d.val_split is not None:
        val: Dataset = create_dataset(fmt, root, d.val_split, tasks=tasks, **d.options)
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
        test: Dataset | None = create_dataset(fmt, root, d.test_split, tasks=tasks, **d.options)
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


def collate(samples: list[dict]) -> dict:
    """Stack tensors; keep ``meta`` as a list of dicts. Labels whose sizes differ between samples
    (evaluation at the original resolution of a variable-size dataset) stay lists of tensors."""
    out: dict = {"meta": [s.get("meta", {}) for s in samples]}
    for key in samples[0]:
        if key == "meta":
            continue
        values = [s[key] for s in samples]
        same = all(v.shape == values[0].shape for v in values)
        out[key] = torch.stack(values) if same else values
    return out


def train_loader(cfg: Config, train: Dataset, start_step: int = 0, rank: int = 0, world: int = 1) -> DataLoader:
    a = cfg.data.augment
    transform = build_train_transform(cfg.data.crop_size, scale=(a.scale_min, a.scale_max), flip=a.flip,
                                      jitter=a.color_jitter)
    sampler = StepBatchSampler(len(train), cfg.data.batch_size, cfg.train.steps, cfg.seed, start_step, rank, world)
    # pinned host memory lets the trainer's non_blocking copies to the GPU overlap with compute
    return DataLoader(AugmentedDataset(train, transform), batch_sampler=sampler, collate_fn=collate,
                      num_workers=cfg.data.num_workers, pin_memory=torch.cuda.is_available())


class ResizeImage:
    """Evaluation transform: the image goes to the model's input size; labels keep their resolution."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, sample: dict) -> dict:
        out = dict(sample)
        image = sample["image"].unsqueeze(0)
        if image.shape[-2:] != (self.size, self.size):
            image = torch.nn.functional.interpolate(image, size=(self.size, self.size), mode="bilinear",
                                                    align_corners=False, antialias=True)
        out["image"] = image[0].clamp(0, 1)
        return out


def eval_loader(cfg: Config, dataset: Dataset, max_images: int = 0, batch_size: int | None = None,
                rank: int = 0, world: int = 1) -> DataLoader:
    """Deterministic loader: images at the model's input size, labels at their original size.

    Under DDP rank r of W takes images r, r + W, r + 2W, ...: every image exactly once over the ranks
    (no padding, unlike ``DistributedSampler``), so metrics summed over the ranks equal one process's.
    """
    size = cfg.model.img_size or cfg.data.crop_size
    if max_images and max_images < len(dataset):
        dataset = torch.utils.data.Subset(dataset, list(range(max_images)))
    wrapped = AugmentedDataset(dataset, ResizeImage(size))
    keys = [(i, 0) for i in range(rank, len(wrapped), world)]
    return DataLoader(keys, batch_size=batch_size or cfg.data.batch_size, shuffle=False,
                      collate_fn=lambda ks: collate([wrapped[k] for k in ks]), num_workers=0)


def target_loader(cfg: Config, start_step: int = 0, rank: int = 0, world: int = 1) -> DataLoader:
    """Unlabelled target images for domain adaptation (``adapt.target``), one batch per training step.

    The reader is opened with ``tasks=()``, so it reads image files only: no target label is ever
    loaded. Order and augmentation are seeded like the source loader (with another seed), so a resumed
    run sees the same target batches.
    """
    d = cfg.adapt.target
    dataset: Dataset = create_dataset(reader_format(d), dataset_root(d), d.train_split, tasks=(), **d.options)
    if len(dataset) == 0:
        raise DatasetError(f"the '{d.train_split}' split of the target {dataset_root(d)} lists no images")
    if d.cache:
        dataset = CachedDataset(dataset)
    tcfg = dataclasses.replace(cfg, data=d, seed=_seed_of(cfg.seed, "target") % (2**31))
    return train_loader(tcfg, dataset, start_step, rank, world)
