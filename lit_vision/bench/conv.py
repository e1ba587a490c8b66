"""Hand-written convolution algorithms vs nn.Conv2d: forward+backward time and peak memory per layer.

    python -m lit_vision.bench conv                        # SimpleNet's layers, batch 64, 128 px
    python -m lit_vision.bench conv --layers 3x3 --repeats 3
    python -m lit_vision.bench conv --clock wall --threads 2
    python -m lit_vision.bench conv --device cuda          # GPU: implicit GEMM vs cuDNN (below)

On CUDA (`--device cuda`) the table is another one, built by `lit_vision/bench/conv_layer.py`:
every SimpleNet layer at batch 128 and 256 (`--batch-size 128,256`), in fp32 with TF32 off on
both sides and in bf16 on both sides (`--dtypes float32,bfloat16`), forward + backward,
wall-clock time (device-synchronised) of "auto" (the implicit-GEMM Triton kernels where Triton
imports) and "im2col" relative to cuDNN, and the relative error of each against the float64
convolution of the same values. Without a CUDA device it says so and exits with status 1.

Runs each of SimpleNet's convolution layers with nn.Conv2d and with `HandWrittenConv2d` under each
algorithm that fits the layer ("im2col", the reference, everywhere; "shifted" on stride-1
layers), all from the same weights, alternated call by call in the same run (warm-up first, then
`--repeats` timed calls each, median reported). The "auto" columns are the algorithm that
`algorithm="auto"` picks for the layer, i.e. what a model built with the hand-written conv runs.

Time is this thread's CPU time (`time.thread_time`) with torch on one intra-op thread, as in
`bench step`: on a shared machine the wall-clock time of a call varies from one minute to the
next with the other jobs, the CPU time it consumes much less (`--clock wall` for wall-clock
time, e.g. with `--threads 2` on an idle machine, or on a GPU, where the CPU clock means nothing).

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
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from lit_vision.bench.conditions import torch_threads
from lit_vision.bench.conv_layer import compare_layer, forward_backward, peak_bytes, public
from lit_vision.bench.timing import median_seconds
from lit_vision.ops.conv import HandWrittenConv2d, choose_algorithm

# SimpleNet: 7x7/2 stem, maxpool k3 s2 p1, three convs at 1/4 resolution, maxpool, three at 1/8.
# (name, in_channels, out_channels, kernel, stride, padding, input size as a fraction of the image)
SIMPLENET_LAYERS: list[tuple[str, int, int, int, int, int, int]] = [
    ("conv1 7x7/2", 3, 64, 7, 2, 3, 1),
    ("conv2 1x1", 64, 64, 1, 1, 0, 4),
    ("conv3 3x3", 64, 64, 3, 1, 1, 4),
    ("conv4 1x1", 64, 256, 1, 1, 0, 4),
    ("conv5 1x1", 256, 128, 1, 1, 0, 8),
    ("conv6 3x3", 128, 128, 3, 1, 1, 8),
    ("conv7 1x1", 128, 512, 1, 1, 0, 8),
]


def simplenet_layers(image_size: int = 128) -> list[dict]:
    """SimpleNet's convolution layers for `image_size`-pixel images: one dict per layer with
    name, in_channels, out_channels, kernel, stride, padding and input_hw (the layer's input
    height = width). Other benchmarks (e.g. the GPU one) import this list."""
    return [
        dict(
            name=name,
            in_channels=c_in,
            out_channels=c_out,
            kernel=kernel,
            stride=stride,
            padding=padding,
            input_hw=image_size // scale,
        )
        for name, c_in, c_out, kernel, stride, padding, scale in SIMPLENET_LAYERS
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size", default=None, help="comma-separated batch sizes (default: 64 on the CPU, 128,256 on CUDA)"
    )
    parser.add_argument(
        "--dtypes", default="float32,bfloat16", help="CUDA only: comma-separated dtypes (fp32 runs with TF32 off)"
    )
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per layer and operator")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="this thread's CPU time (default; needs --threads 1) or wall-clock time",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads during the runs")
    parser.add_argument(
        "--layers", default="", help="comma-separated substrings of layer names to run (default all)"
    )


def _median_ms(steps: dict[str, Callable[[], object]], args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Median milliseconds per call of each step, the steps alternated call by call."""
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    seconds = median_seconds(steps, device, args.warmup, args.repeats, clock)
    return {key: value * 1e3 for key, value in seconds.items()}


def _batch_sizes(args: argparse.Namespace, device: torch.device) -> list[int]:
    text = args.batch_size or ("128,256" if device.type == "cuda" else "64")
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise SystemExit(f"bench conv: --batch-size expects positive integers separated by commas, got {text!r}")
    return sizes


def _layers(args: argparse.Namespace) -> list[dict]:
    wanted = [s.strip() for s in args.layers.split(",") if s.strip()]
    return [layer for layer in simplenet_layers(args.image_size) if not wanted or any(w in layer["name"] for w in wanted)]


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "bench conv --device cuda: no CUDA device here (torch.cuda.is_available() is False), so the GPU "
            "comparison (implicit-GEMM kernels vs cuDNN) cannot run; run it on a machine with an NVIDIA GPU, or "
            "use --device cpu for the CPU algorithms"
        )
    batches = _batch_sizes(args, device)
    if device.type == "cuda":
        return _run_cuda(args, device, batches)
    with torch_threads(args.threads):
        return [row for batch in batches for row in _run(args, device, batch)]


def _run_cuda(args: argparse.Namespace, device: torch.device, batches: list[int]) -> list[dict]:
    names = [s.strip() for s in args.dtypes.split(",") if s.strip()]
    dtypes = [getattr(torch, name, None) for name in names]
    if not names or any(not isinstance(d, torch.dtype) or not d.is_floating_point for d in dtypes):
        raise SystemExit(f"bench conv: --dtypes expects torch floating-point dtype names (float32,bfloat16), got {args.dtypes!r}")
    print("  wall clock, device-synchronised; fp32 with TF32 off on both sides", flush=True)
    rows = []
    for batch in batches:
        for dtype in dtypes:
            for layer in _layers(args):
                row = compare_layer(layer, batch, dtype, device, args.warmup, args.repeats, ("auto", "im2col"))
                rows.append(public(row))
                print(f"  done {layer['name']} batch {batch} {row['dtype']}", flush=True)
    return rows


def _run(args: argparse.Namespace, device: torch.device, batch: int) -> list[dict]:
    print(f"  intra-op threads used: {torch.get_num_threads()}, clock: {args.clock}", flush=True)
    torch.manual_seed(0)
    rows = []
    for layer in _layers(args):
        c_in, c_out, size = layer["in_channels"], layer["out_channels"], layer["input_hw"]
        geometry = (c_in, c_out, layer["kernel"], layer["stride"], layer["padding"])
        ref = nn.Conv2d(*geometry).to(device)
        algorithms = ["im2col"] + (["shifted"] if layer["stride"] == 1 else [])
        ours = {}
        for algorithm in algorithms:
            ours[algorithm] = HandWrittenConv2d(*geometry, algorithm=algorithm).to(device)
            ours[algorithm].load_state_dict(ref.state_dict())
        auto = choose_algorithm("auto", ref.kernel_size, ref.stride, ref.padding, device_type=device.type)
        # The stem's input is the image, which needs no gradient in training: skip dX there
        # for every operator (nn.Conv2d skips it too).
        needs_dx = c_in != 3
        x = torch.randn(batch, c_in, size, size, device=device, requires_grad=needs_dx)
        with torch.no_grad():
            grad_y = torch.randn_like(ref(x))
        steps = {name: partial(forward_backward, m, x, grad_y) for name, m in {"torch": ref, **ours}.items()}
        ms = _median_ms(steps, args, device)
        mem_auto = peak_bytes(steps[auto], device)
        mem_ref = peak_bytes(steps["torch"], device)
        row = {
            "layer": layer["name"],
            "input": f"{batch}x{c_in}x{size}x{size}",
            "dX": "yes" if needs_dx else "no",
            "ms torch": ms["torch"],
        }
        for algorithm in ("im2col", "shifted"):
            row[f"{algorithm} / torch"] = ms[algorithm] / ms["torch"] if algorithm in ms else "-"
        row |= {
            "auto": auto,
            "auto / torch": ms[auto] / ms["torch"],
            "peak MB auto": mem_auto / 2**20,
            "peak MB torch": mem_ref / 2**20,
            "mem ratio": mem_auto / max(1, mem_ref),
        }
        rows.append(row)
        print(f"  done {layer['name']}", flush=True)
    return rows
