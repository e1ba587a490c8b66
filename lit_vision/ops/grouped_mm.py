"""Matrix products per convolution group, written into (or added to) a preallocated output."""

from __future__ import annotations

import torch
from torch import Tensor


def grouped_mm(a: Tensor, b: Tensor, out: Tensor, accumulate: bool = False) -> None:
    """out[g] (+)= a[g] @ b[g] for the G groups of [G, m, k] @ [G, k, n] operands; plain matrices
    (2-D) are one group. One group is a plain mm.

    `out` may be a strided view (a slice of a larger buffer): the product lands in place, with no
    temporary, which is what both convolution algorithms rely on.
    """
    if a.dim() == 2:
        if accumulate:
            out.addmm_(a, b)
        else:
            torch.mm(a, b, out=out)
    elif a.shape[0] == 1:
        if accumulate:
            out[0].addmm_(a[0], b[0])
        else:
            torch.mm(a[0], b[0], out=out[0])
    elif accumulate:
        out.baddbmm_(a, b)
    else:
        torch.bmm(a, b, out=out)
