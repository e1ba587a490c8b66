"""A map-style dataset over MiniPlaces image files, decoded into uint8 RGB tensors.

Whatever a file's name says, its bytes decide how it is read: torchvision's `decode_image`
(libjpeg-turbo for JPEG, also PNG, GIF and WebP; grey, CMYK, palette and alpha become RGB),
and Pillow for the formats it lacks (BMP, TIFF, ...). Real datasets hold PNGs named .jpg."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file

from lit_vision.errors import LitVisionError


def decode_rgb(path: Path) -> torch.Tensor:
    """Decode one image file of any common format into a uint8 [3, H, W] RGB tensor; raises
    whatever the decoders raise."""
    return decode_bytes(read_file(str(path)))


def decode_bytes(data: torch.Tensor | bytes) -> torch.Tensor:
    """`decode_rgb` of an encoded image held in memory (a file's bytes, as a stream stores them)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    if data.numel() == 0:
        raise ValueError("it is empty (0 bytes)")
    try:
        image = decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as pil_image:  # the formats torchvision does not decode
            return torch.from_numpy(np.array(pil_image.convert("RGB"))).permute(2, 0, 1).contiguous()
    return image[0] if image.ndim == 4 else image  # an animated GIF: its first frame


def load_image(path: Path) -> torch.Tensor:
    """`decode_rgb`, with a LitVisionError that names the file (not a bare decoder traceback
    from a worker) when it is missing, empty or not an image."""
    try:
        return decode_rgb(path)
    except Exception as error:  # each decoder has its own exception types
        raise LitVisionError(f"Cannot read image {path}: {unreadable_reason(path, error)}.") from None


def unreadable_reason(path: Path, error: Exception) -> str:
    """Why `path` cannot be read, in a few words."""
    if not path.exists():
        return "it does not exist"
    if path.is_file() and path.stat().st_size == 0:
        return "it is empty (0 bytes)"
    detail = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
    return f"it is not an image any decoder here reads (JPEG, PNG, GIF, WebP, BMP, ...): {detail}"


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
