"""The training order of one epoch: a permutation keyed by (seed, epoch), cut into rank shards.

One definition for every training path (the folder/cache loaders' resumable sampler, the
device-resident batches, the streaming path's bookkeeping), so that each of them draws the
same order for the same (seed, epoch), every DDP rank takes a disjoint shard, all shards
together cover the epoch, and a run resumed mid-epoch can recompute the order it was in the
middle of instead of storing it.

Sharding follows `torch.utils.data.DistributedSampler`: with `drop_last` the permutation is
cut to a multiple of the world size, otherwise it is padded by repeating its head (so every
rank runs the same number of steps, which DDP needs); rank r takes every world-size-th index
starting at r.
"""

from __future__ import annotations

import torch

from lit_vision.utils.generators import keyed_generator

# Distinguishes this stream from the other keyed streams of a run (augmentation, attack starts).
_ORDER_STREAM = 0x0DE7


def epoch_permutation(num_samples: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A permutation of range(num_samples) (int64, on `device`) that depends only on
    (seed, epoch) and the device type: the same on every rank and on every resume."""
    if num_samples < 1:
        raise ValueError(f"epoch_permutation needs at least one sample, got {num_samples}.")
    generator = keyed_generator(device, _ORDER_STREAM, seed, epoch)
    return torch.randperm(num_samples, generator=generator, device=device)


def rank_shard(order: torch.Tensor, rank: int, world_size: int, drop_last: bool = False) -> torch.Tensor:
    """This rank's indices of `order` (see the module docstring for the padding rule)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
    total = len(order)
    if drop_last:
        order = order[: total - total % world_size]
    elif total % world_size:
        padding = world_size - total % world_size
        order = torch.cat([order, order[:padding].repeat(-(-padding // total))[:padding]])
    return order[rank::world_size]


def shard_for_epoch(
    num_samples: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """`rank_shard(epoch_permutation(...))`: the indices this rank trains on in `epoch`, in order."""
    return rank_shard(epoch_permutation(num_samples, seed, epoch, device), rank, world_size, drop_last)
