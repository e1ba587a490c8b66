"""Per-image transforms (torchvision.transforms.v2) on uint8 tensors, following the
course's augmentation family. Outputs stay uint8: normalisation is the model's job."""

from __future__ import annotations

import torch
from torchvision.transforms import v2


class RandomChannelGain(torch.nn.Module):
    """Multiply each colour channel by its own factor drawn from [1 - gain, 1 + gain].

    torchvision's ColorJitter scales all channels together; the course's colour jitter
    scaled them independently, which shifts the white balance too.
    """

    def __init__(self, gain: float = 0.15) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        factors = 1 + (torch.rand(image.shape[-3], 1, 1) * 2 - 1) * self.gain
        return (image.float() * factors).clamp_(0, 255).to(image.dtype)


def train_transform(resize: int = 144, crop: int = 128) -> v2.Compose:
    """Resize shorter side, flip, colour gain ±15%, rotate ≤15°, random resized crop."""
    return v2.Compose(
        [
            v2.Resize(resize, antialias=True),
            v2.RandomHorizontalFlip(),
            RandomChannelGain(0.15),
            v2.RandomRotation(15),
            v2.RandomResizedCrop(crop, scale=(0.25, 1.0), ratio=(0.8, 1.2), antialias=True),
        ]
    )


def eval_transform(resize: int = 144, crop: int = 128) -> v2.Compose:
    """Resize shorter side, centre crop."""
    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(crop)])


class SquareResize(torch.nn.Module):
    """Shorter side to `size`, then the centre `size`×`size` square; a no-op (no copy) on
    images that already have that shape — MiniPlaces' 128-px JPEGs at crop 128."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] == (self.size, self.size):
            return image
        image = v2.functional.resize(image, self.size, antialias=True)
        return v2.functional.center_crop(image, [self.size, self.size])


def device_train_transform(crop: int = 128) -> SquareResize:
    """Worker side of `data.augment_on: device`: decode only, at the model's resolution.

    Resizing the shorter side to `resize_size` before a random resized crop does not change
    which part of the image a crop covers (the crop's area is a fraction of the image's), so
    the resize is folded into `BatchAugment`'s sampling box: square images of `crop` pixels
    leave the worker untouched, others are resized to that square first.
    """
    return SquareResize(crop)
