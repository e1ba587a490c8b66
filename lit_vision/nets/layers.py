"""Small building blocks shared by the CNNs: which convolution class to use, and input normalisation."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

# "im2col" is the hand-written convolution of lit_vision.ops.conv (same parameters as nn.Conv2d).
ConvName = Literal["torch", "im2col"]

# ImageNet statistics, in pixel units of [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_class(name: ConvName) -> type[nn.Conv2d]:
    """`"torch"` -> nn.Conv2d, `"im2col"` -> the hand-written im2col convolution (same parameters)."""
    if name == "torch":
        return nn.Conv2d
    if name == "im2col":
        # Imported lazily so that the operator's module is only loaded when it is asked for.
        from lit_vision.ops.conv import Im2colConv2d

        return Im2colConv2d
    raise ValueError(f"conv must be 'torch' or 'im2col', got {name!r}")


def replace_convolutions(model: nn.Module, conv: ConvName) -> nn.Module:
    """Swap every plain nn.Conv2d of `model` (a torchvision network, say) for `conv_class(conv)`
    with the same settings and weights, in place; "torch" leaves the model as it is."""
    Conv = conv_class(conv)
    if Conv is nn.Conv2d:
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d:
                replacement = Conv(
                    child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                    padding=child.padding, dilation=child.dilation, groups=child.groups,
                    bias=child.bias is not None, padding_mode=child.padding_mode,
                )  # fmt: skip
                replacement.load_state_dict(child.state_dict())
                setattr(parent, name, replacement)
    return model


class Normalize(nn.Module):
    """Pixel images (uint8 in [0, 255] or float in [0, 1]) -> per-channel standardised float.

    It is the first layer of every model, so attacks work in pixel units and whoever calls the
    model (or an exported file of it) feeds pixels, never normalised tensors.
    """

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        # Not persistent: a checkpoint does not store the values; the model that rebuilds it sets
        # them again (the ImageNet defaults here, or what its own settings imply), and keeping
        # them out of the state dict lets weights load into nets built without this layer.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        return (images - self.mean) / self.std
