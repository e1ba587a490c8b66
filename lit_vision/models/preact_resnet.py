"""`--model PreActResNet18`: the CIFAR robustness baselines' network (nets/preact_resnet.py),
trained from scratch; configs/cifar10_*.yaml use it."""

from __future__ import annotations

from torch import nn

from lit_vision.models.classifier import ImageClassifier
from lit_vision.models.registry import register_model
from lit_vision.nets.preact_resnet import PreActResNet


@register_model
class PreActResNet18(ImageClassifier):
    """Pre-activation ResNet-18 with a 3×3 stride-1 stem, for 32-px images (CIFAR)."""

    def build_net(self, **net_args) -> nn.Module:
        return PreActResNet(blocks=(2, 2, 2, 2), **net_args)
