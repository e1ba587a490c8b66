"""Pixel-space conventions: images travel as uint8 [0, 255] or float in [0, 1]."""

from __future__ import annotations

import torch

from lit_vision.errors import LitVisionError


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> a new float32 tensor in [0, 1]; floating tensors are returned as they are."""
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    if not images.is_floating_point():
        raise LitVisionError(f"Images must be uint8 or float in [0, 1], got dtype {images.dtype}.")
    return images
