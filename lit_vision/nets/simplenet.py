"""SimpleCNN: the baseline CNN behind `--model SimpleNet` (365,028 parameters for 100 classes)."""

from __future__ import annotations

from torch import nn

from lit_vision.nets.layers import ActivationName, ConvName, activation_layer, conv_class
from lit_vision.ops.conv import Algorithm


class SimpleCNN(nn.Module):
    """7×7/2 stem + max-pool, two bottleneck stages (1×1, 3×3, 1×1) split by a max-pool,
    global average pool, linear head. No BatchNorm: the baseline that the BatchNorm CNNs of
    nets/customnet.py are compared against."""

    def __init__(
        self,
        num_classes: int = 100,
        conv: ConvName = "torch",
        conv_algorithm: Algorithm = "auto",
        activation: ActivationName = "relu",
    ) -> None:
        """
        Args:
            num_classes: classes of the head.
            conv: "torch" (nn.Conv2d) or "hand_written" (lit_vision.ops.conv; same parameters,
                so weights move freely between the two). "im2col" is its earlier name.
            conv_algorithm: what the hand-written convolution runs: "auto" (per layer: shifted
                GEMMs or im2col on the CPU, implicit-GEMM kernels on CUDA), "im2col", "shifted"
                (stride-1 layers only) or "implicit_gemm" (CUDA, Triton).
            activation: the non-linearity after every convolution: "relu" (the assignment's),
                or a smooth one for adversarial training ("silu", "gelu", "softplus"); same
                parameters whichever, so the choice only changes what the network computes.
        """
        super().__init__()
        Conv = conv_class(conv, conv_algorithm)
        self.features = nn.Sequential(
            Conv(3, 64, kernel_size=7, stride=2, padding=3),
            activation_layer(activation),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            Conv(64, 64, kernel_size=1),
            activation_layer(activation),
            Conv(64, 64, kernel_size=3, padding=1),
            activation_layer(activation),
            Conv(64, 256, kernel_size=1),
            activation_layer(activation),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            Conv(256, 128, kernel_size=1),
            activation_layer(activation),
            Conv(128, 128, kernel_size=3, padding=1),
            activation_layer(activation),
            Conv(128, 512, kernel_size=1),
            activation_layer(activation),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))
