"""The epoch order every training path shares: keyed by (seed, epoch), disjoint rank shards
that together cover the epoch, DistributedSampler's padding rule."""

from __future__ import annotations

import pytest
import torch

from lit_vision.data.epoch_order import epoch_permutation, rank_shard, shard_for_epoch


def test_permutation_depends_on_seed_and_epoch_only():
    first = epoch_permutation(100, seed=3, epoch=2)
    assert torch.equal(first, epoch_permutation(100, seed=3, epoch=2))
    assert sorted(first.tolist()) == list(range(100))
    assert not torch.equal(first, epoch_permutation(100, seed=3, epoch=3))
    assert not torch.equal(first, epoch_permutation(100, seed=4, epoch=2))
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(first, epoch_permutation(100, seed=3, epoch=2))


@pytest.mark.parametrize("num_samples", [12, 13, 2])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_rank_shards_are_disjoint_and_cover_the_epoch(num_samples, world_size):
    order = epoch_permutation(num_samples, seed=0, epoch=0)
    shards = [rank_shard(order, rank, world_size) for rank in range(world_size)]
    assert len({len(s) for s in shards}) == 1  # every rank runs as many steps
    union = torch.cat(shards).tolist()
    assert set(union) == set(range(num_samples))
    assert len(union) == -(-num_samples // world_size) * world_size  # padding repeats only the head
    kept = [rank_shard(order, rank, world_size, drop_last=True) for rank in range(world_size)]
    flat = torch.cat(kept).tolist()
    assert len(flat) == len(set(flat)) == num_samples - num_samples % world_size


def test_shard_matches_distributed_sampler_layout():
    order = epoch_permutation(10, seed=1, epoch=0)
    assert torch.equal(shard_for_epoch(10, 1, 0, rank=1, world_size=2), order[1::2])


def test_bad_rank_is_refused():
    with pytest.raises(ValueError, match="rank must be in"):
        rank_shard(torch.arange(4), rank=2, world_size=2)


def test_the_permutation_is_drawn_on_the_cpu_whatever_device_asks(monkeypatch):
    """One source for every placement: torch's CUDA generator draws another permutation than the
    CPU's for the same seed, so drawing where the data lives would split the loader and resident
    orders on a GPU (a "meta" device stands in for it here: no generator exists there)."""
    from lit_vision.data import epoch_order

    devices = []
    original = epoch_order.keyed_generator
    monkeypatch.setattr(epoch_order, "keyed_generator", lambda device, *key: devices.append(device) or original(device, *key))
    on_device = epoch_permutation(10, seed=1, epoch=2, device="meta")
    assert on_device.device.type == "meta" and on_device.shape == (10,)
    assert devices == ["cpu"]
