"""`--model CustomNet1` / `--model CustomNet2`: the course's improved CNNs as LightningModules."""

from __future__ import annotations

from lit_vision.models.classifier import ImageClassifier
from lit_vision.nets.customnet import CustomNetwork1, CustomNetwork2
from lit_vision.nets.layers import ConvName


class CustomNet1(ImageClassifier):
    """SimpleNet with BatchNorm after every convolution (366,244 parameters for 100 classes)."""

    def __init__(self, num_classes: int = 100, conv: ConvName = "torch", **kwargs) -> None:
        """
        Args:
            num_classes: classes of the head.
            conv: "torch" (nn.Conv2d) or "custom" (the hand-written im2col convolution).
        """
        super().__init__(num_classes=num_classes, **kwargs)
        self.net = CustomNetwork1(num_classes, conv)


class CustomNet2(ImageClassifier):
    """Five-block, 13-convolution CNN with BatchNorm (8.09M parameters for 100 classes)."""

    def __init__(self, num_classes: int = 100, conv: ConvName = "torch", residual: bool = True, **kwargs) -> None:
        """
        Args:
            num_classes: classes of the head.
            conv: "torch" (nn.Conv2d) or "custom" (the hand-written im2col convolution).
            residual: add a projection shortcut around each of blocks 2–5 (ResNet-style);
                false gives the plain 13-convolution stack.
        """
        super().__init__(num_classes=num_classes, **kwargs)
        self.net = CustomNetwork2(num_classes, conv, residual)
