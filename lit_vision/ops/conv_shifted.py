"""Stride-1 convolution as kh*kw GEMMs over shifted views of the padded image: no unfolded copy.

Lay one zero-padded sample out flat, Xp [Ci, size], each image row taking S = W + g positions
(g >= pw zeros after each row, which serve as the right padding of that row *and* the left padding
of the next), with ph rows of zeros above and below. Compute the output over that same row
stride: output pixel (r, c) sits at q = r*S + c. The input pixel it needs for kernel offset (i, j)
then sits at q + s_ij with s_ij = i*dh*S + j*dw: the same shift for every output position. So,
per sample and kernel offset, with W_ij = W[:, :, i, j] [Co, Ci/G]:

    forward     Yp[:, 0:Lq]       += W_ij  x Xp[:, s_ij : s_ij+Lq]     (a strided view, no copy)
    backward    dW_ijᵀ            += Xp[:, s_ij : s_ij+Lq] x dYp[:, 0:Lq]ᵀ
                dXp[:, s_ij:+Lq]  += W_ijᵀ x dYp[:, 0:Lq]

with Lq = (Ho-1)*S + Wo, the positions up to the last real output. The columns c >= Wo of Yp
read across a row boundary: they are computed and cropped away (Y = Yp[:, :, :Wo]); in backward
dYp holds zeros there, so they add nothing to either gradient. The work spent on them is
S/Wo - 1 of the GEMMs (3% for SimpleNet's 32x32 layer, 6% for its 16x16 one), against the
kh*kw-fold copies of im2col (one unfold in forward, another unfold and a fold in backward).

Every buffer is one sample's (a padded input, Yp, dYp, dXp: a few hundred kB), so it stays in
the CPU's L2 cache between the copy that fills it and the kh*kw GEMMs that read or accumulate
into it, and the buffers are reused from sample to sample, so every strided view is built once.
The input is saved for backward (as nn.Conv2d saves it) and re-padded there. Stride 1 only: with
a stride, consecutive outputs are no longer consecutive positions of the shifted view (conv.py
sends those layers to im2col). docs/convolution.md has the measurements.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lit_vision.ops.conv_geometry import IntPair, output_hw
from lit_vision.ops.grouped_mm import grouped_mm


def _grouped(matrix: Tensor, groups: int) -> Tensor:
    """[C, n] -> [G, C/G, n] for grouped_mm; a single group stays a plain matrix (cheaper call)."""
    return matrix if groups == 1 else matrix.view(groups, matrix.shape[0] // groups, -1)


class _ShiftLayout:
    """Sizes, shifts and per-sample buffers of the shifted-GEMM formulation for one geometry."""

    def __init__(self, x: Tensor, weight: Tensor, padding: IntPair, dilation: IntPair, groups: int) -> None:
        _, self.ci, self.h, self.w = x.shape
        self.co, self.cig, kh, kw = weight.shape
        self.groups = groups
        ph, pw = padding
        self.ho = self.h + 2 * ph - dilation[0] * (kh - 1)
        self.wo = self.w + 2 * pw - dilation[1] * (kw - 1)
        # Row stride: at least pw zeros between rows (both paddings share them), and room for a
        # whole output row when the padding exceeds the kernel's reach.
        self.row = self.w + max(pw, self.wo - self.w)
        self.top = ph * self.row + pw  # zeros before the first pixel
        self.shifts = [i * dilation[0] * self.row + j * dilation[1] for i in range(kh) for j in range(kw)]
        self.positions = (self.ho - 1) * self.row + self.wo  # Lq
        # Up to the last position read, and at least whole rows for the interior view.
        self.size = max(self.positions + self.shifts[-1], self.top + self.h * self.row)

    def taps(self, weight: Tensor) -> Tensor:
        """W as [kh*kw, G, Co/G, Ci/G]: one contiguous matrix per kernel offset and group."""
        # A real copy: without .contiguous() the view is strided and every GEMM copies it again.
        taps = weight.permute(2, 3, 0, 1).contiguous()
        return taps.view(len(self.shifts), self.groups, self.co // self.groups, self.cig)

    def padded_buffer(self, like: Tensor) -> Tensor:
        """A zeroed [Ci, size] buffer for one sample; only `interior` is ever written."""
        return like.new_zeros((self.ci, self.size))

    def interior(self, padded: Tensor) -> Tensor:
        """The [Ci, H, W] view of a padded buffer that holds the real pixels."""
        rows = padded[:, self.top : self.top + self.h * self.row]
        return rows.view(self.ci, self.h, self.row)[:, :, : self.w]

    def shifted_views(self, padded: Tensor) -> list[Tensor]:
        """For each kernel offset, the [Ci, Lq] view (grouped) of a padded buffer at its shift."""
        return [_grouped(padded[:, s : s + self.positions], self.groups) for s in self.shifts]

    def wide_buffer(self, like: Tensor, zeroed: bool) -> Tensor:
        """A [Co, Ho*S] output-sized buffer at the padded row stride."""
        shape = (self.co, self.ho * self.row)
        return like.new_zeros(shape) if zeroed else like.new_empty(shape)

    def wide_positions(self, wide: Tensor) -> Tensor:
        """The grouped [Co, Lq] view of a wide buffer that the GEMMs read or write."""
        return _grouped(wide[:, : self.positions], self.groups)

    def cropped(self, wide: Tensor) -> Tensor:
        """The [Co, Ho, Wo] view of a wide buffer: the real outputs."""
        return wide.view(self.co, self.ho, self.row)[:, :, : self.wo]


class ShiftedConv2dFunction(torch.autograd.Function):
    """Stride-1 convolution as shifted GEMMs with a hand-written backward (see the module docstring)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        padding: IntPair,
        dilation: IntPair,
        groups: int,
    ) -> Tensor:
        ho, wo = output_hw(x, weight, (1, 1), padding, dilation, groups)
        layout = _ShiftLayout(x, weight, padding, dilation, groups)
        taps = [t if groups > 1 else t[0] for t in layout.taps(weight)]
        padded = layout.padded_buffer(x)
        interior = layout.interior(padded)
        shifted = layout.shifted_views(padded)
        wide = layout.wide_buffer(x, zeroed=False)
        wide_out, cropped = layout.wide_positions(wide), layout.cropped(wide)
        bias_view = None if bias is None else bias.view(-1, 1, 1)
        y = x.new_empty((x.shape[0], layout.co, ho, wo))
        for k in range(x.shape[0]):
            interior.copy_(x[k])
            for t, (tap, source) in enumerate(zip(taps, shifted)):
                grouped_mm(tap, source, wide_out, accumulate=t > 0)
            if bias_view is None:
                y[k].copy_(cropped)
            else:
                torch.add(cropped, bias_view, out=y[k])
        ctx.save_for_backward(x, weight)
        ctx.geometry = (padding, dilation, groups)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        padding, dilation, groups = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_b = grad_y.sum(dim=(0, 2, 3)) if (need_b and ctx.has_bias) else None
        grad_x = grad_w = None
        if not (need_x or need_w):
            return grad_x, grad_w, grad_b, None, None, None
        layout = _ShiftLayout(x, weight, padding, dilation, groups)
        # dYp at the padded row stride: the columns past Wo are zeroed once and never written,
        # so the wrapped-round positions add nothing to either gradient.
        wide_grad = layout.wide_buffer(grad_y, zeroed=True)
        dy, dy_cropped = layout.wide_positions(wide_grad), layout.cropped(wide_grad)
        if need_w:
            padded = layout.padded_buffer(x)
            interior = layout.interior(padded)
            shifted = layout.shifted_views(padded)
            dy_t = dy.transpose(-1, -2)
            # dWᵀ per offset: MKL runs X x dYᵀ ~10% faster than dY x Xᵀ for these thin shapes.
            grad_taps_t = weight.new_zeros((len(layout.shifts), groups, layout.cig, layout.co // groups))
            grad_tap_views = [t if groups > 1 else t[0] for t in grad_taps_t]
        if need_x:
            taps_t = [t.transpose(-1, -2) for t in layout.taps(weight)]
            taps_t = [t if groups > 1 else t[0] for t in taps_t]
            grad_x = x.new_empty(x.shape)
            grad_padded = layout.padded_buffer(x)
            grad_shifted = layout.shifted_views(grad_padded)
            grad_interior = layout.interior(grad_padded)
        for k in range(x.shape[0]):
            dy_cropped.copy_(grad_y[k])
            if need_w:
                interior.copy_(x[k])
                for source, grad_tap_t in zip(shifted, grad_tap_views):
                    grouped_mm(source, dy_t, grad_tap_t, accumulate=True)
            if need_x:
                # Offsets overlap in dXp, so each adds into it in turn, from zero.
                grad_padded.zero_()
                for tap_t, target in zip(taps_t, grad_shifted):
                    grouped_mm(tap_t, dy, target, accumulate=True)
                grad_x[k].copy_(grad_interior)
        if need_w:
            kh, kw = weight.shape[2:]
            # [kh, kw, G, Ci/G, Co/G] -> [G, Co/G, Ci/G, kh, kw] = [Co, Ci/G, kh, kw]
            grad_w = grad_taps_t.view(kh, kw, groups, layout.cig, -1).permute(2, 4, 3, 0, 1)
            grad_w = grad_w.reshape(weight.shape)
        return grad_x, grad_w, grad_b, None, None, None
