"""`--model CustomNet1` / `--model CustomNet2`: the BatchNorm CNNs (nets/customnet.py) as
LightningModules."""

from __future__ import annotations

from torch import nn

from lit_vision.models.classifier import ImageClassifier
from lit_vision.models.registry import register_model
from lit_vision.nets.customnet import BatchNormCNN, FiveBlockCNN


@register_model
class CustomNet1(ImageClassifier):
    """SimpleNet with BatchNorm after every convolution."""

    def build_net(self, **net_args) -> nn.Module:
        return BatchNormCNN(**net_args)


@register_model
class CustomNet2(ImageClassifier):
    """Five-block, 13-convolution CNN with BatchNorm and residual shortcuts."""

    def build_net(self, **net_args) -> nn.Module:
        return FiveBlockCNN(**net_args)
