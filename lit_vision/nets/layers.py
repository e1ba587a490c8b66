"""Small building blocks shared by the CNNs: which convolution class to use, and input normalisation."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from lit_vision.errors import LitVisionError
from lit_vision.ops.conv import Algorithm, HandWrittenConv2d
from lit_vision.utils.choices import check_choice

# The convolution a CNN is built with: PyTorch's nn.Conv2d, or the hand-written one of
# lit_vision.ops.conv (same parameters, so weights move freely between the two), which runs the
# GEMM algorithm its `conv_algorithm` names. "im2col" is the earlier spelling of "hand_written"
# (with algorithm "auto", which is not necessarily im2col): accepted, with a warning.
ConvName = Literal["torch", "hand_written", "im2col"]

# The non-linearity after each convolution. Smooth ones give an attack (and adversarial training's
# inner attack) gradients that are not zero on half the units; Xie et al., "Smooth adversarial
# training", measure their gain under attack at no extra cost. "relu" is the assignment's.
ActivationName = Literal["relu", "silu", "gelu", "softplus"]

# ImageNet statistics, in pixel units of [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_class(name: ConvName, algorithm: Algorithm = "auto") -> Callable[..., nn.Conv2d]:
    """`"torch"` -> nn.Conv2d; `"hand_written"` -> the hand-written convolution running
    `algorithm` (its constructor takes nn.Conv2d's arguments and builds the same parameters)."""
    check_choice(name, ConvName, "conv")
    if name == "im2col":
        warnings.warn(
            "conv: im2col is the earlier name of conv: hand_written, which runs conv_algorithm 'auto' (shifted GEMMs "
            "or im2col on the CPU, implicit-GEMM kernels on CUDA). Write conv: hand_written, and conv_algorithm: "
            "im2col to run im2col everywhere.",
            FutureWarning,
            stacklevel=2,
        )
    if name == "torch":
        if algorithm != "auto":
            raise LitVisionError(f"conv_algorithm {algorithm!r} is for conv: hand_written; conv: torch runs nn.Conv2d.")
        return nn.Conv2d
    return functools.partial(HandWrittenConv2d, algorithm=algorithm)


def activation_layer(name: ActivationName) -> nn.Module:
    """A fresh module for `name` ("softplus" with β = 10, the sharper of Xie et al.'s
    parametric softplus settings, which stays close to ReLU in value)."""
    check_choice(name, ActivationName, "activation")
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "gelu":
        return nn.GELU()
    return nn.Softplus(beta=10.0)


def replace_convolutions(model: nn.Module, conv: ConvName, algorithm: Algorithm = "auto") -> nn.Module:
    """Swap every plain nn.Conv2d of `model` (a torchvision network, say) for
    `conv_class(conv, algorithm)` with the same settings and weights, in place; "torch" leaves
    the model as it is."""
    Conv = conv_class(conv, algorithm)
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
