"""Exactness checks of the implicit-GEMM Triton kernels on the CPU, through Triton's interpreter.

Not a test module: tests/test_conv_implicit_gemm.py runs it in a subprocess,

    python tests/_conv_interpreted.py GROUP [GROUP ...]      (GROUP: gradcheck, blocks, float32, misc, slow, dynamo)

because TRITON_INTERPRET=1 has to be set before the kernels' module is imported, and must not
leak into the pytest process (where other tests import the same modules). It prints one JSON
object {check name: result}; a check that raises reports its error text instead, so one
failure does not hide the others. The asserts live in the test module.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton or the kernels

import json  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from conv_cases import GRADCHECK_CASES  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import lit_vision.ops.conv_implicit_gemm as conv_implicit_gemm  # noqa: E402
from lit_vision.ops.conv import HandWrittenConv2d, conv2d  # noqa: E402

# float32 against F.conv2d: (c_in, c_out, kernel, stride, padding, dilation, groups, size), batch 2.
FLOAT32_CASES = [
    (3, 16, 7, 2, 3, 1, 1, 13),  # stem-like: K = 147, not a multiple of 16
    (16, 24, 1, 1, 0, 1, 1, 7),  # 1x1
    (16, 16, 1, 2, 0, 1, 1, 9),  # strided 1x1
    (8, 12, 3, 1, 1, 1, 1, 9),
    (16, 24, 3, 2, 1, 2, 4, 9),  # strided, dilated, grouped
    (12, 12, 3, 1, 1, 1, 12, 7),  # depthwise
    (8, 12, (5, 3), (1, 2), (2, 1), 1, 1, 11),
]
# Bigger float32 cases, marked slow in the test module (tens of seconds under the interpreter).
SLOW_FLOAT32_CASES = [
    (16, 32, 3, 1, 1, 1, 1, 16),  # 4x16x16x16 -> 32 3x3 (batch 4 below)
    (3, 64, 7, 2, 3, 1, 1, 16),  # SimpleNet's stem, scaled down
    (64, 64, 3, 1, 1, 1, 1, 8),  # SimpleNet's 64-channel 3x3 layer, scaled down
]


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).norm() / expected.double().norm().clamp_min(1e-300)).item()


def _forward_backward(conv: Callable, x, w, b, grad_y=None):
    y = conv(x, w, b)
    if grad_y is None:
        grad_y = torch.randn_like(y)
    inputs = [t for t in (x, w, b) if t is not None]
    return [y, *torch.autograd.grad(y, inputs, grad_y)], grad_y


def _against_torch(x, w, b, geometry) -> list[float]:
    """Relative errors of [output, dX, dW, (dB)] of implicit_gemm against F.conv2d's."""
    ours, grad_y = _forward_backward(lambda *a: conv2d(*a, *geometry, algorithm="implicit_gemm"), x, w, b)
    theirs, _ = _forward_backward(lambda *a: F.conv2d(*a, *geometry), x, w, b, grad_y)
    return [_relative(a, e) for a, e in zip(ours, theirs)]


def gradcheck_checks() -> dict[str, Callable[[], object]]:
    checks = {}
    for i, (kernel, stride, padding, dilation, groups, bias, size) in enumerate(GRADCHECK_CASES):

        def check(kernel=kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias, size=size):
            torch.manual_seed(0)
            x = torch.randn(1, 4, *size, dtype=torch.float64, requires_grad=True)
            w = torch.randn(4, 4 // groups, *kernel, dtype=torch.float64, requires_grad=True)
            b = torch.randn(4, dtype=torch.float64, requires_grad=True) if bias else None
            inputs = (x, w, b) if bias else (x, w)

            def fn(*args):
                return conv2d(args[0], args[1], args[2] if bias else None, stride, padding, dilation, groups, "implicit_gemm")

            # Fast mode (random projections of the Jacobian, numerical vs analytical): full mode
            # takes 30-300 s per case under the interpreter. Its complement: every output and
            # gradient compared with torch's in float64 below.
            passed = torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=True)
            return {"gradcheck": bool(passed), "errors": _against_torch(x, w, b, (stride, padding, dilation, groups))}

        checks[f"gradcheck-{i}"] = check
    return checks


# The channel-block K order (reduced channels a multiple of 16; the grid above has 1-4 channels,
# the flat order): (c_in, c_out, kernel, stride, padding, dilation, groups, size), float64.
CHANNEL_BLOCK_CASES = [
    (16, 16, 3, 1, 1, 1, 1, 5),
    (32, 32, 3, 2, 1, 2, 2, 7),  # 16 channels per group, strided, dilated
    (16, 32, 1, 2, 0, 1, 1, 5),  # input gradient over 32 output channels: two blocks of 16
]


def channel_block_checks() -> dict[str, Callable[[], object]]:
    checks = {}
    for i, (c_in, c_out, kernel, stride, padding, dilation, groups, size) in enumerate(CHANNEL_BLOCK_CASES):

        def check(c_in=c_in, c_out=c_out, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                  groups=groups, size=size):  # fmt: skip
            torch.manual_seed(6)
            x = torch.randn(1, c_in, size, size, dtype=torch.float64, requires_grad=True)
            w = torch.randn(c_out, c_in // groups, kernel, kernel, dtype=torch.float64, requires_grad=True)
            b = torch.randn(c_out, dtype=torch.float64, requires_grad=True)
            geometry = (stride, padding, dilation, groups)
            passed = torch.autograd.gradcheck(
                lambda *a: conv2d(*a, *geometry, algorithm="implicit_gemm"), (x, w, b), eps=1e-6, atol=1e-8,
                rtol=1e-6, fast_mode=True,
            )  # fmt: skip
            return {"gradcheck": bool(passed), "errors": _against_torch(x, w, b, geometry)}

        checks[f"blocks-{i}"] = check
    return checks


def _float32_check(c_in, c_out, kernel, stride, padding, dilation, groups, size, batch=2):
    def check():
        torch.manual_seed(1)
        ref = torch.nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups)
        x = torch.randn(batch, c_in, size, size, requires_grad=True)
        return _against_torch(x, ref.weight.detach().requires_grad_(), ref.bias.detach().requires_grad_(),
                              (ref.stride, ref.padding, ref.dilation, groups))  # fmt: skip

    return check


def float32_checks(cases=FLOAT32_CASES, prefix="float32", batch=2) -> dict[str, Callable[[], object]]:
    return {f"{prefix}-{i}": _float32_check(*case, batch=batch) for i, case in enumerate(cases)}


class _OpNames(TorchDispatchMode):
    """Records the name of every aten op dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


def trace_check():
    """The aten ops of a forward + backward (stride 2, groups, bias): none may be a convolution.
    The module runs the convolution as custom ops, which a dispatch trace sees whole (it does not
    look inside an op), so the ops inside are traced through the functions the ops call."""
    torch.manual_seed(2)
    conv = HandWrittenConv2d(4, 6, 3, stride=2, padding=1, groups=2, algorithm="implicit_gemm")
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    with _OpNames() as outer:
        y = conv(x)
        y.square().sum().backward()
    geometry = ((2, 2), (1, 1), (1, 1), 2)
    with _OpNames() as inner:
        out = conv_implicit_gemm.forward_impl(x.detach(), conv.weight.detach(), conv.bias.detach(), *geometry)
        conv_implicit_gemm.backward_impl(torch.ones_like(out), x.detach(), conv.weight.detach(), *geometry, True, True)
    return {"ops": sorted(inner.names), "outer": sorted(outer.names), "grad_fn": type(y.grad_fn).__name__,
            "x_grad": x.grad is not None}  # fmt: skip


def opcheck_check():
    """torch.library.opcheck of both custom ops (schema, fake kernels' shapes, strides and dtypes
    against the real outputs, autograd registration): a compiled graph trusts the fake kernels'
    layouts, so a real output laid out otherwise is a wrong graph, not an eager error."""
    torch.manual_seed(6)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    geometry = ([2, 2], [1, 1], [1, 1], 2)
    failures = {}
    cases = {
        "forward": (conv_implicit_gemm._conv_op, (x, w, b, *geometry)),
        "backward": (conv_implicit_gemm._conv_backward_op, (torch.randn(2, 6, 3, 3), x.detach(), w.detach(), *geometry, True, True)),
    }  # fmt: skip
    for name, (op, args) in cases.items():
        try:
            torch.library.opcheck(op, args)
        except Exception as error:  # noqa: BLE001 — reported, asserted on by the test module
            failures[name] = str(error)[:600]
    return failures


def dynamo_check():
    """torch._dynamo.explain over SimpleNet's forward + loss with every convolution on the
    implicit-GEMM kernels: graphs and graph breaks (each convolution is one custom-op node)."""
    from lit_vision.nets.simplenet import SimpleCNN

    torch.manual_seed(4)
    net = SimpleCNN(num_classes=4, conv="hand_written", conv_algorithm="implicit_gemm")
    assert sum(getattr(m, "algorithm", None) == "implicit_gemm" for m in net.modules()) == 7
    x = torch.randn(2, 3, 16, 16)
    explained = torch._dynamo.explain(lambda images: net(images).logsumexp(1).sum())(x)
    return {"graphs": explained.graph_count, "breaks": explained.graph_break_count,
            "reasons": sorted({reason.reason.splitlines()[0][:120] for reason in explained.break_reasons})}  # fmt: skip


def determinism_check():
    """Weight gradient with several split-K partial sums: same bits on every run."""
    torch.manual_seed(3)
    x = torch.randn(3, 8, 10, 10, dtype=torch.float32)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    grad_y = torch.randn(3, 8, 10, 10)
    runs = [torch.autograd.grad(conv2d(x, w, None, 1, 1, algorithm="implicit_gemm"), w, grad_y)[0] for _ in range(3)]
    splits, _ = conv_implicit_gemm._weight_grad_splits(3 * 10 * 10, 1, x.device)
    expected = torch.autograd.grad(F.conv2d(x, w, None, 1, 1), w, grad_y)[0]
    return {"splits": splits, "identical": all(torch.equal(runs[0], r) for r in runs[1:]),
            "error": _relative(runs[0], expected)}  # fmt: skip


def module_check():
    """HandWrittenConv2d(algorithm="implicit_gemm"): needs_input_grad, layouts, unbatched input."""
    torch.manual_seed(4)
    ref = torch.nn.Conv2d(4, 6, 3, padding=1)
    ours = HandWrittenConv2d(4, 6, 3, padding=1, algorithm="implicit_gemm")
    ours.load_state_dict(ref.state_dict())
    result: dict[str, object] = {}
    ours.bias.requires_grad_(False)
    x = torch.randn(2, 4, 7, 7)  # no gradient wanted, as for the image at the stem
    ours(x).sum().backward()
    result["only_weight_grad"] = ours.weight.grad is not None and ours.bias.grad is None and x.grad is None
    x_cl = torch.randn(2, 4, 7, 7).to(memory_format=torch.channels_last)
    y = ours(x_cl)
    result["output_channels_last"] = y.is_contiguous(memory_format=torch.channels_last)
    result["channels_last_error"] = _relative(y, ref(x_cl))
    wide = torch.randn(2, 4, 7, 14)[:, :, :, ::2]  # non-contiguous
    result["non_contiguous_error"] = _relative(ours(wide), ref(wide))
    single = torch.randn(4, 7, 5)
    result["unbatched_error"] = _relative(ours(single), ref(single))
    result["unbatched_shape"] = list(ours(single).shape)
    return result


def bfloat16_check():
    """bf16 through the interpreter, where the kernels cast bf16 tiles to fp32 before tl.dot (the
    interpreter's bf16 tl.dot is wrong): the result must be fp32's on the same bf16 values, up to
    the bf16 rounding of the results. The GPU's bf16 tl.dot itself is tested on a GPU (tests/test_conv_implicit_gemm.py, skipped without CUDA)."""
    torch.manual_seed(5)
    x = torch.randn(2, 8, 9, 9).bfloat16().requires_grad_()
    w = torch.randn(12, 8, 3, 3).bfloat16().requires_grad_()
    b = torch.randn(12).bfloat16().requires_grad_()
    ours, grad_y = _forward_backward(lambda *a: conv2d(*a, 1, 1, algorithm="implicit_gemm"), x, w, b)
    exact = [t.float().detach().requires_grad_() for t in (x, w, b)]
    theirs, _ = _forward_backward(lambda *a: F.conv2d(*a, 1, 1), *exact, grad_y.float())
    return {"dtypes": [str(t.dtype) for t in ours], "errors": [_relative(a, e) for a, e in zip(ours, theirs)]}


GROUPS: dict[str, Callable[[], dict[str, Callable[[], object]]]] = {
    "gradcheck": gradcheck_checks,
    "blocks": channel_block_checks,
    "float32": float32_checks,
    "misc": lambda: {"trace": trace_check, "determinism": determinism_check, "module": module_check,
                     "bfloat16": bfloat16_check, "opcheck": opcheck_check},  # fmt: skip
    "slow": lambda: float32_checks(SLOW_FLOAT32_CASES, "slow-float32", batch=4),
    "dynamo": lambda: {"dynamo": dynamo_check},
}


def main(groups: list[str]) -> None:
    results: dict[str, object] = {"interpreted": conv_implicit_gemm.INTERPRETED}
    for group in groups:
        for name, check in GROUPS[group]().items():
            try:
                results[name] = check()
            except Exception:  # noqa: BLE001 — reported, asserted on by the test module
                results[name] = {"exception": traceback.format_exc()[-2000:]}
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
