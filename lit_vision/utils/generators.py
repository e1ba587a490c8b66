"""Random generators of their own for each (run seed, rank, step, ...) key.

`seed_everything` gives every DDP rank the same global seed; anything random that must differ
between ranks (augmentation, attack starts) and stay reproducible draws from a generator
derived from a key that includes the rank."""

from __future__ import annotations

import numpy as np
import torch


def keyed_seed(*key: int) -> int:
    """An integer seed from hashing the integers of `key` (NumPy's SeedSequence: nearby keys
    give unrelated streams), for code that takes a seed rather than a generator."""
    return int(np.random.default_rng([int(k) % 2**63 for k in key]).integers(2**62))


def keyed_generator(device: torch.device | str, *key: int) -> torch.Generator:
    """A `torch.Generator` on `device` seeded by `keyed_seed(*key)`."""
    return torch.Generator(device=device).manual_seed(keyed_seed(*key))
