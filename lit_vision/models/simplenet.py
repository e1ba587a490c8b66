"""`--model SimpleNet`: the course's baseline CNN as a LightningModule."""

from __future__ import annotations

from lit_vision.models.classifier import ImageClassifier
from lit_vision.nets.layers import ConvName
from lit_vision.nets.simplenet import SimpleNetwork


class SimpleNet(ImageClassifier):
    """SimpleNet (no BatchNorm, 365,028 parameters for 100 classes)."""

    def __init__(self, num_classes: int = 100, conv: ConvName = "torch", **kwargs) -> None:
        """
        Args:
            num_classes: classes of the head.
            conv: "torch" (nn.Conv2d) or "custom" (the hand-written im2col convolution).
        """
        super().__init__(num_classes=num_classes, **kwargs)
        self.net = SimpleNetwork(num_classes, conv)
