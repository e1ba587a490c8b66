"""Vision Transformer with local (windowed) self-attention, behind `--model ViT`.

    image [B,3,128,128] --16x16 patches--> tokens [B,8,8,C] + learned absolute position
    -> depth × pre-norm block:  x + DropPath(Attn(LN(x)));  x + DropPath(MLP(LN(x)))
       (blocks listed in `window_blocks` attend inside non-overlapping window×window
        windows, the others over the whole grid)
    -> LayerNorm -> mean over tokens -> linear head

Defaults (patch 16, dim 192, depth 4, heads 4, MLP ×4, windowed blocks 0 and 2 with
window 4) give 1,959,076 parameters for 100 classes.

Padding: where the token grid does not divide by the window, windows are zero-padded
(ops/windows.py). By default (`mask_padding=True`) the padded positions are masked out as
keys, so a real token attends only to real tokens of its window and its output does not
depend on how much padding its window got. `mask_padding=False` lets the padded zero tokens
take part (as Swin/ViTDet without a mask do). With the default 8×8 grid and window 4
nothing is padded and both settings agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import StochasticDepth

from lit_vision.ops.attention import AttentionImpl, MultiHeadSelfAttention
from lit_vision.ops.windows import (
    window_padding_mask,
    window_partition,
    window_unpartition,
)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block over a token grid [B, H, W, C]. `window` > 0 makes the
    attention local to non-overlapping window×window windows; 0 makes it global."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        window: int = 0,
        drop_path: float = 0.0,
        attention: AttentionImpl = "manual",
        mask_padding: bool = True,
    ) -> None:
        super().__init__()
        self.window = window
        self.mask_padding = mask_padding
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads, impl=attention)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # "row" mode drops the whole residual branch per sample (stochastic depth).
        self.drop_path = StochasticDepth(drop_path, mode="row")

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        if not self.window:
            return self.attn(x.reshape(B, H * W, C)).view(B, H, W, C)
        windows, padded_hw = window_partition(x, self.window)  # [B*nW, ws, ws, C]
        n_win = windows.shape[0]
        mask = None
        if self.mask_padding:
            real = window_padding_mask((H, W), self.window, device=x.device)  # [nW, ws*ws] or None
            if real is not None:
                # Keys only: [B*nW, 1, 1, ws*ws], broadcast over heads and queries.
                mask = real.repeat(B, 1)[:, None, None, :]
        out = self.attn(windows.view(n_win, self.window * self.window, C), mask=mask)
        return window_unpartition(out.view(n_win, self.window, self.window, C), self.window, padded_hw, (H, W))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._attend(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT over [B, 3, H, W] images with a learned absolute position embedding for a
    `img_size`-square input (bicubically resized when a different grid comes in); windowed
    attention in some blocks (1,959,076 parameters for 100 classes at the defaults)."""

    def __init__(
        self,
        num_classes: int = 100,
        img_size: int = 128,
        patch_size: int = 16,
        embed_dim: int = 192,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        window_size: int = 4,
        window_blocks: Sequence[int] = (0, 2),
        drop_path: float = 0.1,
        attention: AttentionImpl = "manual",
        mask_padding: bool = True,
    ) -> None:
        """
        Args:
            num_classes: classes of the head.
            img_size: training image side; sets the position-embedding grid (other sizes
                are handled by resizing the embedding).
            patch_size: side of the square patches (16 -> an 8×8 token grid at 128 px).
            embed_dim: token width.
            depth: number of transformer blocks.
            num_heads: attention heads per block.
            mlp_ratio: MLP hidden width / embed_dim.
            window_size: side of the local attention windows, in tokens.
            window_blocks: indices of the blocks that attend locally; the rest are global.
            drop_path: stochastic-depth rate of the last block (linear from 0 at the first).
            attention: "manual" (hand-written softmax(QKᵀ/√d)·V) or "sdpa" (torch's fused
                kernel, same outputs within float tolerance, faster).
            mask_padding: mask zero-padded window positions out as keys (matters only when
                the token grid does not divide by window_size).
        """
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
        bad = [i for i in window_blocks if not 0 <= i < depth]
        if bad:
            raise ValueError(f"window_blocks {list(window_blocks)} name blocks outside 0..{depth - 1}")
        grid = img_size // patch_size
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        # Stochastic depth grows linearly with depth (0 for the first block), as in DeiT/Swin.
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio,
                window=window_size if i in window_blocks else 0,
                drop_path=rates[i],
                attention=attention,
                mask_padding=mask_padding,
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def no_weight_decay(self) -> set[str]:
        """Parameters that weight decay leaves alone besides biases and norm scales: the
        position embedding is a table of learned offsets, not a weight to shrink."""
        return {"pos_embed"}

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        # The patch embedding is a linear map of flattened patches: init it like one.
        w = self.patch_embed.weight
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=0.02)
        nn.init.zeros_(self.patch_embed.bias)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> position-embedded tokens [B, H/p, W/p, C]."""
        x = self.patch_embed(images).permute(0, 2, 3, 1)
        pos = self.pos_embed
        if pos.shape[1:3] != x.shape[1:3]:
            pos = F.interpolate(pos.permute(0, 3, 1, 2), size=x.shape[1:3], mode="bicubic", align_corners=False)
            pos = pos.permute(0, 2, 3, 1)
        return x + pos

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.tokens(images)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=(1, 2)))
