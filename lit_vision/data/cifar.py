"""CIFAR-10 and CIFAR-100 (`data.layout: cifar10` / `cifar100`) in torchvision's on-disk format.

`data.data_dir` is the folder torchvision's `CIFAR10(root)` / `CIFAR100(root)` takes, the one
holding the unpacked archive (`data.download: true` fetches it, `lit_vision.data.download`):

    <data_dir>/cifar-10-batches-py/   data_batch_1 ... data_batch_5, test_batch, batches.meta
    <data_dir>/cifar-100-python/      train, test, meta

Each batch file is a pickled dict: "data", a uint8 array of N rows of 3072 bytes (the 1024 red,
then green, then blue values of a 32×32 image, row by row), and "labels" (CIFAR-10) or
"fine_labels" (CIFAR-100, whose 100 fine classes are the ones everyone reports); the meta file
names the classes ("label_names" / "fine_label_names"). The files are read as torchvision reads
them (`pickle.load(..., encoding="latin1")`): they are Python 2 pickles, so only open files you
downloaded from the dataset's home (the download checks its md5) or made yourself.

Splits: `train` is the 50,000 training images less a held-out share (`data.val_fraction`, 0 by
default), `val` is that share or, when there is none, the 10,000 test images, and `test` (the
`test` stage, and `predict`) is always the 10,000 test images, as published figures use them.
The images are held in memory as one uint8 tensor (180 MB for the whole of CIFAR-10): there is
nothing to decode, so the pre-flight image check has nothing to do, `data.cache` only copies
them, and `lit-vision optimize` declines.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_vision.errors import LitVisionError

IMAGE_SIZE = 32


@dataclass(frozen=True)
class CifarVariant:
    name: str  # the data.layout value
    folder: str  # torchvision's base_folder
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int


CIFAR10 = CifarVariant("cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                       "test_batch", "batches.meta", "labels", "label_names", 10)  # fmt: skip
CIFAR100 = CifarVariant("cifar100", "cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names", 100)
VARIANTS = {variant.name: variant for variant in (CIFAR10, CIFAR100)}


def base_folder(root: Path, variant: CifarVariant) -> Path:
    """`root/<variant folder>`, or `root` itself when it is that folder (its meta file inside)."""
    if root.name == variant.folder and (root / variant.meta_file).is_file():
        return root
    return root / variant.folder


def required_files(root: Path, variant: CifarVariant) -> list[Path]:
    base = base_folder(root, variant)
    return [base / name for name in (*variant.train_files, variant.test_file, variant.meta_file)]


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise LitVisionError(f"{path} is missing: expected the CIFAR file of that name (torchvision's format).")
    try:
        with open(path, "rb") as handle:
            content = pickle.load(handle, encoding="latin1")
    except Exception as error:  # a damaged or foreign file: pickle raises many kinds
        raise LitVisionError(f"{path} is not a CIFAR batch file (a pickled dict): {type(error).__name__}: {error}.") from None
    if not isinstance(content, dict):
        raise LitVisionError(f"{path} is not a CIFAR batch file: it holds a {type(content).__name__}, not a dict.")
    return content


def read_class_names(root: Path, variant: CifarVariant) -> list[str]:
    path = base_folder(root, variant) / variant.meta_file
    names = _unpickle(path).get(variant.names_key)
    if not isinstance(names, list) or len(names) != variant.num_classes:
        raise LitVisionError(f"{path} has no list of {variant.num_classes} class names under {variant.names_key!r}.")
    return [str(name) for name in names]


def read_batches(root: Path, variant: CifarVariant, split: str) -> tuple[torch.Tensor, list[int]]:
    """All images of "train" (the training batches, in order) or "test": uint8 (N, 3, 32, 32) and labels."""
    names = variant.train_files if split == "train" else (variant.test_file,)
    arrays, labels = [], []
    for name in names:
        path = base_folder(root, variant) / name
        content = _unpickle(path)
        data, targets = content.get("data"), content.get(variant.label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE**2:
            got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise LitVisionError(f"{path}: 'data' must be a uint8 array of rows of {3 * IMAGE_SIZE**2} bytes, got {got}.")
        if targets is None or len(targets) != len(data):
            raise LitVisionError(
                f"{path}: {variant.label_key!r} must hold one label per image ({len(data)}), got "
                f"{'none' if targets is None else len(targets)}."
            )
        targets = [int(t) for t in targets]
        bad = [t for t in targets if not 0 <= t < variant.num_classes]
        if bad:
            raise LitVisionError(f"{path}: label {bad[0]} is outside [0, {variant.num_classes}).")
        arrays.append(data)
        labels += targets
    images = torch.from_numpy(np.concatenate(arrays).reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE))
    return images, labels


class ArrayImages(Dataset):
    """(image, target) pairs over images held in memory: uint8 (N, 3, H, W). `target` is the
    label, or the item's index when `labels` is None (predict), as for image files."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: list[int] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, (self.labels[index] if self.labels is not None else index)
