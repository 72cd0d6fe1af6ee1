"""Per-sample random streams derived from a stable hash, so samples never depend on batching.

Every scene draws its own random numbers from generators seeded by a BLAKE2b hash of the sample's
identity (never Python's salted ``hash()``):

* geometry   <- (seed, split, index): room, primitives, rug, paintings, camera pose;
* appearance <- (seed, domain, split, index): materials, light, noise.

So the same (seed, split, index) has the same geometry -- and therefore the same labels -- in every
domain (paired data), while images differ per domain. Scalar parameters come from
:class:`random.Random`, whose ``random()`` stream Python guarantees across versions and machines;
per-pixel sensor noise and the noise-texture lattice come from a seeded CPU ``torch.Generator``
(uniform draws only: CPU ``rand`` is a serial Mersenne-Twister stream on every machine).
"""

from __future__ import annotations

import hashlib
import random

import torch


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from the ``repr`` of ``parts``; identical on every machine and Python run."""
    text = "\x1f".join(repr(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def geometry_seed(seed: int, split: str, index: int) -> int:
    """Seed of a scene's geometry: shared by all domains (paired data)."""
    return stable_seed("taskadapt.scenes.geometry", int(seed), str(split), int(index))


def appearance_seed(seed: int, domain: str, split: str, index: int) -> int:
    """Seed of a scene's appearance in one domain."""
    return stable_seed("taskadapt.scenes.appearance", int(seed), str(domain), str(split), int(index))


def python_rng(seed: int) -> random.Random:
    """A :class:`random.Random` for scalar scene parameters."""
    return random.Random(seed)


def torch_rng(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for per-pixel draws (use ``torch.rand`` only, never ``randn``)."""
    return torch.Generator(device="cpu").manual_seed(seed)
