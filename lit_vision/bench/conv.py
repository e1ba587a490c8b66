"""Hand-written im2col convolution vs nn.Conv2d: forward+backward time and peak memory per layer.

Runs each of SimpleNet's convolution layers (batch 64, 128x128 images by default) with
`CustomConv2d` and with `nn.Conv2d` from the same weights, alternating the two in the same run
(warm-up first, then `--repeats` timed calls each, median reported), so that both see the same
machine state (turbo, other processes, cache).

Peak memory is the largest amount of memory allocated *on top of what existed before the call*
(input, weights and output gradient) during one forward+backward, i.e. it includes the output,
the tensors saved for backward, every transient buffer and the returned gradients:
  * on CUDA: `torch.cuda.max_memory_allocated()` minus the allocation at the start;
  * on CPU: the running sum of every allocation and free that torch's CPU allocator reports to
    `torch.profiler` (`profile_memory=True`), in time order. oneDNN's buffers inside nn.Conv2d
    go through the same allocator, so they are counted too. Memory that a BLAS library
    allocates privately (MKL's GEMM packing buffers, a few MB at most) is not seen for either.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lit_vision.ops.conv import CustomConv2d

# (name, in_channels, out_channels, kernel, stride, padding, input size as a fraction of the image)
# SimpleNet: 7x7/2 stem, maxpool k3 s2 p1, three convs at 1/4 resolution, maxpool, three at 1/8.
SIMPLENET_LAYERS: list[tuple[str, int, int, int, int, int, int]] = [
    ("conv1 7x7/2", 3, 64, 7, 2, 3, 1),
    ("conv2 1x1", 64, 64, 1, 1, 0, 4),
    ("conv3 3x3", 64, 64, 3, 1, 1, 4),
    ("conv4 1x1", 64, 256, 1, 1, 0, 4),
    ("conv5 1x1", 256, 128, 1, 1, 0, 8),
    ("conv6 3x3", 128, 128, 3, 1, 1, 8),
    ("conv7 1x1", 128, 512, 1, 1, 0, 8),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per layer and operator")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (default: leave as is)"
    )
    parser.add_argument(
        "--layers", default="", help="comma-separated substrings of layer names to run (default all)"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(module: nn.Module, x: Tensor, grad_y: Tensor) -> Callable[[], list[Tensor]]:
    """One forward + backward; returns the gradients (kept alive, as a training step would)."""
    inputs = [p for p in module.parameters()] + ([x] if x.requires_grad else [])

    def run() -> list[Tensor]:
        y = module(x)
        return list(torch.autograd.grad(y, inputs, grad_y))

    return run


def _peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated during fn() above the allocation at its start (see module doc)."""
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


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"  intra-op threads used: {torch.get_num_threads()}", flush=True)
    torch.manual_seed(0)
    wanted = [s.strip() for s in args.layers.split(",") if s.strip()]
    rows = []
    for name, c_in, c_out, kernel, stride, padding, scale in SIMPLENET_LAYERS:
        if wanted and not any(w in name for w in wanted):
            continue
        size = args.image_size // scale
        ours = CustomConv2d(c_in, c_out, kernel, stride, padding).to(device)
        ref = nn.Conv2d(c_in, c_out, kernel, stride, padding).to(device)
        ref.load_state_dict(ours.state_dict())
        # The stem's input is the image, which needs no gradient in training: skip dX there
        # for both operators (nn.Conv2d skips it too).
        needs_dx = c_in != 3
        x = torch.randn(args.batch_size, c_in, size, size, device=device, requires_grad=needs_dx)
        with torch.no_grad():
            grad_y = torch.randn_like(ref(x))
        step_ours, step_ref = _step(ours, x, grad_y), _step(ref, x, grad_y)

        for _ in range(args.warmup):
            step_ours()
            step_ref()
        times: dict[str, list[float]] = {"ours": [], "torch": []}
        for _ in range(args.repeats):
            for key, step in (("ours", step_ours), ("torch", step_ref)):
                _sync(device)
                start = time.perf_counter()
                step()
                _sync(device)
                times[key].append(time.perf_counter() - start)
        mem_ours = _peak_bytes(step_ours, device)
        mem_ref = _peak_bytes(step_ref, device)
        ms_ours = statistics.median(times["ours"]) * 1e3
        ms_ref = statistics.median(times["torch"]) * 1e3
        rows.append(
            {
                "layer": name,
                "input": f"{args.batch_size}x{c_in}x{size}x{size}",
                "dX": "yes" if needs_dx else "no",
                "ms ours": ms_ours,
                "ms torch": ms_ref,
                "time ratio": ms_ours / ms_ref,
                "peak MB ours": mem_ours / 2**20,
                "peak MB torch": mem_ref / 2**20,
                "mem ratio": mem_ours / max(1, mem_ref),
            }
        )
        print(f"  done {name}", flush=True)
    return rows
