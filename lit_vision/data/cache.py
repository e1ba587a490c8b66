"""`data.cache: true`: a split decoded once into a uint8 memory-mapped array, then read instead of JPEGs.

For GPUs fast enough that JPEG decoding is the bottleneck: a cached image is a memory copy
(~10 µs) instead of a decode (~200–300 µs). What is cached is the deterministic part of what
a worker would emit — for training the decoded `crop`-pixel square that `BatchAugment`
augments on the device, for evaluation the resized, centre-cropped image — so a cached and
an uncached run see the same pixels. Real MiniPlaces at 128 px: 100k × 3 × 128 × 128 ≈ 4.9 GB
for train, 0.5 GB for val.

Files live in `<cache_dir>/<split>-<kind>-<size>px-<key>.u8`; `key` hashes the list file's
bytes, the image size and the format version, so a changed list or size builds a new file.
(Image files edited in place under an unchanged list are not detected: delete the cache.)
A cache is written to a temporary file and renamed into place, so an interrupted build
never leaves a file that looks complete, and concurrent builders race harmlessly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lit_vision.data.dataset import MiniPlacesImages
from lit_vision.errors import LitVisionError
from lit_vision.utils.files import staging_folder

FORMAT_VERSION = 1


def cache_path(cache_dir: Path, list_file: Path, kind: str, size: int) -> Path:
    digest = hashlib.sha1(list_file.read_bytes())
    digest.update(f"{kind}:{size}:v{FORMAT_VERSION}".encode())
    return cache_dir / f"{list_file.stem}-{kind}-{size}px-{digest.hexdigest()[:12]}.u8"


def build_cache(path: Path, images: MiniPlacesImages, size: int, num_workers: int = 0) -> Path:
    """Decode every image of `images` (whose transform must output uint8 [3, size, size]) into
    `path` unless it is already there; return `path`."""
    expected = len(images) * 3 * size * size
    if path.is_file():
        if path.stat().st_size != expected:
            raise LitVisionError(f"The decoded cache {path} has the wrong size: delete it to rebuild.")
        return path
    with staging_folder(path) as staging:
        out = np.memmap(staging, dtype=np.uint8, mode="w+", shape=(len(images), 3, size, size))
        loader = DataLoader(images, batch_size=256, num_workers=num_workers, shuffle=False)
        start = 0
        for batch, _ in loader:
            if batch.shape[1:] != (3, size, size) or batch.dtype != torch.uint8:
                raise LitVisionError(f"Cache images must be uint8 [3, {size}, {size}], got {tuple(batch.shape[1:])}.")
            out[start : start + len(batch)] = batch.numpy()
            start += len(batch)
        out.flush()
        del out
        os.replace(staging, path)
    return path


class CachedImages(Dataset):
    """(image, target) pairs read from a cache file; the memory map is opened lazily in each
    worker process (a map opened before fork would be shared and pickled needlessly)."""

    def __init__(
        self,
        path: Path,
        size: int,
        targets: list[int],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.path, self.size, self.targets, self.transform = path, size, targets, transform
        self._array: np.memmap | None = None
        expected = len(targets) * 3 * size * size
        if path.stat().st_size != expected:
            raise LitVisionError(f"The decoded cache {path} has the wrong size: delete it to rebuild.")

    def __len__(self) -> int:
        return len(self.targets)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._array is None:
            self._array = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(len(self.targets), 3, self.size, self.size))
        image = torch.from_numpy(np.array(self._array[index]))
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]
