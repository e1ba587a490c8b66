"""Training augmentation of whole batches, with its own random draw per sample.

It does, in ONE `affine_grid`/`grid_sample` per batch, what the per-image pipeline
(`transforms.train_transform`) does in four steps, with the same `Augmentation` settings:

    horizontal flip (p=0.5) -> rotation about the image centre (zero fill)
    -> random resized crop (area a fraction `scale` of the image, aspect `ratio`, log-uniform)
    to `crop` pixels, and a per-channel gain after sampling; a pad-and-crop (`padding`, CIFAR's
    shift of up to 4 pixels with zero fill) is an integer shift of that result, done by indexing.

Where it runs (`data.augment_on`): after the copy to a GPU (`on_after_batch_transfer`), or,
when the accelerator is the CPU, inside each loader worker on that worker's batch
(`WorkerBatchAugment`), so the training threads only train. Workers emit the square training
image of `crop` pixels either way (`transforms.SquareResize`).

Why: torchvision's v2 draws one parameter set per call, and its per-image rotation costs
~2.5 ms on a CPU worker; a batched affine costs ~1.4 ms per image on one CPU thread and next to
nothing on a GPU. Input: uint8 (or float in [0, 1]) images [B, 3, H, W]; output: float32 in
[0, 1], [B, 3, crop, crop] — pixel space, as every model expects (it normalises itself).

Geometry, in pixels relative to the image centre: an output pixel at normalised position
o ∈ [-1, 1]² comes from the rotated-frame point p = c + diag(±w/2, h/2)·o (the crop box of
size w×h centred at c, ± for the flip), which is R(θ)·p in the source image; `grid_sample`
wants source positions in normalised units (x·2/W, y·2/H).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.data.augment_settings import Augmentation
from lit_vision.utils.images import to_unit_float


class BatchAugment(nn.Module):
    def __init__(self, crop: int = 128, augmentation: Augmentation = Augmentation()) -> None:
        """
        Args:
            crop: side of the square output (pixels).
            augmentation: what to draw (flip, rotation, crop scale and ratio, channel gain).
        """
        super().__init__()
        self.crop, self.augmentation = crop, augmentation

    def extra_repr(self) -> str:
        return f"crop={self.crop}, {self.augmentation}"

    def sample_boxes(self, batch: int, height: int, width: int, device, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample crop boxes and rotations in `affine_grid`'s normalised units
        (align_corners=False): `box` [B, 2, 3] maps output positions o ∈ [-1, 1]² to points of
        the image frame (|det| = crop area / image area, negative when flipped); `rotation`
        [B, 2, 2] turns frame points about the centre into source-image points."""
        settings = self.augmentation

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(batch, device=device, generator=generator)

        area = uniform(*settings.scale) * (height * width)
        aspect = torch.exp(uniform(math.log(settings.ratio[0]), math.log(settings.ratio[1])))
        # Boxes that would not fit are shrunk to the image (torchvision retries, then falls
        # back to a centre crop; with these ranges and square images a clamp is rarely hit).
        box_w = torch.sqrt(area * aspect).clamp(max=width)
        box_h = torch.sqrt(area / aspect).clamp(max=height)
        # Box centre, uniform over the positions that keep the box inside the image.
        cx = (torch.rand(batch, device=device, generator=generator) - 0.5) * (width - box_w)
        cy = (torch.rand(batch, device=device, generator=generator) - 0.5) * (height - box_h)
        sign = torch.ones(batch, device=device)
        if settings.flip:
            sign = torch.where(torch.rand(batch, device=device, generator=generator) < 0.5, -sign, sign)
        angle = uniform(-settings.degrees, settings.degrees) * (math.pi / 180)
        cos, sin = torch.cos(angle), torch.sin(angle)
        zero = torch.zeros_like(cx)
        box = torch.stack(
            [
                torch.stack([sign * box_w / width, zero, cx * (2 / width)], dim=1),
                torch.stack([zero, box_h / height, cy * (2 / height)], dim=1),
            ],
            dim=1,
        )
        # diag(2/W, 2/H) · R(θ) · diag(W/2, H/2)
        rotation = torch.stack(
            [torch.stack([cos, -sin * (height / width)], dim=1), torch.stack([sin * (width / height), cos], dim=1)], dim=1
        )
        return box, rotation

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, channels, height, width = images.shape
        pixels = to_unit_float(images).float()
        box, rotation = self.sample_boxes(batch, height, width, images.device, generator)
        frame = F.affine_grid(box, [batch, channels, self.crop, self.crop], align_corners=False)
        # Frame points between the outermost pixel centres and the frame's edge read the edge
        # pixels, as cropping then resizing does; only rotation brings in zeros (from outside
        # the source image), as rotating the whole image with zero fill does.
        frame[..., 0].clamp_(-1 + 1 / width, 1 - 1 / width)
        frame[..., 1].clamp_(-1 + 1 / height, 1 - 1 / height)
        grid = frame @ rotation.transpose(1, 2)[:, None]
        out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if pad := self.augmentation.padding:
            out = padded_random_crop(out, pad, generator)
        if gain := self.augmentation.gain:
            factors = 1 + (torch.rand(batch, channels, 1, 1, device=images.device, generator=generator) * 2 - 1) * gain
            out = out.mul_(factors)
        return out.clamp_(0, 1)


def padded_random_crop(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image padded with `pad` zero pixels on every side, then an (H, W) window of it at a
    random offset of its own: `v2.RandomCrop(size, padding=pad)` per sample, exact (a gather)."""
    batch, _, height, width = images.shape
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # [B, H + 2p, W + 2p, C]
    top = torch.randint(0, 2 * pad + 1, (batch,), device=device, generator=generator)
    left = torch.randint(0, 2 * pad + 1, (batch,), device=device, generator=generator)
    rows = (top[:, None] + torch.arange(height, device=device))[:, :, None]
    cols = (left[:, None] + torch.arange(width, device=device))[:, None, :]
    window = padded[torch.arange(batch, device=device)[:, None, None], rows, cols]  # [B, H, W, C]
    return window.permute(0, 3, 1, 2).contiguous()
