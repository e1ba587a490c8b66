"""`--model ViT`: Vision Transformer with local (windowed) self-attention.

The class defaults are the seed's architecture (patch 16, 1.96M parameters); the recipe
in configs/vit.yaml changes some of them (patch 8, lower learning rate, label smoothing):
see that file's header for what and why.
"""

from __future__ import annotations

from lit_vision.models.classifier import ImageClassifier
from lit_vision.nets.vit import VisionTransformer
from lit_vision.ops.attention import AttentionImpl


class ViT(ImageClassifier):
    """ViT with windowed attention in some blocks (1,959,076 parameters by default)."""

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
        window_blocks: list[int] = [0, 2],  # noqa: B006 — never mutated; a list reads plainly in YAML
        drop_path: float = 0.1,
        attention: AttentionImpl = "manual",
        mask_padding: bool = True,
        **kwargs,
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
        super().__init__(num_classes=num_classes, **kwargs)
        self.net = VisionTransformer(
            num_classes=num_classes,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            window_size=window_size,
            window_blocks=tuple(window_blocks),
            drop_path=drop_path,
            attention=attention,
            mask_padding=mask_padding,
        )

    def parameter_groups(self) -> list[dict]:
        """As the base class, and no weight decay on the position embedding either."""
        decay, no_decay = [], []
        for name, param in self.net.named_parameters():
            if param.requires_grad:
                (decay if param.ndim > 1 and "pos_embed" not in name else no_decay).append(param)
        return [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
