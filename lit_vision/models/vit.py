"""`--model ViT`: the Vision Transformer with local (windowed) self-attention
(nets/vit.py) as a LightningModule.

The network's defaults are the 1.96M-parameter patch-16 model; configs/vit.yaml changes
some of them (patch 8, learning rate, label smoothing): see that file's header for what and why.
"""

from __future__ import annotations

from torch import nn

from lit_vision.models.classifier import ImageClassifier
from lit_vision.models.registry import register_model
from lit_vision.nets.vit import VisionTransformer


@register_model
class ViT(ImageClassifier):
    """Vision Transformer with windowed attention in some blocks."""

    def build_net(self, **net_args) -> nn.Module:
        return VisionTransformer(**net_args)
