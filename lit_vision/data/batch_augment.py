"""Training augmentation of whole batches on the device, with its own random draw per sample.

Workers only decode (and resize to `resize_size`); this module then does, in ONE
`affine_grid`/`grid_sample` per batch, what the per-image pipeline does in four steps:

    horizontal flip (p=0.5) -> rotation about the image centre (±15°, zero fill)
    -> random resized crop (area 0.25–1 of the image, aspect 0.8–1.2, log-uniform) to `crop`
    and a per-channel gain (×[0.85, 1.15], each channel its own factor) after sampling.

Why: torchvision's v2 draws one parameter set per call, and its per-image rotation costs
~2.5 ms on a CPU worker; a batched affine costs ~1.4 ms per image on one CPU thread and next to
nothing on a GPU. Input: uint8 (or float in [0, 1]) images [B, 3, H, W]; output: float32 in
[0, 1], [B, 3, crop, crop] — pixel space, as every model expects (it normalises itself).

Geometry, in pixels relative to the image centre: an output pixel at normalised position
o ∈ [-1, 1]² comes from the rotated-frame point p = c + diag(±w/2, h/2)·o (the crop box of
size w×h centred at c, ± for the flip), which is R(θ)·p in the source image. `affine_grid`
wants source positions in normalised units, so the matrix is diag(2/W, 2/H)·R(θ)·[diag | c].
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.utils.images import to_unit_float


class BatchAugment(nn.Module):
    def __init__(
        self,
        crop: int = 128,
        scale: tuple[float, float] = (0.25, 1.0),
        ratio: tuple[float, float] = (0.8, 1.2),
        degrees: float = 15.0,
        gain: float = 0.15,
        flip: bool = True,
    ) -> None:
        """
        Args:
            crop: side of the square output (pixels).
            scale: range of the crop's area as a fraction of the input image's area.
            ratio: range of the crop's aspect ratio w/h (drawn log-uniformly).
            degrees: rotations are drawn uniformly from [-degrees, degrees].
            gain: each channel is multiplied by its own factor from [1 - gain, 1 + gain].
            flip: flip horizontally with probability 0.5.
        """
        super().__init__()
        self.crop, self.scale, self.ratio = crop, scale, ratio
        self.degrees, self.gain, self.flip = degrees, gain, flip

    def extra_repr(self) -> str:
        return (
            f"crop={self.crop}, scale={self.scale}, ratio={self.ratio}, degrees={self.degrees}, "
            f"gain={self.gain}, flip={self.flip}"
        )

    def sample_theta(self, batch: int, height: int, width: int, device, generator=None) -> torch.Tensor:
        """Per-sample [B, 2, 3] matrices for `affine_grid` (align_corners=False)."""

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(batch, device=device, generator=generator)

        area = uniform(*self.scale) * (height * width)
        aspect = torch.exp(uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        # Boxes that would not fit are shrunk to the image (torchvision retries, then falls
        # back to a centre crop; with these ranges and square images a clamp is rarely hit).
        box_w = torch.sqrt(area * aspect).clamp(max=width)
        box_h = torch.sqrt(area / aspect).clamp(max=height)
        # Box centre, uniform over the positions that keep the box inside the image.
        cx = (torch.rand(batch, device=device, generator=generator) - 0.5) * (width - box_w)
        cy = (torch.rand(batch, device=device, generator=generator) - 0.5) * (height - box_h)
        sign = torch.ones(batch, device=device)
        if self.flip:
            sign = torch.where(torch.rand(batch, device=device, generator=generator) < 0.5, -sign, sign)
        angle = uniform(-self.degrees, self.degrees) * (math.pi / 180)
        cos, sin = torch.cos(angle), torch.sin(angle)
        half_w, half_h = sign * box_w / 2, box_h / 2
        # rows of diag(2/W, 2/H) · R(θ) · [[half_w, 0, cx], [0, half_h, cy]]
        theta = torch.stack(
            [
                torch.stack([cos * half_w, -sin * half_h, cos * cx - sin * cy], dim=1) * (2 / width),
                torch.stack([sin * half_w, cos * half_h, sin * cx + cos * cy], dim=1) * (2 / height),
            ],
            dim=1,
        )
        return theta

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, channels, height, width = images.shape
        pixels = to_unit_float(images).float()
        theta = self.sample_theta(batch, height, width, images.device, generator)
        grid = F.affine_grid(theta, [batch, channels, self.crop, self.crop], align_corners=False)
        out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.gain:
            factors = 1 + (torch.rand(batch, channels, 1, 1, device=images.device, generator=generator) * 2 - 1) * self.gain
            out = out.mul_(factors)
        return out.clamp_(0, 1)
