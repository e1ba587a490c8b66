"""The loaders' collate steps on a CPU run: channels-last batches, and `BatchAugment` inside
the DataLoader workers (`data.augment_on: worker_batched`).

Channels-last (NHWC) memory order, same values and shape: oneDNN's CPU convolutions take that
layout directly, and a SimpleNet training step on it costs about two thirds of the CPU time of
the same step on contiguous NCHW input (`python -m lit_vision.bench train_cpu`,
docs/pipeline.md). The copy costs a few milliseconds per batch, in the worker.

`WorkerBatchAugment`: when the accelerator is the CPU there is no device to hand the
augmentation to; run on the training threads it steals their time while the loader workers
wait. As the loader's `collate_fn` it augments each worker's whole batch in that worker
instead, with the same `Augmentation` and the same per-sample draws as on the device.

Random draws: each worker keeps a generator of its own keyed by (the worker's torch seed, the
rank, the worker id). The DataLoader derives a worker's torch seed from the main process's
generator (`seed_everything`) for every new set of workers, so runs are reproducible from the
run's seed, workers differ, and non-persistent workers draw anew each epoch; the rank is part
of the key because every DDP rank has the same run seed (and hence the same worker seeds).
"""

from __future__ import annotations

import torch
from torch.utils.data import default_collate, get_worker_info

from lit_vision.data.batch_augment import BatchAugment
from lit_vision.utils.generators import keyed_generator


def channels_last_collate(samples: list) -> list:
    """collate_fn: `[images, targets, ...]` as `default_collate` stacks them, images channels-last
    (further fields, such as a sample index, pass through)."""
    images, *rest = default_collate(samples)
    return [images.contiguous(memory_format=torch.channels_last), *rest]


class WorkerBatchAugment:
    """collate_fn: `[images, targets]` with `images` augmented, float32 in [0, 1], channels-last."""

    def __init__(self, augment: BatchAugment, rank: int = 0) -> None:
        self.augment, self.rank = augment, rank
        self._generator: torch.Generator | None = None
        self._key: tuple[int, ...] | None = None

    def __call__(self, samples: list) -> list:
        images, *rest = default_collate(samples)
        return [self.augment(images, self.generator()).contiguous(memory_format=torch.channels_last), *rest]

    def generator(self) -> torch.Generator:
        """This process's generator (in the main process when the loader has no workers)."""
        worker = get_worker_info()
        key = (torch.initial_seed(), self.rank, worker.id if worker is not None else -1)
        if key != self._key:
            self._generator, self._key = keyed_generator("cpu", *key), key
        return self._generator
