"""The implicit-GEMM convolution: launches the Triton kernels of `conv_implicit_gemm_kernels.py`
and wraps them in torch.library custom ops with their autograd (forward, input gradient, weight
gradient, bias gradient).

Unlike im2col, no unfolded matrix is ever written: each kernel gathers the tile of the im2col
matrix it needs straight from the image into on-chip memory (see the kernels' docstring). The
output and the input gradient are allocated channels-last (NHWC), the layout whose channel axis,
the fastest index of a K tile, is contiguous; the kernels read any layout through its strides.

Where it runs: on CUDA tensors, or on CPU tensors when Triton's interpreter is on, i.e. when
`TRITON_INTERPRET=1` was set *before this module was imported* (the `@triton.jit` decorator
decides at import time whether a kernel is compiled or interpreted). The interpreter runs the
kernels through numpy, one program at a time: it is how the CPU tests check exactness, and it is
far too slow for training, so `algorithm="auto"` never picks this algorithm on the CPU.

On a GPU the tile sizes are autotuned per layer shape (`triton.autotune`, keyed by the GEMM's
sizes with its row count bucketed to a power of two) from a few configurations sized for
H100/H200-class GPUs, all with 4 warps (see the kernels' docstring for why not 8), less those
that spill registers for the launch's precision (`fits_registers`; the compiler's report for
sm_90 comes from `conv_implicit_gemm_ptxas.py`, without a GPU). The convolution is a pair of
torch.library custom ops (forward, backward), so `torch.compile` keeps each layer as one node
of its graph. The weight gradient is split along N·Ho·Wo into fp32 partial
sums (enough splits to give the GPU about two programs per streaming multiprocessor), which one
torch `sum` over the split axis adds in a fixed order: no atomics, the same bits on every run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import triton
from torch import Tensor

from lit_vision.errors import LitVisionError
import lit_vision.ops.conv_implicit_gemm_kernels as kernels
from lit_vision.ops.conv_geometry import IntPair, output_hw

# The decorator looked at TRITON_INTERPRET when the kernels' module was imported; what it chose
# is what runs, whatever the environment says now.
INTERPRETED: bool = not isinstance(kernels.conv_forward_kernel, triton.runtime.JITFunction)

# (BLOCK_M, BLOCK_N, BLOCK_K, num_stages), all at 4 warps: six of the 16 points of {64, 128}² x
# {32, 64} x {3, 4}, because autotuning compiles every configuration of every kernel once per
# specialisation (dtype, K order, which sizes are 1 or multiples of 16) before timing it. Not
# every one is tried for every launch: see `fits_registers`.
GPU_CONFIGS = [
    (128, 128, 32, 3),
    (128, 64, 32, 4),
    (64, 128, 32, 4),
    (128, 64, 64, 3),
    (64, 64, 64, 4),
    (64, 64, 32, 4),
]
# The tiles that IEEE fp32 products compile without spilling (below). The smallest tile
# compiles without spilling for every kernel, precision and K order: the pruner's fallback.
IEEE_TILES = {(64, 128, 32), (64, 64, 32)}
SMALLEST_TILE = (64, 64, 32)
# Under the interpreter: one small configuration (no autotuning, which would time numpy); small
# enough that tiny test shapes still span several tiles and mask their last one.
INTERPRETER_BLOCKS = {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16}
# Weight gradient: positions per split are a multiple of the largest BLOCK_K.
SPLIT_MULTIPLE = 64


def fits_registers(tile: tuple[int, int, int], ieee: bool, fp64: bool, channel_blocks: bool) -> bool:
    """Whether a tile (BLOCK_M, BLOCK_N, BLOCK_K) compiles for sm_90 at 4 warps without spilling
    registers, as ptxas reported for every kernel on SimpleNet's layers (batch 64, 128 px;
    `python -m lit_vision.ops.conv_implicit_gemm_ptxas`, checked by a test):

    * 16-bit operands (`wgmma`, operand tiles in shared memory): every tile, except in the flat
      K order a [BLOCK_M, BLOCK_K] gather wider than 4096 elements (128x64x64 spilled 124 bytes
      on the stem), whose index arithmetic lives in registers;
    * IEEE fp32 (FMA loops on the CUDA cores, operand fragments in registers beside the fp32
      accumulator): only 64x128x32 and 64x64x32, and in the flat K order 64x64x32 alone — the
      128-row tiles spilled 4-232 bytes, 64x64x64 12 on a 1x1 layer, 64x128x32 12 on the stem's
      weight gradient;
    * fp64 (twice the registers per element; not a speed path, "auto" never picks it): the
      smallest tile, not checked by the compiler report.
    """
    if fp64:
        return tile == SMALLEST_TILE
    if ieee:
        return tile in IEEE_TILES and (channel_blocks or tile == SMALLEST_TILE)
    block_m, _, block_k = tile
    return channel_blocks or block_m * block_k <= 4096


def tile_pruner(rows: str | None, cols: str, blocked_cols: str | None = None) -> Callable[..., list]:
    """An `early_config_prune` for the autotuner. First the tiles that would spill registers
    for this launch's precision and K order (`fits_registers`); then those more than twice as
    tall (wide) as the GEMM's row (column) count rounded up to a power of two, floor 64, e.g.
    BLOCK_N 128 on a 64-channel layer: half its tile would be masked work, and each dropped
    configuration is one compilation less per kernel and layer shape. `rows`/`cols` name the
    kernel argument holding the size; `blocked_cols` the one that replaces `cols` when the
    kernel runs with CHANNEL_BLOCKS (a K tile is then a block of channels)."""

    def fits(size: int, block: int) -> bool:
        return block <= max(64, triton.next_power_of_2(int(size)))

    def tile(config) -> tuple[int, int, int]:
        return config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], config.kwargs["BLOCK_K"]

    def prune(configs: list, named_args: dict, **kwargs: Any) -> list:
        blocks = bool(kwargs.get("CHANNEL_BLOCKS"))
        precision = {"ieee": bool(kwargs.get("IEEE")), "fp64": bool(kwargs.get("ACC_FP64"))}
        compilable = [config for config in configs if fits_registers(tile(config), channel_blocks=blocks, **precision)]
        col_name = blocked_cols if blocked_cols and blocks else cols
        kept = [
            config
            for config in compilable
            if fits(named_args[col_name], config.kwargs["BLOCK_N"])
            and (rows is None or fits(named_args[rows], config.kwargs["BLOCK_M"]))
        ]
        return kept or [config for config in compilable if tile(config) == SMALLEST_TILE]

    return prune


def _tuned(kernel: Any, key: list[str], pruner: Callable[..., list]) -> Any:
    if INTERPRETED:
        return kernel
    configs = [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=4, num_stages=stages)
        for m, n, k, stages in GPU_CONFIGS
    ]
    return triton.autotune(configs=configs, key=key, prune_configs_by={"early_config_prune": pruner})(kernel)


# Keys: the GEMM's sizes, its row count bucketed (ROWS_BUCKET, see rows_bucket), and the K order.
_forward = _tuned(
    kernels.conv_forward_kernel, ["ROWS_BUCKET", "COG", "K", "CIG", "HAS_BIAS", "CHANNEL_BLOCKS"], tile_pruner(None, "COG")
)
_input_grad = _tuned(
    kernels.conv_input_grad_kernel, ["ROWS_BUCKET", "CIG", "K", "COG", "CHANNEL_BLOCKS"], tile_pruner(None, "CIG")
)
_weight_grad = _tuned(
    kernels.conv_weight_grad_kernel, ["ROWS_BUCKET", "COG", "K", "SPLITS", "CHANNEL_BLOCKS"], tile_pruner("COG", "K", "CIG")
)


def rows_bucket(rows: int) -> int:
    """The autotuner's stand-in for a GEMM's row count: the next power of two. Keyed on the exact
    count, every new batch size (the last, partial validation batch; PGD's sub-batches) would
    time every configuration again, with a synchronisation per timing; within a bucket the tile
    that won for one count is within a factor of two of the rows it was tuned on."""
    return triton.next_power_of_2(max(1, int(rows)))


def _blocks() -> dict[str, int]:
    """Explicit tile sizes under the interpreter; on a GPU the autotuner supplies them."""
    return dict(INTERPRETER_BLOCKS) if INTERPRETED else {}


def check_device(*tensors: Tensor | None) -> None:
    """CUDA tensors, or CPU tensors under the interpreter; anything else is refused by name."""
    for tensor in tensors:
        if tensor is None or tensor.device.type == "cuda":
            continue
        if tensor.device.type == "cpu" and INTERPRETED:
            continue
        raise LitVisionError(
            f"convolution algorithm 'implicit_gemm' runs Triton kernels on a CUDA device; got a tensor on "
            f"{tensor.device}. On the CPU it runs only under Triton's interpreter (TRITON_INTERPRET=1 set before "
            "lit_vision is imported, for tests: it is far too slow to train); use algorithm 'auto', 'im2col' or "
            "'shifted' there"
        )


def _precision_flags(dtype: torch.dtype) -> dict[str, bool]:
    if dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        raise LitVisionError(f"convolution algorithm 'implicit_gemm' needs a floating-point input, got {dtype}")
    return {
        "ACC_FP64": dtype == torch.float64,
        "IEEE": dtype in (torch.float32, torch.float64),  # not TF32: see the kernels' docstring
        "UPCAST": INTERPRETED and dtype == torch.bfloat16,  # bf16 tl.dot is wrong in the interpreter
    }


def channel_blocks(channels: int) -> bool:
    """Whether a kernel's K loop runs over (kernel offset, block of channels) rather than one
    flat (kh, kw, channel) index: when the reduced channels come in multiples of 16 (see the
    kernels' docstring)."""
    return channels % 16 == 0


def _weight_views(weight: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """W_f [G, kh*kw*Ci/G, Co/G] for the forward, W_t [G, kh*kw*Co/G, Ci/G] for the input gradient:
    small copies of the weight with K ordered (kh, kw, channel) like the gathered tiles."""
    co, cig, kh, kw = weight.shape
    w5 = weight.view(groups, co // groups, cig, kh, kw)
    w_f = w5.permute(0, 3, 4, 2, 1).reshape(groups, kh * kw * cig, co // groups)
    w_t = w5.permute(0, 3, 4, 1, 2).reshape(groups, kh * kw * (co // groups), cig)
    return w_f, w_t


def _geometry_args(stride: IntPair, padding: IntPair, dilation: IntPair) -> tuple[int, ...]:
    return (*stride, padding[0], padding[1], *dilation)


def _weight_grad_splits(positions: int, tiles: int, device: torch.device) -> tuple[int, int]:
    """(splits, positions per split) for the weight gradient: about two programs per SM."""
    if INTERPRETED:
        target, multiple = 4, INTERPRETER_BLOCKS["BLOCK_K"]
    else:
        target, multiple = 2 * _multiprocessors(device), SPLIT_MULTIPLE
    wanted = max(1, triton.cdiv(target, max(1, tiles)))
    per_split = triton.cdiv(triton.cdiv(positions, wanted), multiple) * multiple
    return triton.cdiv(positions, per_split), per_split


def _multiprocessors(device: torch.device) -> int:
    """The device's SM count; for CPU tensors outside the interpreter (launches recorded, not run,
    to compile the kernels for a GPU: conv_implicit_gemm_ptxas.py), an H100's or H200's 132."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132


def _launch_forward(x: Tensor, weight: Tensor, bias: Tensor | None, geometry: tuple, ho: int, wo: int) -> Tensor:
    stride, padding, dilation, groups = geometry
    n, _, h, w = x.shape
    co, cig, kh, kw = weight.shape
    cog = co // groups
    y = torch.empty((n, co, ho, wo), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    if y.numel() == 0:
        return y
    w_f, _ = _weight_views(weight, groups)
    m, k = n * ho * wo, kh * kw * cig

    def grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(cog, meta["BLOCK_N"]), groups)

    _forward[grid](
        x, w_f, bias if bias is not None else w_f, y,
        m, h, w, ho, wo, cig, cog, kw, k,
        *x.stride(), *w_f.stride(), *y.stride(),
        *_geometry_args(stride, padding, dilation), rows_bucket(m),
        HAS_BIAS=bias is not None, CHANNEL_BLOCKS=channel_blocks(cig), **_precision_flags(x.dtype), **_blocks(),
    )  # fmt: skip
    return y


def _launch_input_grad(dy: Tensor, weight: Tensor, x_shape: torch.Size, geometry: tuple) -> Tensor:
    stride, padding, dilation, groups = geometry
    n, ci, h, w = x_shape
    co, cig, kh, kw = weight.shape
    cog = co // groups
    _, ho, wo = dy.shape[1:]
    dx = torch.empty((n, ci, h, w), device=dy.device, dtype=dy.dtype, memory_format=torch.channels_last)
    if dx.numel() == 0:
        return dx
    _, w_t = _weight_views(weight, groups)
    m, k = n * h * w, kh * kw * cog

    def grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(cig, meta["BLOCK_N"]), groups)

    _input_grad[grid](
        dy, w_t, dx,
        m, h, w, ho, wo, cig, cog, kw, k,
        *dy.stride(), *w_t.stride(), *dx.stride(),
        *_geometry_args(stride, padding, dilation), rows_bucket(m),
        CHANNEL_BLOCKS=channel_blocks(cog), **_precision_flags(dy.dtype), **_blocks(),
    )  # fmt: skip
    return dx


def _launch_weight_grad(dy: Tensor, x: Tensor, weight_shape: torch.Size, geometry: tuple) -> Tensor:
    stride, padding, dilation, groups = geometry
    n, _, h, w = x.shape
    co, cig, kh, kw = weight_shape
    cog = co // groups
    ho, wo = dy.shape[2:]
    positions, k = n * ho * wo, kh * kw * cig
    accumulate = torch.float64 if x.dtype == torch.float64 else torch.float32
    if positions == 0:
        return torch.zeros(weight_shape, device=x.device, dtype=x.dtype)
    tiles = triton.cdiv(cog, 64) * triton.cdiv(k, 64) * groups
    splits, per_split = _weight_grad_splits(positions, tiles, x.device)
    partial = torch.empty((groups, splits, cog, k), device=x.device, dtype=accumulate)

    blocks = channel_blocks(cig)

    def grid(meta: dict) -> tuple[int, int, int]:
        k_tiles = kh * kw * triton.cdiv(cig, meta["BLOCK_N"]) if blocks else triton.cdiv(k, meta["BLOCK_N"])
        return (triton.cdiv(cog, meta["BLOCK_M"]), k_tiles, groups * splits)

    _weight_grad[grid](
        dy, x, partial,
        positions, h, w, ho, wo, cig, cog, kw, k, per_split, splits,
        *dy.stride(), *x.stride(),
        *_geometry_args(stride, padding, dilation), rows_bucket(positions),
        CHANNEL_BLOCKS=blocks, **_precision_flags(x.dtype), **_blocks(),
    )  # fmt: skip
    # The deterministic reduction: a plain sum over the split axis (torch's reductions use no
    # atomics), then K's (kh, kw, ci) order back to the weight's (ci, kh, kw).
    # Contiguous, as the custom op's fake kernel declares it: the permuted view's strides would
    # differ from the declared ones, which a compiled graph relies on.
    grad = partial.sum(dim=1).view(groups, cog, kh, kw, cig).permute(0, 1, 4, 2, 3)
    return grad.reshape(weight_shape).to(x.dtype, memory_format=torch.contiguous_format)


def _on_device(tensor: Tensor):
    """Triton launches on the current CUDA device: make it the tensor's (a no-op on the CPU)."""
    return torch.cuda.device(tensor.device) if tensor.device.type == "cuda" else contextlib.nullcontext()


def forward_impl(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: IntPair, dilation: IntPair, groups: int
) -> Tensor:
    """The convolution's output (channels-last), by the forward kernel."""
    check_device(x, weight, bias)
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tensor.dtype != x.dtype:
            # One dtype per product: the kernels' tl.dot takes operands of a single dtype.
            raise TypeError(f"input dtype {x.dtype} differs from {name} dtype {tensor.dtype}")
    ho, wo = output_hw(x, weight, stride, padding, dilation, groups)
    if weight.shape[0] % groups:
        raise ValueError(f"out_channels {weight.shape[0]} is not divisible by groups {groups}")
    # Channels-last: a no-op for the outputs of earlier implicit-GEMM layers (they are NHWC).
    x = x.contiguous(memory_format=torch.channels_last)
    bias = None if bias is None else bias.contiguous()  # the kernel reads it as a flat vector
    with _on_device(x):
        return _launch_forward(x, weight.contiguous(), bias, (stride, padding, dilation, groups), ho, wo)


def backward_impl(
    grad_y: Tensor, x: Tensor, weight: Tensor, stride: IntPair, padding: IntPair, dilation: IntPair, groups: int,
    need_x: bool, need_w: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """(input gradient, weight gradient) by their kernels, each only if needed."""
    dy = grad_y.contiguous(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    weight = weight.contiguous()
    geometry = (stride, padding, dilation, groups)
    with _on_device(dy):
        grad_x = _launch_input_grad(dy, weight, x.shape, geometry) if need_x else None
        grad_w = _launch_weight_grad(dy, x, weight.shape, geometry) if need_w else None
    return grad_x, grad_w


# The convolution as two torch.library custom ops, forward and backward, joined by
# `register_autograd`: `torch.compile` sees each as one opaque node with a declared output
# shape (`register_fake`), where an autograd.Function around Triton launches would be traced
# into (its Python, the autotuner's, the launches) and the graph broken wherever that fails.
# The ops return no views of their inputs, as custom ops must.
@torch.library.custom_op("lit_vision::implicit_gemm_conv2d", mutates_args=())
def _conv_op(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int], dilation: list[int], groups: int
) -> Tensor:
    return forward_impl(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups)


@_conv_op.register_fake
def _conv_op_fake(x, weight, bias, stride, padding, dilation, groups):
    ho, wo = output_hw(x, weight, tuple(stride), tuple(padding), tuple(dilation), groups)
    return x.new_empty((x.shape[0], weight.shape[0], ho, wo)).contiguous(memory_format=torch.channels_last)


@torch.library.custom_op("lit_vision::implicit_gemm_conv2d_backward", mutates_args=())
def _conv_backward_op(
    grad_y: Tensor, x: Tensor, weight: Tensor, stride: list[int], padding: list[int], dilation: list[int], groups: int,
    need_x: bool, need_w: bool,
) -> tuple[Tensor, Tensor]:
    grad_x, grad_w = backward_impl(
        grad_y, x, weight, tuple(stride), tuple(padding), tuple(dilation), groups, need_x, need_w
    )
    # A custom op returns tensors, never None: an empty tensor stands for "not needed".
    return (x.new_empty(0) if grad_x is None else grad_x), (weight.new_empty(0) if grad_w is None else grad_w)


@_conv_backward_op.register_fake
def _conv_backward_op_fake(grad_y, x, weight, stride, padding, dilation, groups, need_x, need_w):
    grad_x = x.new_empty(x.shape).contiguous(memory_format=torch.channels_last) if need_x else x.new_empty(0)
    return grad_x, (weight.new_empty(weight.shape) if need_w else weight.new_empty(0))


def _setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    x, weight, bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.geometry = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None


def _backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
    x, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    grad_x, grad_w = _conv_backward_op(grad_y, x, weight, *ctx.geometry, need_x, need_w)
    grad_b = grad_y.sum(dim=(0, 2, 3)) if (need_b and ctx.has_bias) else None
    return (grad_x if need_x else None), (grad_w if need_w else None), grad_b, None, None, None, None


_conv_op.register_autograd(_backward, setup_context=_setup_context)


class ImplicitGemmConv2dFunction:
    """The implicit-GEMM convolution with its gradients, behind the autograd-Function call
    convention (`apply(x, weight, bias, stride, padding, dilation, groups)`) that
    `lit_vision.ops.conv` uses for every algorithm; it calls the custom op above."""

    @staticmethod
    def apply(
        x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: IntPair, dilation: IntPair, groups: int
    ) -> Tensor:
        return _conv_op(x, weight, bias, list(stride), list(padding), list(dilation), groups)
