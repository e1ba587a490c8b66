"""The three Triton kernels of the implicit-GEMM convolution (forward, input gradient, weight
gradient); `conv_implicit_gemm.py` launches them and wraps them in torch.library custom ops.

Each kernel is a tiled GEMM whose operand tiles are *gathered* from the image (or the output
gradient) when the GEMM needs them, instead of being read from a materialised im2col matrix:

    forward      Y [M = N·Ho·Wo, Co/G]  = A_x  [M, K = kh·kw·Ci/G] x W_f [K, Co/G]      (+ bias)
    input grad   dX [M = N·H·W, Ci/G]   = A_dy [M, K = kh·kw·Co/G] x W_t [K, Ci/G]
    weight grad  dW [Co/G, K = kh·kw·Ci/G] = dYᵀ [Co/G, P = N·Ho·Wo] x A_x [P, K]  (split along P)

K is ordered (kh, kw, channel), so with channels-last (NHWC) tensors the channel, the fastest
index of a K tile, is also the contiguous one in memory. Every tensor is addressed through its
four strides, so any memory layout gives the right answer (channels-last is only faster).
One program id axis enumerates the groups; their channels are offsets into the same tensors.

Two K orders, chosen by the launcher (constexpr CHANNEL_BLOCKS):
* channel blocks, when the reduced channel count is a multiple of 16 (every SimpleNet layer but
  the stem): each step of the K loop is one kernel offset (r, s) and a contiguous block of
  channels, so the gather's coordinates and bounds checks are per-row vectors [BLOCK_M] instead
  of [BLOCK_M, BLOCK_K] tiles of integer arithmetic;
* flat, otherwise: K enumerated as one (kh, kw, channel) index, padded by the masks to a multiple
  of BLOCK_K (the 7x7 stem: K = 147 on 3 channels, where blocks of channels would be 3 of 16+).
With NHWC tensors whose channel count is a multiple of 16, Triton's launch-time specialisation
(unit channel stride, strides divisible by 16) lets it prove a tile's channel run contiguous in
either order: compiled for sm_90 (H100/H200), the loads of SimpleNet's 3x3 layer become 16-byte
`cp.async` copies, software-pipelined, into `wgmma` for bf16 (see docs/convolution.md).
Both are a single loop over flattened kernel offsets. Known trap: with the kernel-offset loop
flattened like this, 8 warps have produced wrong results on GPUs (PyTorch issue 173068, an
inductor/Triton bug), so the launcher's configurations use at most 4 warps.

ROWS_BUCKET, unused by the code, is the autotuner's key in place of the GEMM's row count (M, or P
for the weight gradient): that count rounded up to a power of two, so that a new batch size (the
last validation batch, PGD's sub-batches) reuses its bucket's tuned tile instead of timing every
configuration again. `do_not_specialize` keeps it out of the compiled code's specialisation, so
every bucket runs the same binary.

Precision: fp32 operands use `input_precision="ieee"` (Triton's GPU default is TF32, which
rounds the operands to a 10-bit mantissa; the interpreter ignores the setting and always computes
in full precision, so only a GPU test can tell the two apart). Accumulation is fp32 for
fp32/bf16/fp16 and fp64 for fp64 (ACC_FP64). bf16 `tl.dot` is wrong in Triton's interpreter
(Triton issue 11584), so under the interpreter the launcher sets UPCAST and bf16 tiles are cast
to fp32 before the product (exact: a bf16 value is an fp32 value). Compiled for sm_90, the
IEEE fp32 product is a loop of FMAs on the CUDA cores (tensor cores have no IEEE fp32 mode), as
is cuDNN's fp32 with TF32 off; bf16 runs on the tensor cores (`wgmma`).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _dot(a, b, acc, IEEE: tl.constexpr, UPCAST: tl.constexpr):
    """acc += a x b with the precision rules of the module docstring (fp64 tiles give an fp64
    product into the fp64 accumulator)."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if IEEE:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit(do_not_specialize=["ROWS_BUCKET"])
def conv_forward_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    M, H, W, HO, WO, CIG, COG, KW, K,
    sxn, sxc, sxh, sxw,
    swg, swk, swn,
    syn, syc, syh, syw,
    STRIDE_H, STRIDE_W, PAD_H, PAD_W, DIL_H, DIL_W, ROWS_BUCKET,
    HAS_BIAS: tl.constexpr, ACC_FP64: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
    CHANNEL_BLOCKS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Y[m, co] = sum_k X_gathered[m, k] * W_f[g, k, co] (+ bias[co]); grid (M tiles, Co/G tiles, G)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < COG
    # Output row m -> (sample, output row, output column); int64 for the sample's offset, the
    # one term that can exceed 2**31 elements on a large batch.
    n_idx = offs_m // (HO * WO)
    pix = offs_m % (HO * WO)
    oh = pix // WO
    ow = pix % WO
    x_row = n_idx.to(tl.int64) * sxn
    ih0 = oh * STRIDE_H - PAD_H
    iw0 = ow * STRIDE_W - PAD_W
    x_ch0 = g * CIG
    w_base = w_ptr + g * swg

    if ACC_FP64:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    c_blocks = tl.cdiv(CIG, BLOCK_K)
    iterations = (K // CIG) * c_blocks if CHANNEL_BLOCKS else tl.cdiv(K, BLOCK_K)
    for it in range(0, iterations):
        if CHANNEL_BLOCKS:
            # One kernel offset (r, s) per step, a contiguous block of channels: row offsets
            # are vectors, and the channel run is provably contiguous (vectorised, pipelined loads).
            rs = it // c_blocks
            ci = (it % c_blocks) * BLOCK_K + tl.arange(0, BLOCK_K)
            mask_k = ci < CIG
            offs_k = rs * CIG + ci
            ih = ih0 + (rs // KW) * DIL_H
            iw = iw0 + (rs % KW) * DIL_W
            row_ok = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a_mask = row_ok[:, None] & mask_k[None, :]
            a_ptrs = x_ptr + (x_row + ih * sxh + iw * sxw)[:, None] + (x_ch0 + ci)[None, :] * sxc
        else:
            # K flattened over (r, s, ci) and padded by the mask: the stem's Ci = 3, K = 147.
            offs_k = it * BLOCK_K + tl.arange(0, BLOCK_K)
            mask_k = offs_k < K
            ci = offs_k % CIG
            rs = offs_k // CIG
            ih = ih0[:, None] + (rs // KW)[None, :] * DIL_H
            iw = iw0[:, None] + (rs % KW)[None, :] * DIL_W
            a_mask = mask_m[:, None] & mask_k[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a_ptrs = x_ptr + x_row[:, None] + (x_ch0 + ci)[None, :] * sxc + ih * sxh + iw * sxw
        a = tl.load(a_ptrs, mask=a_mask, other=0.0)
        b_ptrs = w_base + offs_k[:, None] * swk + offs_n[None, :] * swn
        b = tl.load(b_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc = _dot(a, b, acc, IEEE, UPCAST)

    co = g * COG + offs_n
    if HAS_BIAS:
        bias = tl.load(b_ptr + co, mask=mask_n, other=0.0)
        acc += bias.to(acc.dtype)[None, :]
    y_ptrs = y_ptr + (n_idx.to(tl.int64) * syn + oh * syh + ow * syw)[:, None] + co[None, :] * syc
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit(do_not_specialize=["ROWS_BUCKET"])
def conv_input_grad_kernel(
    dy_ptr, w_ptr, dx_ptr,
    M, H, W, HO, WO, CIG, COG, KW, K,
    sdn, sdc, sdh, sdw,
    swg, swk, swn,
    sxn, sxc, sxh, sxw,
    STRIDE_H, STRIDE_W, PAD_H, PAD_W, DIL_H, DIL_W, ROWS_BUCKET,
    ACC_FP64: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr, CHANNEL_BLOCKS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """dX[m, ci] = sum_k dY_gathered[m, k] * W_t[g, k, ci]; grid (M tiles, Ci/G tiles, G).

    Row m is an input pixel (n, ih, iw); k = (r, s, co). Input pixel ih receives from output
    row oh through kernel row r when ih = oh*stride - pad + r*dilation, i.e. when
    t = ih + pad - r*dilation is >= 0, divisible by the stride, and t/stride < Ho: those are the
    stride-divisibility masks. Indexing W by (r, s) this way *is* the flipped kernel.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < CIG
    n_idx = offs_m // (H * W)
    pix = offs_m % (H * W)
    ih = pix // W
    iw = pix % W
    dy_row = n_idx.to(tl.int64) * sdn
    th0 = ih + PAD_H
    tw0 = iw + PAD_W
    dy_ch0 = g * COG
    w_base = w_ptr + g * swg

    if ACC_FP64:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    c_blocks = tl.cdiv(COG, BLOCK_K)
    iterations = (K // COG) * c_blocks if CHANNEL_BLOCKS else tl.cdiv(K, BLOCK_K)
    for it in range(0, iterations):
        # Masked out where negative, so the rounding direction of // there does not matter.
        if CHANNEL_BLOCKS:  # one (r, s) per step, a contiguous block of output channels
            rs = it // c_blocks
            co = (it % c_blocks) * BLOCK_K + tl.arange(0, BLOCK_K)
            mask_k = co < COG
            offs_k = rs * COG + co
            th = th0 - (rs // KW) * DIL_H
            tw = tw0 - (rs % KW) * DIL_W
            oh = th // STRIDE_H
            ow = tw // STRIDE_W
            valid = (th >= 0) & (tw >= 0) & (oh * STRIDE_H == th) & (ow * STRIDE_W == tw) & (oh < HO) & (ow < WO)
            a_mask = (mask_m & valid)[:, None] & mask_k[None, :]
            a_ptrs = dy_ptr + (dy_row + oh * sdh + ow * sdw)[:, None] + (dy_ch0 + co)[None, :] * sdc
        else:  # K flattened over (r, s, co), padded by the mask
            offs_k = it * BLOCK_K + tl.arange(0, BLOCK_K)
            mask_k = offs_k < K
            co = offs_k % COG
            rs = offs_k // COG
            th = th0[:, None] - (rs // KW)[None, :] * DIL_H
            tw = tw0[:, None] - (rs % KW)[None, :] * DIL_W
            oh = th // STRIDE_H
            ow = tw // STRIDE_W
            valid = (th >= 0) & (tw >= 0) & (oh * STRIDE_H == th) & (ow * STRIDE_W == tw) & (oh < HO) & (ow < WO)
            a_mask = mask_m[:, None] & mask_k[None, :] & valid
            a_ptrs = dy_ptr + dy_row[:, None] + (dy_ch0 + co)[None, :] * sdc + oh * sdh + ow * sdw
        a = tl.load(a_ptrs, mask=a_mask, other=0.0)
        b_ptrs = w_base + offs_k[:, None] * swk + offs_n[None, :] * swn
        b = tl.load(b_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc = _dot(a, b, acc, IEEE, UPCAST)

    ci = g * CIG + offs_n
    dx_ptrs = dx_ptr + (n_idx.to(tl.int64) * sxn + ih * sxh + iw * sxw)[:, None] + ci[None, :] * sxc
    tl.store(dx_ptrs, acc.to(dx_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit(do_not_specialize=["ROWS_BUCKET"])
def conv_weight_grad_kernel(
    dy_ptr, x_ptr, part_ptr,
    P, H, W, HO, WO, CIG, COG, KW, K, P_PER_SPLIT, SPLITS,
    sdn, sdc, sdh, sdw,
    sxn, sxc, sxh, sxw,
    STRIDE_H, STRIDE_W, PAD_H, PAD_W, DIL_H, DIL_W, ROWS_BUCKET,
    ACC_FP64: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr, CHANNEL_BLOCKS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """partial[g, split, co, k] = sum over p in the split's slice of P of dY[p, co] * X_gathered[p, k].

    Grid (Co/G tiles, K tiles, G * SPLITS); with CHANNEL_BLOCKS a K tile is one kernel offset
    (r, s) times a contiguous block of input channels (kh*kw*cdiv(Ci/G, BLOCK_N) tiles). Each program writes its own partial sum (plain stores
    into its own slot, never atomics); the launcher adds the SPLITS partials in a fixed order, so
    the weight gradient is the same bits on every run.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_gs = tl.program_id(2)
    g = pid_gs // SPLITS
    split = pid_gs % SPLITS

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # output channel within the group
    mask_m = offs_m < COG
    if CHANNEL_BLOCKS:
        c_blocks = tl.cdiv(CIG, BLOCK_N)
        rs = pid_n // c_blocks
        ci = (pid_n % c_blocks) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = ci < CIG
        offs_n = rs * CIG + ci  # k = (r, s, ci)
    else:
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < K
        ci = offs_n % CIG
        rs = offs_n // CIG
    kr = (rs // KW) * DIL_H - PAD_H
    ks = (rs % KW) * DIL_W - PAD_W
    dy_col = (g * COG + offs_m) * sdc
    x_col = (g * CIG + ci) * sxc

    if ACC_FP64:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    p_start = split * P_PER_SPLIT
    p_end = tl.minimum(p_start + P_PER_SPLIT, P)
    for p0 in range(p_start, p_end, BLOCK_K):
        offs_p = p0 + tl.arange(0, BLOCK_K)
        mask_p = offs_p < p_end
        n_idx = offs_p // (HO * WO)
        pix = offs_p % (HO * WO)
        oh = pix // WO
        ow = pix % WO
        n64 = n_idx.to(tl.int64)
        # A = dYᵀ tile [BLOCK_M channels, BLOCK_K positions].
        a_ptrs = dy_ptr + dy_col[:, None] + (n64 * sdn + oh * sdh + ow * sdw)[None, :]
        a = tl.load(a_ptrs, mask=mask_m[:, None] & mask_p[None, :], other=0.0)
        # B = gathered input tile [BLOCK_K positions, BLOCK_N (r, s, ci)].
        if CHANNEL_BLOCKS:  # one (r, s): per-row offsets, contiguous channels
            ih = oh * STRIDE_H + kr
            iw = ow * STRIDE_W + ks
            row_ok = mask_p & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            b_mask = row_ok[:, None] & mask_n[None, :]
            b_ptrs = x_ptr + (n64 * sxn + ih * sxh + iw * sxw)[:, None] + x_col[None, :]
        else:
            ih = (oh * STRIDE_H)[:, None] + kr[None, :]
            iw = (ow * STRIDE_W)[:, None] + ks[None, :]
            b_mask = mask_p[:, None] & mask_n[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            b_ptrs = x_ptr + (n64 * sxn)[:, None] + x_col[None, :] + ih * sxh + iw * sxw
        b = tl.load(b_ptrs, mask=b_mask, other=0.0)
        acc = _dot(a, b, acc, IEEE, UPCAST)

    # partial is contiguous [G, SPLITS, COG, K]: program (g, split) owns slot g * SPLITS + split.
    slot = pid_gs.to(tl.int64) * COG * K
    part_ptrs = part_ptr + slot + offs_m[:, None] * K + offs_n[None, :]
    tl.store(part_ptrs, acc, mask=mask_m[:, None] & mask_n[None, :])
