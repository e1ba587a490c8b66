"""A map-style dataset over MiniPlaces JPEG files, decoded with libjpeg-turbo into uint8 tensors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from lit_vision.errors import LitVisionError


def load_image(path: Path) -> torch.Tensor:
    """Read and decode one JPEG as a uint8 [3, H, W] RGB tensor; a missing or corrupt file
    raises a LitVisionError that names it (not a bare decoder traceback from a worker)."""
    try:
        data = read_file(str(path))
        return decode_jpeg(data, mode=ImageReadMode.RGB)
    except (RuntimeError, OSError) as error:
        reason = "it does not exist" if not path.exists() else f"it could not be decoded as a JPEG ({error})"
        raise LitVisionError(f"Cannot read image {path}: {reason}.") from None


class MiniPlacesImages(Dataset):
    """(image, target) pairs. `target` is the class label for labelled splits and the
    item's index for the unlabelled test split (so predictions can be matched to paths)."""

    def __init__(
        self,
        images_dir: Path,
        relative_paths: list[str],
        labels: list[int] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.images_dir = images_dir
        self.relative_paths = relative_paths
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.relative_paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_image(self.images_dir / self.relative_paths[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, (self.labels[index] if self.labels is not None else index)
