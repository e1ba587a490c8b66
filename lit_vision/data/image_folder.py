"""Any image file, or every image file under a folder (recursively), as evaluation-ready uint8
tensors: what `lit-vision predict` reads when it is pointed at the user's own pictures.

Files are read with Pillow, so every format it can open counts (JPEG, PNG, WebP, BMP, TIFF,
GIF's first frame, ...); EXIF orientation is applied, and grey, palette, CMYK and RGBA images
become RGB (an alpha channel is dropped). Then the evaluation transform the model was validated
with (shorter side resized, centre crop) gives every image the model's input size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from lit_vision.errors import LitVisionError

# Named in the error for a folder without images (the full list runs to dozens).
COMMON = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def readable_suffixes() -> set[str]:
    """File suffixes of the formats this Pillow can open (not those it can only write)."""
    return {suffix for suffix, image_format in Image.registered_extensions().items() if image_format in Image.OPEN}


def list_image_files(path: str | Path) -> list[Path]:
    """`path` itself when it is a file; otherwise the image files under it, recursively, sorted,
    hidden files and folders left out."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise LitVisionError(f"{path} does not exist: expected an image file or a folder of images to predict.")
    suffixes = readable_suffixes()
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in suffixes
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        common = ", ".join(sorted(suffixes & COMMON))
        raise LitVisionError(
            f"{path} holds no image files (searched recursively for {common} and the other formats Pillow reads)."
        )
    return files


def load_rgb(path: Path) -> torch.Tensor:
    """A uint8 (3, H, W) RGB tensor of the image at `path`, upright; a file Pillow cannot
    decode raises a LitVisionError naming it."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise LitVisionError(f"Cannot read image {path}: Pillow could not decode it ({error}).") from None
    return pil_to_tensor(image)


class ImageFiles(Dataset):
    """(image, index) pairs over `files`; the index maps a prediction back to its file."""

    def __init__(self, files: list[Path], transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_rgb(self.files[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, index
