"""Non-overlapping window partitioning of a token grid [B, H, W, C] (local attention).

Where the grid does not divide by the window, the bottom/right edge is zero-padded up to
the next multiple; `window_unpartition` drops the padding again, so a round trip returns
the input exactly. `window_padding_mask` says which positions in each window are real
tokens (True) and which are padding (False). Pure torch, no Lightning.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """[B, H, W, C] -> ([B * nH * nW, window, window, C], (Hp, Wp)) with Hp, Wp the padded
    grid. Windows are ordered batch-major, then row-major over the window grid."""
    B, H, W, C = x.shape
    pad_h, pad_w = (-H) % window, (-W) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # pads C (none), then W, then H
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window, window, Wp // window, window, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, C)
    return windows, (Hp, Wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of `window_partition`: [B * nH * nW, window, window, C] -> [B, H, W, C]."""
    Hp, Wp = padded_hw
    H, W = hw
    nH, nW = Hp // window, Wp // window
    B = windows.shape[0] // (nH * nW)
    x = windows.view(B, nH, nW, window, window, -1).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    if Hp != H or Wp != W:
        x = x[:, :H, :W, :].contiguous()
    return x


def window_padding_mask(hw: tuple[int, int], window: int, device: torch.device | None = None) -> torch.Tensor | None:
    """Boolean [nH * nW, window * window]: True where a window position holds a real token.
    None when the grid divides by the window (no padding, nothing to mask)."""
    H, W = hw
    if H % window == 0 and W % window == 0:
        return None
    real = torch.ones(1, H, W, 1, device=device)
    windows, _ = window_partition(real, window)
    return windows.view(windows.shape[0], window * window) > 0
