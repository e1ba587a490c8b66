"""Per-image transforms (torchvision.transforms.v2) on uint8 tensors. Outputs stay uint8:
normalisation is the model's job.

Every image first becomes a square (shorter side resized, centre square kept):
- training: the square of `crop_size` pixels, then the random augmentation (`Augmentation`),
  per image here (`data.augment_on: worker`) or batched (`BatchAugment`). A random resized
  crop's area is a fraction of the image's, so resizing before it would not change which part
  of the scene a crop covers; training therefore does not use `resize_size`.
- evaluation (validate, test, predict): shorter side to `resize_size`, then the centre
  `crop_size` square: the model sees the centre (crop_size / resize_size)² of the square scene.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

from lit_vision.data.augment_settings import Augmentation


class RandomChannelGain(torch.nn.Module):
    """Multiply each colour channel by its own factor drawn from [1 - gain, 1 + gain].

    torchvision's ColorJitter scales all channels together; this scales them independently,
    which shifts the white balance too.
    """

    def __init__(self, gain: float = 0.15) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        factors = 1 + (torch.rand(image.shape[-3], 1, 1) * 2 - 1) * self.gain
        return (image.float() * factors).clamp_(0, 255).to(image.dtype)


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


def train_transform(augmentation: Augmentation, crop: int = 128) -> v2.Compose:
    """The random part of training, per image, on the `crop`-pixel square: flip, channel gain,
    rotation, random resized crop — bilinear, as `BatchAugment` samples."""
    steps: list[torch.nn.Module] = []
    if augmentation.flip:
        steps.append(v2.RandomHorizontalFlip())
    if augmentation.gain:
        steps.append(RandomChannelGain(augmentation.gain))
    if augmentation.degrees:
        steps.append(v2.RandomRotation(augmentation.degrees, interpolation=InterpolationMode.BILINEAR))
    steps.append(v2.RandomResizedCrop(crop, scale=augmentation.scale, ratio=augmentation.ratio, antialias=True))
    if augmentation.padding:
        steps.append(v2.RandomCrop(crop, padding=augmentation.padding, fill=0))
    return v2.Compose(steps)


def eval_transform(resize: int = 144, crop: int = 128) -> v2.Compose:
    """Shorter side to `resize`, then the centre `crop` square."""
    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(crop)])
