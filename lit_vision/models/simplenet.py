"""`--model SimpleNet`: the baseline CNN (nets/simplenet.py) as a LightningModule."""

from __future__ import annotations

from torch import nn

from lit_vision.models.classifier import ImageClassifier
from lit_vision.models.registry import register_model
from lit_vision.nets.simplenet import SimpleCNN


@register_model
class SimpleNet(ImageClassifier):
    """Baseline CNN without BatchNorm: 7×7 stem, two bottleneck stages, linear head."""

    def build_net(self, **net_args) -> nn.Module:
        return SimpleCNN(**net_args)
