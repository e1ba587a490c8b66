"""Shape arithmetic shared by the hand-written convolution algorithms (pure torch, no Lightning)."""

from __future__ import annotations

from torch import Tensor

IntPair = tuple[int, int]


def pair(value: int | tuple[int, ...], name: str) -> IntPair:
    """Normalise an int-or-pair argument the way nn.Conv2d does."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value}")
    return value  # type: ignore[return-value]


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one axis, as nn.Conv2d documents it."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def output_hw(x: Tensor, weight: Tensor, stride: IntPair, padding: IntPair, dilation: IntPair, groups: int) -> IntPair:
    """(Ho, Wo) of a convolution, after checking that input, weight and groups fit together."""
    _, ci, h, w = x.shape
    _, cig, kh, kw = weight.shape
    if ci != cig * groups:
        raise ValueError(f"input has {ci} channels, weight expects {cig * groups} ({groups} groups)")
    ho = output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = output_size(w, kw, stride[1], padding[1], dilation[1])
    if ho <= 0 or wo <= 0:
        raise ValueError(f"input {h}x{w} is too small for kernel {kh}x{kw} with this padding")
    return ho, wo
