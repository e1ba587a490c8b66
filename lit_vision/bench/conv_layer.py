"""One convolution layer, hand-written vs torch's (cuDNN on a GPU): time and error of forward +
backward, in fp32 (TF32 off on both sides) or bf16 (both sides in bf16).

Used by `python -m lit_vision.bench conv --device cuda` (every SimpleNet layer, batch 128 and
256, both dtypes) and by the "ops" section of `bench gpu`. Errors are measured against the
float64 convolution (torch's) of the very same values, for ours and for torch's alike, so a
bf16 row says whether ours is as accurate as cuDNN rather than how far the two bf16 results
are from each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lit_vision.bench.timing import median_seconds, one_call_seconds
from lit_vision.ops.conv import HandWrittenConv2d, choose_algorithm


@contextlib.contextmanager
def full_fp32():
    """cuDNN convolutions default to TF32 on Ampere and later while matmuls do not: compare
    like with like (both full fp32), or the reference gets a 10-bit-mantissa speed-up."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated during fn() above the allocation at its start (see the docstring of
    `lit_vision.bench.conv` for what is counted on the CPU and on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del result
        return peak
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
        del result
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def forward_backward(module: nn.Module, x: Tensor, grad_y: Tensor) -> list[Tensor]:
    """[output, parameter gradients..., (input gradient)]: one training-style call."""
    y = module(x)
    inputs = list(module.parameters()) + ([x] if x.requires_grad else [])
    return [y.detach(), *torch.autograd.grad(y, inputs, grad_y)]


def relative_error(ours: list[Tensor], truth: list[Tensor]) -> float:
    """Largest ||ours - truth|| / ||truth|| over the tensors (output and every gradient)."""
    return max(((a.double() - b).norm() / b.norm().clamp_min(1e-300)).item() for a, b in zip(ours, truth))


def compare_layer(
    layer: dict,
    batch: int,
    dtype: torch.dtype,
    device: torch.device,
    warmup: int,
    repeats: int,
    algorithms: tuple[str, ...] = ("auto",),
) -> dict:
    """Time and error of each algorithm of `HandWrittenConv2d` and of nn.Conv2d on one SimpleNet
    layer (a dict from `lit_vision.bench.conv.simplenet_layers`), same weights and inputs.

    The stem's input is the image, which needs no gradient in training: dX is skipped there for
    every operator (nn.Conv2d skips it too). The first call of each operator is timed apart
    ("first call s": Triton's autotuning and compilation for the implicit-GEMM kernels)."""
    c_in, c_out, size = layer["in_channels"], layer["out_channels"], layer["input_hw"]
    geometry = (c_in, c_out, layer["kernel"], layer["stride"], layer["padding"])
    torch.manual_seed(0)
    reference = nn.Conv2d(*geometry).to(device, dtype)
    resolved = [choose_algorithm(a, reference.kernel_size, reference.stride, reference.padding, dtype, device.type)
                for a in algorithms]  # fmt: skip
    ours = {}
    for name in dict.fromkeys(resolved):
        ours[name] = HandWrittenConv2d(*geometry, algorithm=name).to(device, dtype)
        ours[name].load_state_dict(reference.state_dict())
    x = torch.randn(batch, c_in, size, size, device=device, dtype=dtype, requires_grad=c_in != 3)
    with torch.no_grad():
        grad_y = torch.randn_like(reference(x))
    calls = {"torch": lambda: forward_backward(reference, x, grad_y)}
    calls |= {name: (lambda m=m: forward_backward(m, x, grad_y)) for name, m in ours.items()}
    with full_fp32() if dtype == torch.float32 else contextlib.nullcontext():
        first = {name: one_call_seconds(call, device) for name, call in calls.items()}
        seconds = median_seconds(calls, device, warmup, repeats)
        results = {name: call() for name, call in calls.items()}
        exact = nn.Conv2d(*geometry).to(device, torch.float64)
        exact.load_state_dict(reference.state_dict())
        x64 = x.detach().double().requires_grad_(x.requires_grad)
        truth = forward_backward(exact, x64, grad_y.double())
    row = {
        "layer": layer["name"],
        "input": f"{batch}x{c_in}x{size}x{size}",
        "dtype": str(dtype).removeprefix("torch."),
        "dX": "yes" if x.requires_grad else "no",
        "ms torch": seconds["torch"] * 1e3,
    }
    for algorithm, name in zip(algorithms, resolved):
        label = f"{algorithm}={name}" if algorithm == "auto" else name
        row[f"{label} / torch"] = seconds[name] / seconds["torch"]
    row["rel err torch"] = relative_error(results["torch"], truth)
    for name in ours:
        row[f"rel err {name}"] = relative_error(results[name], truth)
    row["first call s"] = max(first[name] for name in ours)
    with full_fp32() if dtype == torch.float32 else contextlib.nullcontext():
        row["peak MB auto"] = peak_bytes(calls[resolved[0]], device) / 2**20
        row["peak MB torch"] = peak_bytes(calls["torch"], device) / 2**20
    row["_seconds"], row["_results"] = seconds, results  # for callers; dropped before printing
    return row


def public(row: dict) -> dict:
    """The row without the callers-only entries."""
    return {key: value for key, value in row.items() if not key.startswith("_")}


__all__ = ["compare_layer", "forward_backward", "full_fp32", "peak_bytes", "public", "relative_error"]
