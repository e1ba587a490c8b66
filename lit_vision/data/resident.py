"""`data.placement: resident`: a decoded split held whole on the accelerator, batches by index-gather.

For GPUs fast enough that the input pipeline, not the model, sets the pace (docs/gpu-benchmark.md):
each split is decoded once into the uint8 cache (`lit_vision.data.cache`), copied whole to the
training device (a GPU's memory, or this process's memory on a CPU run), and every batch is an
`index_select` of that tensor. No loader workers, no pinned buffers, no host→device traffic
per step; the only host work per batch is a few tensor-op launches.

Training order: `lit_vision.data.epoch_order` — the permutation of the epoch keyed by (seed,
epoch), drawn by the CPU generator every placement uses and moved to the device once per epoch,
cut into this rank's DistributedSampler-style shard
(padded, so every rank runs the same number of steps). Batches are consecutive slices of the
shard; the last partial one is dropped like the loader path's (`drop_last`). Evaluation splits
keep their order (rank shards of `0..n-1`, padded as Lightning's distributed sampler pads).

Resuming mid-epoch: `ResidentOrder` counts the batches it has handed out in the current
epoch; its `state_dict()` holds the position in `lit_vision.data.epoch_order`'s form (entries of
the permutation trained on by all ranks), the same form the loader placement saves, so a
checkpoint of either placement continues on the other, and a change of world size or batch size
continues at the same entry when a step takes no more images than before (`check_continuable`). A resumed run recomputes the same permutation and starts there.
Lightning saves a loader's `state_dict` in its checkpoints, but drops it on restore when
`configure_optimizers` sizes the schedule from `trainer.estimated_stepping_batches`, as ours does
(the loader is built before the loop state is restored; Lightning issue 20550). The DataModule
therefore also carries the state in its own `state_dict` (restored before any loader is built)
and hands it to the loader it builds; the two restores agree, so whichever runs is enough.

The order's position advances when a batch is handed out, lazily: `iter()` alone (which
Lightning calls before restoring a checkpoint) draws nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from lit_vision.data.epoch_order import batches_left, check_continuable, epoch_permutation, rank_shard, saved_position
from lit_vision.errors import LitVisionError

# Reserved on top of the split: the model, its activations and the optimiser need room too.
HEADROOM = 0.10  # share of the free memory
_COPY_CHUNK = 4096  # images per host→device copy while loading (≈ 200 MB at 128 px)


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory of `device` in bytes (None where it cannot be read: the check is skipped)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def check_fits(needed: int, device: torch.device, what: str) -> None:
    """Raise a `LitVisionError` when `needed` bytes do not fit in the device's free memory."""
    free = free_memory_bytes(device)
    if free is None or needed <= free * (1 - HEADROOM):
        return
    raise LitVisionError(
        f"data.placement: resident needs {needed / 1e9:.2f} GB of {device} memory to hold {what}, but only "
        f"{free / 1e9:.2f} GB is free ({HEADROOM:.0%} of it is kept for the model and its activations). Use "
        "data.placement: loader (loader workers read the images; add data.cache: true to decode them only once), "
        "or a smaller data.crop_size."
    )


def load_resident(path: Path, num_images: int, size: int, labels: list[int], device: torch.device, what: str):
    """The cache file at `path` as a uint8 tensor [N, 3, size, size] on `device`, and its labels
    (int64 [N]) there too; the free-memory check first."""
    needed = num_images * 3 * size * size + num_images * 8
    check_fits(needed, device, what)
    source = np.memmap(path, dtype=np.uint8, mode="r", shape=(num_images, 3, size, size))
    images = torch.empty((num_images, 3, size, size), dtype=torch.uint8, device=device)
    # In chunks: a 4.9 GB split never needs a second host copy on its way to the GPU.
    for start in range(0, num_images, _COPY_CHUNK):
        stop = min(num_images, start + _COPY_CHUNK)
        images[start:stop].copy_(torch.from_numpy(np.array(source[start:stop])))  # a writable chunk
    del source
    return images, torch.tensor(labels, dtype=torch.int64, device=device)


class ResidentOrder:
    """Which samples each batch of an epoch takes on this rank; resumable mid-epoch.

    `set_epoch(e)` (Lightning calls it on a loader's `sampler` at each epoch start) selects the
    epoch; iterating yields index tensors (int64, on `device`) of `batch_size` each. A training
    order (`shuffle`) continues a pass over its epoch where it stopped; an evaluation order starts
    at its first sample on every pass (the sanity check and every validation see the whole split)."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        if num_samples < 1:
            raise LitVisionError("data.placement: resident needs at least one image in the split.")
        self.num_samples, self.batch_size, self.shuffle = num_samples, batch_size, shuffle
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.device = torch.device(device)
        self.epoch = 0
        self.start = 0  # entries of the epoch's permutation trained before this pass (a resume)
        self.consumed = 0  # batches of this pass handed out so far
        self._finished = False  # this pass was iterated to its end
        self._loaded_complete = False  # a loaded position whose epoch had been trained to its end

    def shard_length(self) -> int:
        return math.ceil(self.num_samples / self.world_size)  # padded: rank_shard's rule

    def __len__(self) -> int:
        # The whole epoch's batches, also when resumed: Lightning counts a resumed epoch's
        # batches from the checkpoint's batch index on, up to this length.
        per_rank = self.shard_length()
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.start, self.consumed, self._finished = epoch, 0, 0, False
            self._loaded_complete = False

    def indices(self) -> torch.Tensor:
        """This rank's samples of the current pass (from `start` on), in order."""
        if self.shuffle:
            order = epoch_permutation(self.num_samples, self.seed, self.epoch, self.device)[self.start :]
        else:
            order = torch.arange(self.num_samples, device=self.device)
        return rank_shard(order, self.rank, self.world_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        # A generator: nothing is drawn until the first batch is asked for, which Lightning
        # does only after it has restored a checkpoint's position.
        if not self.shuffle or self._finished:
            self.start, self.consumed, self._finished = 0, 0, False  # a new pass over the whole epoch
        self._loaded_complete = False  # from here on the position is this pass's own
        shard = self.indices()
        passes = batches_left(self.num_samples, self.start, self.batch_size, self.world_size, self.drop_last)
        for batch in range(self.consumed, passes):
            self.consumed = batch + 1
            yield shard[batch * self.batch_size : (batch + 1) * self.batch_size]
        self._finished = True

    def state_dict(self) -> dict:
        """The position in `lit_vision.data.epoch_order`'s form (the loader placement's too)."""
        steps = self.batch_size * self.world_size
        passes = batches_left(self.num_samples, self.start, self.batch_size, self.world_size, self.drop_last)
        return {
            "epoch": self.epoch, "position": min(self.num_samples, self.start + self.consumed * steps),
            "num_samples": self.num_samples, "seed": self.seed, "world_size": self.world_size,
            "batch_size": self.batch_size, "complete": self._loaded_complete or self.consumed >= passes,
        }  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Continue at a saved position (of this placement or the loader's, any worker count;
        the position counts entries of the shared permutation, so the world size and batch size
        may change too, as long as a step takes no more images: `check_continuable`)."""
        position = saved_position(state)
        check_continuable(position, self.num_samples, self.batch_size, self.world_size)
        # The saved seed wins, as on the loader placement: a resumed run whose seed was drawn
        # anew (seed_everything: true) still continues the interrupted permutation.
        self.seed = position["seed"]
        self.epoch, self.start, self.consumed = position["epoch"], position["position"], 0
        self._finished, self._loaded_complete = False, position["complete"]


class ResidentLoader:
    """An iterable of `[images, labels]` batches gathered from device-resident tensors.

    What `train_dataloader()` (and the evaluation loaders) return for `data.placement: resident`:
    Lightning iterates it like a DataLoader, finds `set_epoch` on its `sampler`, and saves and
    restores its `state_dict`. `images` is uint8 [N, 3, H, W]; batches are channels-last when
    `channels_last` (a CPU run: oneDNN's convolutions prefer it)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, order: ResidentOrder, channels_last: bool = False) -> None:
        if len(images) != order.num_samples or len(labels) != order.num_samples:
            raise ValueError(f"{len(images)} images and {len(labels)} labels for an order over {order.num_samples}")
        self.images, self.labels, self.sampler, self.channels_last = images, labels, order, channels_last
        self.batch_sampler = None  # Lightning's loader checks read it (the order is `sampler`)
        self.last_indices: torch.Tensor | None = None  # the samples of the batch handed out last

    @property
    def batch_size(self) -> int:
        return self.sampler.batch_size

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        for indices in self.sampler:
            self.last_indices = indices
            images = self.images.index_select(0, indices)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield [images, self.labels.index_select(0, indices)]  # a list: callbacks edit batches in place

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
