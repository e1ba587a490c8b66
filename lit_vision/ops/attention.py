"""Hand-written multi-head attention: softmax(Q Kᵀ / √d) · V.

`attention(q, k, v, mask, impl="manual")` is the operator written out in three tensor
ops; `impl="sdpa"` hands the same computation to `F.scaled_dot_product_attention`
(fused kernels, less memory) and returns the same numbers within float tolerance —
`tests/test_vit_ops.py` checks it. Pure torch, no Lightning.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from lit_vision.utils.choices import check_choice

AttentionImpl = Literal["manual", "sdpa"]


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    impl: AttentionImpl = "manual",
) -> torch.Tensor:
    """Scaled dot-product attention over [B, heads, N, d] tensors.

    Args:
        q, k, v: queries, keys, values shaped [B, heads, N, d] (keys/values may have
            their own length M).
        mask: optional boolean mask broadcastable to [B, heads, N, M]; True = may attend.
            Every query must be allowed at least one key.
        impl: "manual" (written out here) or "sdpa" (torch's fused kernel).
    """
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if impl != "manual":
        raise ValueError(f"attention impl must be 'manual' or 'sdpa', got {impl!r}")
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # [B, h, N, M]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    # Softmax in float32 even under bf16/fp16 autocast: exp() of large logits overflows.
    weights = scores.float().softmax(dim=-1).to(v.dtype)
    return weights @ v


class MultiHeadSelfAttention(nn.Module):
    """Self-attention over token sequences [B, N, C]: one fused qkv projection, `heads`
    heads of width C / heads, the attention above, an output projection."""

    def __init__(self, dim: int, heads: int, impl: AttentionImpl = "manual", qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding dim {dim} is not divisible by heads {heads}")
        check_choice(impl, AttentionImpl, "attention")
        self.heads = heads
        self.impl = impl
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        # [B, N, 3, heads, d] -> three tensors [B, heads, N, d]
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = attention(q, k, v, mask=mask, impl=self.impl)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))
