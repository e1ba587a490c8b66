"""Hand-written 2-D convolution: unfold (im2col) -> matrix multiply -> fold, forward and backward.

`CustomConv2d` is a drop-in replacement for `nn.Conv2d`; `Im2ColConv2dFunction` is the
`torch.autograd.Function` that does the work. No torch convolution function is called anywhere in
here: the only tools are an unfold (im2col), GEMMs (`torch.mm`/`addmm`/`bmm`) and a fold (col2im).

Notation (as in the course): X [N, Ci, H, W] is unfolded to X_u [N, Ci*kh*kw, L] with L = Ho*Wo,
W [Co, Ci/G, kh, kw] is viewed as W_u [G, Co/G, Ci/G*kh*kw], and

    forward     Y_u  = W_u  x X_u                   (a view of Y [N, Co, Ho, Wo], no copy)
    backward    dW_u = dY_u x X_uᵀ   (summed over the batch)
                dX_u = W_uᵀ x dY_u,  dX = fold(dX_u)
                dB   = sum of dY over batch and positions

Why it is written the way it is (measured on the 2-core CPU this project is developed on; see
`python -m lit_vision.bench conv`):

* The unfold is done as one strided *view* of the (padded) input plus one `copy_` into a buffer,
  instead of `F.unfold`. Both produce exactly the same X_u; `F.unfold` runs a single-threaded
  scalar im2col loop and allocates a fresh buffer every call, which measured ~12x slower than the
  vectorised, multi-threaded copy (41 ms vs 3.4 ms for a 3x3 64-channel layer at batch 64).
  The fold is likewise written as kh*kw strided in-place adds (exactly what `F.fold`/col2im
  computes) because col2im is also a single-threaded loop.
* X_u is never stored for the whole batch. It is kh*kw times the size of the input (151 MB for a
  3x3 64-channel layer at batch 64 and 32x32), so saving it for backward, or even materialising
  it at once, would cost several times `nn.Conv2d`'s peak memory. Instead the batch is processed
  in small chunks through one reused buffer (which also stays in the CPU's cache between the
  unfold and the GEMM), the input is saved for backward and X_u is recomputed there: the unfold
  is a cheap copy next to the GEMMs.
* The GEMMs are done per sample: each is already large (e.g. 64x576 @ 576x1024) and writes
  straight into the NCHW output, whereas one batch-wide GEMM would need the unfolded input and
  the output in a [C, N*L] layout and hence two extra permuting copies.
* 1x1 convolutions with no padding skip the unfold altogether: X viewed as [N, Ci, H*W] already
  *is* X_u (a stride is a slice of the input), so they are pure matmuls.

Measured and not adopted (1 thread, batch 64, SimpleNet's 3x3 layers, alternated with nn.Conv2d
in one run on a busy shared machine):

* A channels-last im2col (X_u [N*L, kh*kw*Ci] copied from a padded NHWC buffer with Ci innermost,
  Y = X_u x W_uᵀ written straight into a channels-last output, dW = dYᵀ x X_u, dX_u = dY x W_u
  folded by clipped strided adds into an NHWC gradient). Its copies are no cheaper in total (the
  NCHW->NHWC conversion of X and of dY is an extra pass each), and MKL's GEMM with the narrow
  Co-wide output is no faster than the [Co, K] x [K, n*L] one. Side by side: 1.9-2.1x nn.Conv2d
  (MKL) on the 64-channel layer vs 1.7-1.9x for this design, 1.36-1.59x vs 1.35-1.56x on the
  128-channel one, and 1.30x vs 1.19x on the 7x7 stem (Ci = 3 innermost makes the copy scalar).
  With channels-last input and dY it was still 1.75x / 1.37x (nn.Conv2d itself gets ~10% faster).
* oneDNN's fp32 matmul (the private `torch.ops.mkldnn._linear_pointwise`) instead of MKL for the
  channels-last GEMMs: 10-20% faster GEMMs in isolation, but it has no `out=`/accumulate form
  (extra output copies and allocations), so the whole layer gained only ~5%.
* Smaller chunks (1-7 samples, to keep X_u in cache): no measurable difference.

What limits the remaining gap: the three GEMMs alone (fwd, dW, dX) take about as long as
nn.Conv2d's whole forward+backward (oneDNN's direct convolution runs at the GEMM's speed on this
CPU), so every copy around them (two unfolds, the fold, the NCHW permutes) is pure overhead; on
the 64-channel layer those copies are ~0.3-0.5x nn.Conv2d's time, more when memory bandwidth is
shared with other jobs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

IntPair = tuple[int, int]

# Upper bound on the bytes of one chunk of the unfolded input (and of its gradient). Small enough
# that chunk + GEMM operands stay in the 32 MB L3 cache and peak memory stays close to
# nn.Conv2d's; large enough that per-chunk Python overhead is negligible.
CHUNK_BYTES = 16 * 2**20


def _pair(value: int | tuple[int, ...], name: str) -> IntPair:
    """Normalise an int-or-pair argument the way nn.Conv2d does."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value}")
    return value  # type: ignore[return-value]


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class _Unfolder:
    """im2col / col2im for one convolution geometry, through buffers reused across chunks.

    The unfolded chunk is laid out as X_u [Ci*kh*kw, n*L] ("batch inside the columns") rather
    than the per-sample [n, Ci*kh*kw, L] that F.unfold returns: the same numbers, but then the
    forward GEMM, dW_u and dX_u are each a single large matrix product per chunk instead of n
    small ones (fewer, larger BLAS calls: faster, and far less sensitive to a busy machine).
    """

    def __init__(
        self,
        shape: torch.Size,
        kernel: IntPair,
        stride: IntPair,
        padding: IntPair,
        dilation: IntPair,
        out_hw: IntPair,
        chunk: int,
        like: Tensor,
    ) -> None:
        _, self.channels, self.height, self.width = shape
        self.kernel, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        self.out_hw = out_hw
        self.padded_hw = (self.height + 2 * padding[0], self.width + 2 * padding[1])
        self.like = like
        self.chunk = chunk
        # Separate padded buffers for the input and for dX: the fold leaves sums in the border,
        # the unfold relies on a border that stays zero.
        self._pad_buffer: Tensor | None = None
        self._grad_pad_buffer: Tensor | None = None
        self._cols: Tensor | None = None

    def _padded(self, x: Tensor) -> Tensor:
        """Zero-padded copy of a chunk (through a buffer whose border is zeroed only once)."""
        ph, pw = self.padding
        if ph == 0 and pw == 0:
            return x
        n = x.shape[0]
        if self._pad_buffer is None:
            self._pad_buffer = self.like.new_zeros((self.chunk, self.channels, *self.padded_hw))
        buffer = self._pad_buffer[:n]
        buffer[:, :, ph : ph + self.height, pw : pw + self.width].copy_(x)
        return buffer

    def _windows(self, padded: Tensor) -> Tensor:
        """Strided view [n, Ci, kh, kw, Ho, Wo] of every receptive field (no copy)."""
        sn, sc, sh, sw = padded.stride()
        return padded.as_strided(
            (padded.shape[0], self.channels, *self.kernel, *self.out_hw),
            (
                sn,
                sc,
                sh * self.dilation[0],
                sw * self.dilation[1],
                sh * self.stride[0],
                sw * self.stride[1],
            ),
            padded.storage_offset(),
        )

    def _as_cols6(self, cols: Tensor, n: int) -> Tensor:
        """[Ci*kh*kw, n*L] buffer seen as [n, Ci, kh, kw, Ho, Wo] (a permuted view)."""
        return cols.view(self.channels, *self.kernel, n, *self.out_hw).permute(3, 0, 1, 2, 4, 5)

    def unfold(self, x: Tensor) -> Tensor:
        """X_u [Ci*kh*kw, n*L] of the chunk x [n, Ci, H, W]: one strided copy."""
        n = x.shape[0]
        if self._cols is None:
            self._cols = self.like.new_empty((self.chunk * self._cols_per_sample(),))
        cols = self._cols[: n * self._cols_per_sample()].view(-1, n * self.out_hw[0] * self.out_hw[1])
        self._as_cols6(cols, n).copy_(self._windows(self._padded(x)))
        return cols

    def _cols_per_sample(self) -> int:
        return self.channels * self.kernel[0] * self.kernel[1] * self.out_hw[0] * self.out_hw[1]

    def fold_into(self, cols: Tensor, out: Tensor) -> None:
        """out [n, Ci, H, W] = col2im(cols [Ci*kh*kw, n*L]): sum every column back to its pixel."""
        n = out.shape[0]
        ph, pw = self.padding
        padded = out if ph == 0 and pw == 0 else None
        if padded is None:
            if self._grad_pad_buffer is None:
                self._grad_pad_buffer = self.like.new_empty((self.chunk, self.channels, *self.padded_hw))
            padded = self._grad_pad_buffer[:n]
        # Pixels that no window touches (stride > 1 leftovers) must come out as zero.
        padded.zero_()
        cols6 = self._as_cols6(cols, n)
        windows = self._windows(padded)
        # Overlapping windows alias each other, so one in-place add over the whole view would be
        # wrong; one add per kernel offset touches every pixel at most once.
        for i in range(self.kernel[0]):
            for j in range(self.kernel[1]):
                windows[:, :, i, j].add_(cols6[:, :, i, j])
        if padded is not out:
            out.copy_(padded[:, :, ph : ph + self.height, pw : pw + self.width])


class Im2ColConv2dFunction(torch.autograd.Function):
    """Convolution as unfold + GEMM with a hand-written backward (see the module docstring)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: IntPair,
        padding: IntPair,
        dilation: IntPair,
        groups: int,
    ) -> Tensor:
        n, ci, h, w = x.shape
        co, cig, kh, kw = weight.shape
        if ci != cig * groups:
            raise ValueError(f"input has {ci} channels, weight expects {cig * groups} ({groups} groups)")
        ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
        wo = _out_size(w, kw, stride[1], padding[1], dilation[1])
        if ho <= 0 or wo <= 0:
            raise ValueError(f"input {h}x{w} is too small for kernel {kh}x{kw} with this padding")
        x = x.contiguous()
        cog, length = co // groups, ho * wo
        # W_u [G, Co/G, Ci/G*kh*kw]: a view, the weight is contiguous in exactly this order.
        w_u = weight.contiguous().view(groups, cog, cig * kh * kw)
        # Allocated in its final shape and returned as is: returning a view of it would forbid
        # in-place ops on the output (ReLU(inplace=True)) under autograd's custom-Function rules.
        y = x.new_empty((n, co, ho, wo))
        pointwise = kh == 1 and kw == 1 and padding == (0, 0)

        if pointwise:
            # 1x1: X itself (a strided slice of it for stride > 1) is X_u; no unfold needed.
            x_u = x[:, :, :: stride[0], :: stride[1]] if stride != (1, 1) else x
            x_u = x_u.reshape(n, groups, cig, length)  # copies only when strided
            # One batched GEMM over the whole batch, written straight into NCHW Y.
            torch.matmul(w_u, x_u, out=y.view(n, groups, cog, length))
            if bias is not None:
                y.add_(bias.view(1, co, 1, 1))
            # Saving the (sub-sampled) input is what nn.Conv2d saves too; for stride > 1 it is
            # smaller than the input.
            ctx.save_for_backward(x_u, weight)
        else:
            chunk = _chunk_size(x, ci * kh * kw * length)
            unfolder = _Unfolder(x.shape, (kh, kw), stride, padding, dilation, (ho, wo), chunk, x)
            y_buffer = x.new_empty((chunk * co * length,))
            y_flat = y.view(n, co, length)
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                m = stop - start
                x_u = unfolder.unfold(x[start:stop]).view(groups, -1, m * length)
                y_u = y_buffer[: m * co * length].view(groups, cog, m * length)
                _mm(w_u, x_u, y_u)  # Y_u [Co, n*L] = W_u x X_u, one GEMM for the chunk
                # Back to NCHW, with the bias added in the same pass.
                y_chunk = y_u.view(co, m, length).transpose(0, 1)
                if bias is None:
                    y_flat[start:stop].copy_(y_chunk)
                else:
                    torch.add(y_chunk, bias.view(1, co, 1), out=y_flat[start:stop])
            # X_u is recomputed in backward rather than saved: it is kh*kw times the input.
            ctx.save_for_backward(x, weight)
        ctx.geometry = (x.shape, (ho, wo), stride, padding, dilation, groups, pointwise)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        saved, weight = ctx.saved_tensors
        x_shape, (ho, wo), stride, padding, dilation, groups = ctx.geometry[:6]
        pointwise = ctx.geometry[6]
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        n, ci, h, w = x_shape
        co, cig, kh, kw = weight.shape
        cog, length = co // groups, ho * wo
        dy = grad_y.contiguous().view(n, co, length)
        w_u = weight.contiguous().view(groups, cog, cig * kh * kw)

        grad_b = dy.sum(dim=(0, 2)) if (need_b and ctx.has_bias) else None
        grad_w_u = None
        grad_x = None

        if pointwise:
            x_u = saved  # [N, G, Ci/G, L]
            dy_g = dy.view(n, groups, cog, length)
            if need_w:
                # dW_u = sum over samples of dY_u x X_uᵀ: one batched GEMM, then a sum over the
                # batch of the small [N, Co, Ci] result (a single [Co, N*L] x [N*L, Ci] GEMM would
                # first need both operands permuted, i.e. copies of dY and X).
                grad_w_u = torch.matmul(dy_g, x_u.transpose(2, 3)).sum(0)
            if need_x:
                # dX_u = W_uᵀ x dY_u is already dX (at the sampled positions): one batched GEMM.
                dx_u = torch.matmul(w_u.transpose(1, 2), dy_g)  # [N, G, Ci/G, L]
                if stride == (1, 1):
                    grad_x = dx_u.view(n, ci, h, w)
                else:
                    grad_x = dy.new_zeros((n, ci, h, w))
                    grad_x[:, :, :: stride[0], :: stride[1]] = dx_u.view(n, ci, ho, wo)
        elif need_w or need_x:
            x = saved
            chunk = _chunk_size(x, ci * kh * kw * length)
            unfolder = _Unfolder(x.shape, (kh, kw), stride, padding, dilation, (ho, wo), chunk, x)
            if need_w:
                grad_w_u = weight.new_zeros((groups, cog, cig * kh * kw))
            if need_x:
                grad_x = x.new_empty((n, ci, h, w))
                dcols_buffer = x.new_empty((chunk * ci * kh * kw * length,))
                w_t = w_u.transpose(1, 2)
            dy_buffer = x.new_empty((chunk * co * length,))
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                m = stop - start
                # dY_u [Co, n*L] for the chunk: the layout that makes both products one GEMM.
                dy_u = dy_buffer[: m * co * length].view(co, m, length)
                dy_u.copy_(dy[start:stop].transpose(0, 1))
                dy_u = dy_u.view(groups, cog, m * length)
                if need_w:
                    x_u = unfolder.unfold(x[start:stop]).view(groups, -1, m * length)
                    _mm(dy_u, x_u.transpose(1, 2), grad_w_u, accumulate=True)
                if need_x:
                    dx_u = dcols_buffer[: m * ci * kh * kw * length].view(groups, -1, m * length)
                    _mm(w_t, dy_u, dx_u)
                    unfolder.fold_into(dx_u.view(ci * kh * kw, m * length), grad_x[start:stop])

        grad_w = None if grad_w_u is None else grad_w_u.view_as(weight)
        return grad_x, grad_w, grad_b, None, None, None, None


def _chunk_size(x: Tensor, cols_per_sample: int) -> int:
    """Samples per unfold chunk: X_u of a chunk is at most about the size of the input itself
    (clamped to [CHUNK_BYTES / 4, CHUNK_BYTES]), so the transient buffers stay a fraction of what
    the layer holds anyway, yet a chunk is large enough for an efficient GEMM."""
    budget = min(CHUNK_BYTES, max(CHUNK_BYTES // 4, x.numel() * x.element_size()))
    per_sample = cols_per_sample * x.element_size()
    return max(1, min(x.shape[0], budget // max(1, per_sample)))


def _mm(a: Tensor, b: Tensor, out: Tensor, accumulate: bool = False) -> None:
    """out[g] (+)= a[g] @ b[g] for the G groups (a plain mm when there is one group)."""
    if a.shape[0] == 1:
        if accumulate:
            out[0].addmm_(a[0], b[0])
        else:
            torch.mm(a[0], b[0], out=out[0])
    elif accumulate:
        out.baddbmm_(a, b)
    else:
        torch.bmm(a, b, out=out)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> Tensor:
    """Functional form with `F.conv2d`'s signature (numeric padding only)."""
    if isinstance(padding, str):
        raise ValueError("string padding ('same'/'valid') is not supported by the im2col conv")
    squeeze = x.dim() == 3
    if squeeze:  # unbatched input, as nn.Conv2d accepts
        x = x.unsqueeze(0)
    y = Im2ColConv2dFunction.apply(
        x,
        weight,
        bias,
        _pair(stride, "stride"),
        _pair(padding, "padding"),
        _pair(dilation, "dilation"),
        groups,
    )
    return y.squeeze(0) if squeeze else y


class CustomConv2d(nn.Conv2d):
    """`nn.Conv2d` computed by the hand-written im2col operator.

    It subclasses `nn.Conv2d` rather than re-implementing it: the constructor signature, the
    parameter names (`weight`, `bias`), their shapes, the initialisation and `extra_repr` are then
    nn.Conv2d's by construction, so state dicts (and checkpoints) load both ways and the same seed
    gives the same initial weights. Only `forward` is replaced. Only `padding_mode="zeros"` is
    accepted (the unfold pads with zeros), and only numeric padding.
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
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(
                f"CustomConv2d supports only padding_mode='zeros', got {padding_mode!r}"
            )
        if isinstance(padding, str):
            raise ValueError(
                f"CustomConv2d supports only numeric padding, got {padding!r}"
            )
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
                return conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        if weight.dtype != x.dtype:
            raise TypeError(f"input dtype {x.dtype} differs from weight dtype {weight.dtype}")
        return conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


__all__ = ["CustomConv2d", "Im2ColConv2dFunction", "conv2d", "CHUNK_BYTES"]

