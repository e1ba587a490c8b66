"""The geometry grid that every convolution algorithm is gradchecked over (tests/test_conv.py for
the CPU algorithms, tests/test_conv_implicit_gemm.py for the Triton kernels via the interpreter)."""

# (kernel, stride, padding, dilation, groups, bias, spatial size) — batch 1, odd sizes throughout.
GRADCHECK_CASES = [
    ((1, 1), 1, 0, 1, 1, True, (5, 7)),  # 1x1 fast path
    ((1, 1), 2, 0, 1, 2, False, (7, 5)),  # 1x1 strided, grouped
    ((1, 1), 3, 1, 1, 1, True, (7, 7)),  # 1x1 with padding goes through unfold
    ((3, 3), 1, 1, 1, 1, True, (7, 5)),
    ((3, 3), 2, 0, 1, 1, False, (9, 7)),
    ((3, 3), 3, 2, 2, 2, True, (9, 9)),  # dilation + groups + stride that leaves pixels unused
    ((3, 3), 1, 3, 1, 4, False, (5, 5)),  # padding larger than the kernel's reach
    ((7, 7), 2, 3, 1, 1, True, (9, 11)),  # SimpleNet's stem geometry
    ((7, 7), 1, 0, 1, 1, False, (7, 9)),
    ((2, 3), 1, (1, 0), 1, 1, True, (5, 7)),  # non-square kernel and padding
    ((3, 2), (2, 1), (0, 1), (2, 1), 2, True, (9, 5)),  # everything non-square
    ((3, 3), 1, 2, 2, 2, True, (7, 9)),  # dilation at stride 1 (the shifts grow, rows wrap)
    ((3, 2), 1, (0, 1), (2, 1), 2, False, (9, 5)),  # non-square dilation, stride 1
    ((1, 3), 1, (0, 4), 1, 1, True, (3, 4)),  # padding wider than the image
]
