"""im2col / col2im: a batch chunk unfolded into the columns of a GEMM operand, and folded back.

The unfold is one strided *view* of the (padded) input plus one `copy_` into a reused buffer,
rather than `F.unfold`, and the fold is kh*kw strided in-place adds rather than `F.fold`: the same
numbers, but torch's im2col/col2im run a single-threaded scalar loop and allocate a fresh buffer
on every call (measured ~12x slower; see docs/convolution.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_vision.ops.conv_geometry import IntPair

# Upper bound on the bytes of one chunk of the unfolded input (and of its gradient). Small enough
# that chunk + GEMM operands stay in the 32 MB L3 cache and peak memory stays close to
# nn.Conv2d's; large enough that per-chunk Python overhead is negligible.
CHUNK_BYTES = 16 * 2**20


def chunk_size(x: Tensor, cols_per_sample: int) -> int:
    """Samples per unfold chunk: X_u of a chunk is at most about the size of the input itself
    (clamped to [CHUNK_BYTES / 4, CHUNK_BYTES]), so the transient buffers stay a fraction of what
    the layer holds anyway, yet a chunk is large enough for an efficient GEMM."""
    budget = min(CHUNK_BYTES, max(CHUNK_BYTES // 4, x.numel() * x.element_size()))
    per_sample = cols_per_sample * x.element_size()
    return max(1, min(x.shape[0], budget // max(1, per_sample)))


class Unfolder:
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

    def _cols_per_sample(self) -> int:
        return self.channels * self.kernel[0] * self.kernel[1] * self.out_hw[0] * self.out_hw[1]

    def unfold(self, x: Tensor) -> Tensor:
        """X_u [Ci*kh*kw, n*L] of the chunk x [n, Ci, H, W]: one strided copy."""
        n = x.shape[0]
        if self._cols is None:
            self._cols = self.like.new_empty((self.chunk * self._cols_per_sample(),))
        cols = self._cols[: n * self._cols_per_sample()].view(-1, n * self.out_hw[0] * self.out_hw[1])
        self._as_cols6(cols, n).copy_(self._windows(self._padded(x)))
        return cols

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
