"""SimpleNet, the course's baseline CNN (365,028 parameters for 100 classes)."""

from __future__ import annotations

from torch import nn

from lit_vision.nets.layers import conv_class


class SimpleNetwork(nn.Module):
    """7×7/2 stem + max-pool, two bottleneck stages (1×1, 3×3, 1×1) split by a max-pool,
    global average pool, linear head. No BatchNorm: this is the seed's net as it was.

    `conv` chooses nn.Conv2d ("torch") or the hand-written im2col convolution ("custom");
    both have the same parameters, so weights move freely between them.
    """

    def __init__(self, num_classes: int = 100, conv: str = "torch") -> None:
        super().__init__()
        Conv = conv_class(conv)
        self.features = nn.Sequential(
            Conv(3, 64, kernel_size=7, stride=2, padding=3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            Conv(64, 64, kernel_size=1),
            nn.ReLU(inplace=True),
            Conv(64, 64, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            Conv(64, 256, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            Conv(256, 128, kernel_size=1),
            nn.ReLU(inplace=True),
            Conv(128, 128, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            Conv(128, 512, kernel_size=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))
