"""Exactness of the hand-written convolution algorithms against torch's own convolution.

For every algorithm ("im2col" everywhere, "shifted" on stride-1 geometries): float64
`gradcheck` (numerical vs our analytical backward) over a grid of geometries, float32
agreement with `F.conv2d` on larger shapes (outputs and every gradient), needs_input_grad
handling, no torch convolution op inside. Also: which algorithm "auto" picks, the errors for a
bad choice, and nn.Conv2d <-> HandWrittenConv2d state-dict compatibility. Shapes are kept small so
the whole file runs in seconds on 2 CPU cores.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lit_vision.ops.im2col as im2col_module
from lit_vision.errors import LitVisionError
from conv_cases import GRADCHECK_CASES  # tests/conv_cases.py: shared with the Triton kernels' tests
from lit_vision.ops.conv import HandWrittenConv2d, choose_algorithm, conv2d

EXPLICIT_ALGORITHMS = ("im2col", "shifted")


def _algorithm_cases(cases: list[tuple], stride_index: int) -> list:
    """Each case once per algorithm that accepts its stride ("shifted" needs stride 1)."""
    return [
        pytest.param(algorithm, *case, id=f"{algorithm}-{i}")
        for algorithm in EXPLICIT_ALGORITHMS
        for i, case in enumerate(cases)
        if algorithm == "im2col" or case[stride_index] in (1, (1, 1))
    ]


@pytest.mark.parametrize(
    "algorithm,kernel,stride,padding,dilation,groups,bias,size", _algorithm_cases(GRADCHECK_CASES, 1)
)
def test_gradcheck_float64(algorithm, kernel, stride, padding, dilation, groups, bias, size) -> None:
    torch.manual_seed(0)
    c_in, c_out = 4, 4
    x = torch.randn(1, c_in, *size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, c_in // groups, *kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, dtype=torch.float64, requires_grad=True) if bias else None
    inputs = (x, w, b) if bias else (x, w)

    def fn(*args):
        return conv2d(args[0], args[1], args[2] if bias else None, stride, padding, dilation, groups, algorithm)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)
    # And it is the same function as torch's.
    expected = F.conv2d(x, w, b, stride, padding, dilation, groups)
    torch.testing.assert_close(fn(*inputs), expected, rtol=1e-12, atol=1e-12)


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


FLOAT32_CASES = [
        (3, 16, 7, 2, 3, 1, 1, 33),  # stem-like
        (16, 16, 1, 1, 0, 1, 1, 17),  # 1x1 fast path
        (16, 32, 1, 2, 0, 1, 1, 17),  # strided 1x1
        (16, 16, 3, 1, 1, 1, 1, 17),
        (16, 24, 3, 2, 1, 2, 4, 19),
        (24, 24, 3, 1, 1, 1, 24, 15),  # depthwise
        (8, 12, (5, 3), (1, 2), (2, 1), 1, 1, 21),
        (32, 32, 3, 1, 1, 1, 1, 16),  # SimpleNet's 3x3 layers, scaled down
        (8, 12, (5, 3), 1, (2, 1), (1, 2), 1, 21),
        (16, 8, 3, 1, 0, 1, 2, 12),
]


@pytest.mark.parametrize(
    "algorithm,c_in,c_out,kernel,stride,padding,dilation,groups,size", _algorithm_cases(FLOAT32_CASES, 3)
)
def test_float32_matches_conv2d(algorithm, c_in, c_out, kernel, stride, padding, dilation, groups, size) -> None:
    torch.manual_seed(1)
    ref = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups)
    ours = HandWrittenConv2d(c_in, c_out, kernel, stride, padding, dilation, groups, algorithm=algorithm)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(8, c_in, size, size, requires_grad=True)

    y_ref, y = ref(x), ours(x)
    grad_y = torch.randn_like(y_ref)
    grads_ref = torch.autograd.grad(y_ref, (x, ref.weight, ref.bias), grad_y)
    grads = torch.autograd.grad(y, (x, ours.weight, ours.bias), grad_y)

    assert _relative_error(y, y_ref) < 1e-4
    for name, got, want in zip(("input", "weight", "bias"), grads, grads_ref):
        assert _relative_error(got, want) < 1e-4, name


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch split over several unfold chunks (including a ragged last one) is still exact."""
    torch.manual_seed(2)
    x = torch.randn(7, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    one_sample = 4 * 9 * 9 * 9 * 8  # bytes of X_u for one sample
    # Budget = CHUNK_BYTES / 4 here (the input is smaller): chunks of 3, 3 and 1 samples.
    monkeypatch.setattr(im2col_module, "CHUNK_BYTES", 12 * one_sample)
    assert im2col_module.chunk_size(x, 4 * 9 * 9 * 9) == 3
    y = conv2d(x, w, b, 1, 1, algorithm="im2col")
    grads = torch.autograd.grad(y.square().sum(), (x, w, b))
    y_ref = F.conv2d(x, w, b, 1, 1)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), (x, w, b))
    torch.testing.assert_close(y, y_ref)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("algorithm", EXPLICIT_ALGORITHMS)
@pytest.mark.parametrize("kernel", [1, 3])
def test_needs_input_grad_is_respected(kernel: int, algorithm: str) -> None:
    """Only the requested gradients are computed; the others stay None."""
    torch.manual_seed(3)
    conv = HandWrittenConv2d(4, 6, kernel, padding=kernel // 2, algorithm=algorithm)
    conv.bias.requires_grad_(False)
    x = torch.randn(2, 4, 7, 7)  # no grad: e.g. the image at the stem
    conv(x).sum().backward()
    assert conv.weight.grad is not None and conv.bias.grad is None and x.grad is None

    conv.weight.requires_grad_(False)
    x.requires_grad_(True)
    conv(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("algorithm", EXPLICIT_ALGORITHMS)
def test_channels_last_and_non_contiguous_inputs(algorithm: str) -> None:
    torch.manual_seed(4)
    ref = nn.Conv2d(4, 8, 3, padding=1)
    ours = HandWrittenConv2d(4, 8, 3, padding=1, algorithm=algorithm)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 9, 9).to(memory_format=torch.channels_last).requires_grad_(True)
    grad_y = torch.randn(2, 8, 9, 9).to(memory_format=torch.channels_last)
    y = ours(x)
    torch.testing.assert_close(y, ref(x), rtol=1e-4, atol=1e-5)
    (gx,) = torch.autograd.grad(y, x, grad_y)
    (gx_ref,) = torch.autograd.grad(ref(x), x, grad_y)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-5)


def test_state_dict_loads_both_ways() -> None:
    torch.manual_seed(5)
    kwargs = dict(kernel_size=(3, 5), stride=2, padding=(1, 2), dilation=1, groups=2, bias=True)
    ref = nn.Conv2d(4, 6, **kwargs)
    ours = HandWrittenConv2d(4, 6, **kwargs)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    for key, value in ref.state_dict().items():
        assert ours.state_dict()[key].shape == value.shape

    ours.load_state_dict(ref.state_dict())  # torch -> ours (strict)
    x = torch.randn(2, 4, 11, 13)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)

    other = nn.Conv2d(4, 6, **kwargs)
    other.load_state_dict(HandWrittenConv2d(4, 6, **kwargs).state_dict())  # ours -> torch (strict)

    # Same seed, same initial weights (initialisation is nn.Conv2d's).
    torch.manual_seed(6)
    a = nn.Conv2d(4, 6, 3)
    torch.manual_seed(6)
    b = HandWrittenConv2d(4, 6, 3)
    torch.testing.assert_close(a.weight, b.weight)
    torch.testing.assert_close(a.bias, b.bias)
    assert HandWrittenConv2d(4, 6, 3, bias=False).bias is None


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_other_padding_modes_are_refused(mode: str) -> None:
    with pytest.raises(ValueError, match="padding_mode"):
        HandWrittenConv2d(4, 6, 3, padding=1, padding_mode=mode)


def test_string_padding_is_refused() -> None:
    with pytest.raises(ValueError, match="padding"):
        HandWrittenConv2d(4, 6, 3, padding="same")


@pytest.mark.parametrize("algorithm", EXPLICIT_ALGORITHMS)
def test_no_torch_convolution_is_called(monkeypatch: pytest.MonkeyPatch, algorithm: str) -> None:
    """No algorithm may fall back to any of torch's convolution functions."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a torch convolution function was called")

    for name in ("conv2d", "conv_transpose2d", "convolution"):
        monkeypatch.setattr(F, name, forbidden, raising=False)
        monkeypatch.setattr(torch, name, forbidden, raising=False)
    conv = HandWrittenConv2d(4, 6, 3, padding=1, algorithm=algorithm)
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    conv(x).sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize(
    "kernel,stride,padding,expected",
    [
        (3, 1, 1, "shifted"),  # SimpleNet's 3x3 layers
        ((1, 3), 1, 0, "shifted"),
        (1, 1, 1, "shifted"),  # a padded 1x1 is a real (if odd) spatial convolution
        (1, 1, 0, "im2col"),  # plain 1x1: im2col's batched-matmul path, no unfold
        (7, 2, 3, "im2col"),  # the strided stem
        (1, 2, 0, "im2col"),
    ],
)
def test_auto_picks_by_layer_shape(kernel, stride, padding, expected: str) -> None:
    conv = HandWrittenConv2d(4, 6, kernel, stride, padding)
    assert conv.algorithm == "auto" and "algorithm=auto" in repr(conv)
    assert choose_algorithm("auto", conv.kernel_size, conv.stride, conv.padding) == expected
    # And the chosen Function is the one that runs.
    y = conv(torch.randn(1, 4, 9, 9, requires_grad=True))
    assert type(y.grad_fn).__name__.lower().startswith(expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_auto_keeps_half_precision_on_im2col(dtype: torch.dtype) -> None:
    """Half precision goes to im2col (one rounding per output), under autocast too."""
    assert choose_algorithm("auto", (3, 3), (1, 1), (1, 1), torch.float64) == "shifted"
    assert choose_algorithm("auto", (3, 3), (1, 1), (1, 1), dtype) == "im2col"
    # On an accelerator the shifted algorithm's per-sample loop is launch-bound: im2col there
    # (CUDA has the implicit-GEMM kernels: tests/test_conv_implicit_gemm.py).
    assert choose_algorithm("auto", (3, 3), (1, 1), (1, 1), torch.float32, "mps") == "im2col"
    conv = HandWrittenConv2d(4, 6, 3, padding=1)
    x = torch.randn(1, 4, 9, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=dtype):
        y = conv(x)
    assert y.dtype == dtype and type(y.grad_fn).__name__.startswith("Im2col")


@pytest.mark.parametrize("algorithm", EXPLICIT_ALGORITHMS)
def test_explicit_algorithm_is_used(algorithm: str) -> None:
    y = HandWrittenConv2d(4, 6, 3, padding=1, algorithm=algorithm)(torch.randn(1, 4, 7, 7, requires_grad=True))
    assert type(y.grad_fn).__name__.lower().startswith(algorithm)


def test_shifted_refuses_a_stride() -> None:
    with pytest.raises(LitVisionError, match=r"'shifted' needs stride 1, got stride \(2, 1\)"):
        HandWrittenConv2d(4, 6, 3, stride=(2, 1), algorithm="shifted")
    with pytest.raises(LitVisionError, match="stride"):
        conv2d(torch.randn(1, 4, 7, 7), torch.randn(6, 4, 3, 3), stride=2, algorithm="shifted")


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(LitVisionError, match=r"auto, im2col, shifted, implicit_gemm; got 'winograd'"):
        HandWrittenConv2d(4, 6, 3, algorithm="winograd")  # type: ignore[arg-type]
    assert choose_algorithm("im2col", (3, 3), (1, 1), (1, 1)) == "im2col"


@pytest.mark.parametrize("algorithm", EXPLICIT_ALGORITHMS)
def test_unbatched_input(algorithm: str) -> None:
    torch.manual_seed(7)
    ref = nn.Conv2d(4, 6, 3, padding=1)
    ours = HandWrittenConv2d(4, 6, 3, padding=1, algorithm=algorithm)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 7, 5)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)
