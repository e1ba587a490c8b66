"""A training loader that resumes mid-epoch where it stopped: no sample repeated or skipped.

`ResumableSampler` draws each epoch's order from `lit_vision.data.epoch_order` (a permutation
keyed by the run's seed and the epoch, DistributedSampler-style rank shards). A run resumed
mid-epoch recomputes that permutation and starts at the saved position in it, so the order
itself is never stored. It subclasses `DistributedSampler` so that Lightning, which wraps
any other custom sampler in a `DistributedSamplerWrapper` under DDP, leaves it alone.

`ResumableDataLoader` counts the batches it has handed to the main process (the sampler's
own position runs ahead by the workers' prefetch) and reports them in `state_dict()`:
    {"epoch", "position", "num_samples", "seed", "world_size", "batch_size", "complete"}
(the form `lit_vision.data.epoch_order` defines, which the resident placement saves too, so a
mid-epoch checkpoint of either placement continues on the other)
`position` is global: after k batches on each of W ranks in lockstep, the first k·B·W entries
of the epoch's permutation have been trained on (rank r takes entries r, r+W, ...), so a
resume may change num_workers, and the world size or batch size as long as a step takes no
more images than before (`epoch_order.check_continuable`), and still continue at that entry.
Lightning trains each batch its fetcher takes from a sized loader before taking the next (no
look-ahead), so at a step boundary "yielded" equals "trained".

The loader's `__iter__` is lazy: nothing is drawn until the first batch is asked for. Lightning
creates the epoch's iterator before it calls `set_epoch` (in `FitLoop.setup_data`), and a
loader with workers draws its first indices as soon as the iterator exists; drawn lazily they
belong to the right epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from lit_vision.data.epoch_order import batches_left, check_continuable, epoch_permutation, rank_shard, saved_position
from lit_vision.errors import LitVisionError


class ResumableSampler(DistributedSampler):
    """This rank's share of the epoch's permutation, from a start position within it."""

    def __init__(self, num_samples: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(range(num_samples), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.total = num_samples
        self.start = 0  # entries of this epoch's permutation already trained on (all ranks)
        self._resume: tuple[int, int] | None = None  # (epoch, position) from a checkpoint

    def resume_at(self, epoch: int, position: int) -> None:
        """Begin epoch `epoch` (when it comes) at entry `position` of its permutation."""
        self._resume = (epoch, position)

    def begin_epoch(self) -> int:
        """Fix this epoch's start position (the resume point if this is its epoch, else 0)."""
        if self._resume is not None and self._resume[0] == self.epoch:
            self.start = min(self._resume[1], self.total)
        else:
            self.start = 0
        self._resume = None
        return self.start

    def __iter__(self) -> Iterator[int]:
        order = epoch_permutation(self.total, self.seed, self.epoch)[self.start :]
        if len(order) == 0:
            return iter(())
        return iter(rank_shard(order, self.rank, self.num_replicas).tolist())

    def __len__(self) -> int:
        # The whole epoch's share, also when resumed: Lightning counts a resumed epoch's
        # batches from the checkpoint's batch index on, up to this length.
        return -(-self.total // self.num_replicas)


class ResumableDataLoader(DataLoader):
    """A DataLoader over a `ResumableSampler` with a Lightning-compatible `state_dict`."""

    def __init__(self, dataset, sampler: ResumableSampler, **kwargs: Any) -> None:
        if not isinstance(sampler, ResumableSampler):
            raise TypeError(f"ResumableDataLoader needs a ResumableSampler, got {type(sampler).__name__}.")
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._epoch, self._start, self._yielded = 0, 0, 0
        self._pass_batches = 0  # batches this pass over the epoch hands out (from its start position)
        self._resume_complete = False  # the loaded position's epoch was trained to its end

    def __iter__(self) -> Iterator:
        sampler: ResumableSampler = self.sampler
        self._start, self._yielded = sampler.begin_epoch(), 0
        self._epoch = sampler.epoch
        self._pass_batches = batches_left(sampler.total, self._start, self.batch_size, sampler.num_replicas, self.drop_last)
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        sampler: ResumableSampler = self.sampler
        if sampler._resume is not None:  # loaded but not iterated yet: pass it on unchanged
            epoch, position = sampler._resume
            complete = self._resume_complete
        else:
            epoch = self._epoch
            position = min(sampler.total, self._start + self._yielded * self.batch_size * sampler.num_replicas)
            complete = self._yielded >= self._pass_batches
        return {
            "epoch": epoch, "position": position, "num_samples": sampler.total, "seed": sampler.seed,
            "world_size": sampler.num_replicas, "batch_size": self.batch_size, "complete": complete,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, int]) -> None:
        state = saved_position(state)  # also a resident placement's position
        sampler: ResumableSampler = self.sampler
        check_continuable(state, sampler.total, self.batch_size, sampler.num_replicas)
        # The order is keyed by the saved seed: a resumed run whose seed was drawn anew
        # (seed_everything: true) must still continue the interrupted permutation.
        sampler.seed = int(state["seed"])
        sampler.resume_at(state["epoch"], state["position"])
        self._resume_complete = state["complete"]


def resumable_loader(dataset, batch_size: int, seed: int, rank: int, world_size: int, **kwargs: Any) -> ResumableDataLoader:
    """A shuffled training loader over `dataset` that resumes mid-epoch (see the module docstring)."""
    sampler = ResumableSampler(len(dataset), seed % 2**63, rank, world_size)
    return ResumableDataLoader(dataset, sampler=sampler, batch_size=batch_size, **kwargs)


def run_seed() -> int:
    """The run's seed as `seed_everything` set it (the same on every DDP rank)."""
    return torch.initial_seed() % 2**63
