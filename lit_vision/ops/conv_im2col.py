"""The reference convolution algorithm: unfold (im2col) -> matrix multiply -> fold, forward and backward.

Notation: X [N, Ci, H, W] is unfolded to X_u [Ci*kh*kw, N*L] with L = Ho*Wo (see `im2col.py`),
W [Co, Ci/G, kh, kw] is viewed as W_u [G, Co/G, Ci/G*kh*kw], and

    forward     Y_u  = W_u  x X_u
    backward    dW_uᵀ = X_u x dY_uᵀ  (summed over the batch; MKL runs this orientation ~10%
                                     faster than dY_u x X_uᵀ for these thin shapes)
                dX_u = W_uᵀ x dY_u,  dX = fold(dX_u)
                dB   = sum of dY over batch and positions

It handles every geometry (stride, padding, dilation, groups). The batch goes through in chunks
of a reused buffer and X_u is recomputed in backward rather than saved, because X_u is kh*kw
times the input. 1x1 convolutions without padding skip the unfold: X viewed as [N, Ci, H*W]
already *is* X_u (a stride is a slice of the input), so they are batched matmuls.
docs/convolution.md records why it is written this way and what it costs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lit_vision.ops.conv_geometry import IntPair, output_hw
from lit_vision.ops.grouped_mm import grouped_mm
from lit_vision.ops.im2col import Unfolder, chunk_size


class Im2colConv2dFunction(torch.autograd.Function):
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
        ho, wo = output_hw(x, weight, stride, padding, dilation, groups)
        n, ci, h, w = x.shape
        co, cig, kh, kw = weight.shape
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
            chunk = chunk_size(x, ci * kh * kw * length)
            unfolder = Unfolder(x.shape, (kh, kw), stride, padding, dilation, (ho, wo), chunk, x)
            y_buffer = x.new_empty((chunk * co * length,))
            y_flat = y.view(n, co, length)
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                m = stop - start
                x_u = unfolder.unfold(x[start:stop]).view(groups, -1, m * length)
                y_u = y_buffer[: m * co * length].view(groups, cog, m * length)
                grouped_mm(w_u, x_u, y_u)  # Y_u [Co, n*L] = W_u x X_u, one GEMM for the chunk
                # Back to NCHW, with the bias added in the same pass.
                y_chunk = y_u.view(co, m, length).transpose(0, 1)
                if bias is None:
                    y_flat[start:stop].copy_(y_chunk)
                else:
                    torch.add(y_chunk, bias.view(1, co, 1), out=y_flat[start:stop])
            ctx.save_for_backward(x, weight)
        ctx.geometry = (x.shape, (ho, wo), stride, padding, dilation, groups, pointwise)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        saved, weight = ctx.saved_tensors
        x_shape, (ho, wo), stride, padding, dilation, groups, pointwise = ctx.geometry
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
            chunk = chunk_size(x, ci * kh * kw * length)
            unfolder = Unfolder(x.shape, (kh, kw), stride, padding, dilation, (ho, wo), chunk, x)
            if need_w:
                grad_w_u_t = weight.new_zeros((groups, cig * kh * kw, cog))
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
                    grouped_mm(x_u, dy_u.transpose(1, 2), grad_w_u_t, accumulate=True)
                if need_x:
                    dx_u = dcols_buffer[: m * ci * kh * kw * length].view(groups, -1, m * length)
                    grouped_mm(w_t, dy_u, dx_u)
                    unfolder.fold_into(dx_u.view(ci * kh * kw, m * length), grad_x[start:stop])
            if need_w:
                grad_w_u = grad_w_u_t.transpose(1, 2)

        grad_w = None if grad_w_u is None else grad_w_u.reshape(weight.shape)
        return grad_x, grad_w, grad_b, None, None, None, None
