"""Hand-written 2-D convolution as a drop-in `nn.Conv2d`: `HandWrittenConv2d`, and `conv2d`, its function.

Three algorithms compute it, all from GEMMs and copies only (no torch convolution op anywhere):

* "im2col" (`conv_im2col.py`), the reference: unfold -> one GEMM per chunk -> fold. Any geometry.
* "shifted" (`conv_shifted.py`): kh*kw GEMMs over shifted views of the padded image, no
  unfolded copy. Stride 1 only.
* "implicit_gemm" (`conv_implicit_gemm.py`): Triton kernels that gather each tile of the im2col
  matrix on chip when the GEMM needs it, for forward, input gradient and weight gradient. Any
  geometry; CUDA tensors only (CPU tensors only under Triton's interpreter, for tests).
* "auto" (the default) picks per call. On CUDA: "implicit_gemm" for float32, bfloat16 and
  float16 when Triton imports (it comes with torch's Linux wheels; where it is missing, "auto"
  says so once in a warning and runs "im2col"), "im2col" for float64. On the CPU: "shifted" for
  stride-1 kernels larger than 1x1 in float32 or float64 (where it is faster), "im2col"
  otherwise: strided layers; 1x1 layers, which im2col already runs as plain batched matmuls;
  float16/bfloat16, because "shifted" adds its kh*kw partial products into an output buffer of
  the input's dtype, rounding it kh*kw times, where im2col's single GEMM accumulates all of them
  in float32 inside the BLAS and rounds once. On other accelerators, "im2col": the shifted
  algorithm's per-sample loop of small GEMMs is a few thousand kernel launches per layer, while
  im2col launches a few per chunk of samples. The figures behind that choice are in
  docs/convolution.md.
"""

from __future__ import annotations

import functools
import warnings
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from lit_vision.errors import LitVisionError
from lit_vision.ops.conv_geometry import IntPair, pair
from lit_vision.ops.conv_im2col import Im2colConv2dFunction
from lit_vision.ops.conv_shifted import ShiftedConv2dFunction
from lit_vision.utils.choices import check_choice

Algorithm = Literal["auto", "im2col", "shifted", "implicit_gemm"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
# Dtypes that "auto" sends to the Triton kernels on CUDA (float64 stays on im2col's cuBLAS GEMMs:
# the kernels' float64 path is what the interpreter tests check, not a GPU speed path).
IMPLICIT_GEMM_AUTO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@functools.cache
def triton_available() -> bool:
    """Whether Triton imports (it ships with torch's Linux wheels, not the macOS/Windows ones)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _warn_no_triton() -> None:
    """Said once per process: cached, so later calls are no-ops."""
    warnings.warn(
        "Triton is not installed, so convolution algorithm 'auto' runs 'im2col' on CUDA instead of the "
        "implicit-GEMM kernels ('implicit_gemm'), which is several times slower on 3x3 and 7x7 layers; "
        "install triton (it comes with torch's Linux wheels) to use them",
        stacklevel=3,
    )


def choose_algorithm(
    algorithm: str,
    kernel: IntPair,
    stride: IntPair,
    padding: IntPair,
    dtype: torch.dtype = torch.float32,
    device_type: str = "cpu",
) -> str:
    """The algorithm that runs a convolution: "auto" resolved by geometry, dtype and device (see
    the module docstring), an explicit one checked against the stride."""
    check_choice(algorithm, Algorithm, "convolution algorithm")
    if algorithm == "implicit_gemm" and not triton_available():
        raise LitVisionError(
            "convolution algorithm 'implicit_gemm' needs Triton, which is not installed (it comes with torch's "
            "Linux wheels: pip install triton); use algorithm 'auto', 'im2col' or 'shifted'"
        )
    if algorithm == "auto" and device_type == "cuda" and dtype in IMPLICIT_GEMM_AUTO_DTYPES:
        if triton_available():
            return "implicit_gemm"
        _warn_no_triton()
    if algorithm == "auto":
        pointwise = kernel == (1, 1) and padding == (0, 0)
        full_precision = dtype in (torch.float32, torch.float64)
        shifted = stride == (1, 1) and not pointwise and full_precision and device_type == "cpu"
        return "shifted" if shifted else "im2col"
    if algorithm == "shifted" and stride != (1, 1):
        raise LitVisionError(
            f"convolution algorithm 'shifted' needs stride 1, got stride {stride}; "
            "use algorithm 'im2col' or 'auto' for strided layers"
        )
    return algorithm


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    algorithm: Algorithm = "auto",
) -> Tensor:
    """Functional form with `F.conv2d`'s signature (numeric padding only), plus the algorithm."""
    if isinstance(padding, str):
        raise ValueError("string padding ('same'/'valid') is not supported by the hand-written conv")
    stride_, padding_, dilation_ = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    chosen = choose_algorithm(algorithm, tuple(weight.shape[2:]), stride_, padding_, x.dtype, x.device.type)
    squeeze = x.dim() == 3
    if squeeze:  # unbatched input, as nn.Conv2d accepts
        x = x.unsqueeze(0)
    if chosen == "shifted":
        y = ShiftedConv2dFunction.apply(x, weight, bias, padding_, dilation_, groups)
    elif chosen == "implicit_gemm":
        # Imported on first use: importing it compiles nothing, but it imports Triton, and the
        # interpreter switch (TRITON_INTERPRET) is read when the kernels' module is imported.
        from lit_vision.ops.conv_implicit_gemm import ImplicitGemmConv2dFunction

        y = ImplicitGemmConv2dFunction.apply(x, weight, bias, stride_, padding_, dilation_, groups)
    else:
        y = Im2colConv2dFunction.apply(x, weight, bias, stride_, padding_, dilation_, groups)
    return y.squeeze(0) if squeeze else y


class HandWrittenConv2d(nn.Conv2d):
    """`nn.Conv2d` computed by the hand-written GEMM algorithms (im2col, shifted GEMMs for
    stride-1 kernels, implicit-GEMM Triton kernels on CUDA; `algorithm` picks, "auto" by layer
    shape, dtype and device).

    It subclasses `nn.Conv2d` rather than re-implementing it: the constructor signature, the
    parameter names (`weight`, `bias`), their shapes, the initialisation and `extra_repr` are then
    nn.Conv2d's by construction, so state dicts (and checkpoints) load both ways and the same seed
    gives the same initial weights. Only `forward` is replaced. Only `padding_mode="zeros"` is
    accepted (the algorithms pad with zeros), and only numeric padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        algorithm: Algorithm = "auto",
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(f"HandWrittenConv2d supports only padding_mode='zeros', got {padding_mode!r}")
        if isinstance(padding, str):
            raise ValueError(f"HandWrittenConv2d supports only numeric padding, got {padding!r}")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        # Checked here, so a bad choice fails at construction, naming the layer's stride; "auto"
        # is resolved on every call, since the choice also depends on the input's dtype.
        choose_algorithm(algorithm, self.kernel_size, self.stride, self.padding)
        self.algorithm = algorithm

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, algorithm={self.algorithm}"

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        weight, bias = self.weight, self.bias
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            # Mirror autocast's rule for convolutions (run in the autocast dtype) explicitly: the
            # GEMMs inside the Function must see operands of a single dtype.
            dtype = torch.get_autocast_dtype(device_type)
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
            with torch.autocast(device_type, enabled=False):
                return self._conv(x, weight, bias)
        if weight.dtype != x.dtype:
            raise TypeError(f"input dtype {x.dtype} differs from weight dtype {weight.dtype}")
        return self._conv(x, weight, bias)

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups, self.algorithm)


__all__ = ["ALGORITHMS", "Algorithm", "HandWrittenConv2d", "choose_algorithm", "conv2d", "triton_available"]
