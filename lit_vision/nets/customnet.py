"""The two BatchNorm CNNs behind `--model CustomNet1` and `--model CustomNet2`.

BatchNormCNN (CustomNet1) — SimpleCNN's blocks with BatchNorm after every convolution:
    7×7/2 conv-BN-ReLU, max-pool, [1×1, 3×3, 1×1 → 256], max-pool, [1×1, 3×3, 1×1 → 512],
    global average pool, linear.

FiveBlockCNN (CustomNet2) — deeper, five blocks, every convolution 3×3 + BN + ReLU:
    block 1: one conv 3→64 at full resolution, then the network's single max-pool (3×3/2)
    blocks 2–5: conv (→ C), conv stride 2, conv; C = 64, 128, 256, 512
    global average pool, linear.
    For a 128×128 image the grid goes 128 → 64 (pool) → 32 → 16 → 8 → 4.

    The max-pool follows the first convolution (block 1), as in ResNet's stem: pooling raw
    RGB pixels before any learned filter would throw away three quarters of the input.
    With `residual=True` (default) blocks 2–5 add a shortcut around their three
    convolutions (1×1 stride-2 conv + BN, since every block halves the grid and most change
    width), and each block's last BN starts at zero so a block starts as its shortcut.

`conv` picks nn.Conv2d ("torch") or the hand-written convolution ("hand_written", running `conv_algorithm`).
Convolutions followed by BatchNorm carry no bias (BN's shift makes it redundant).
"""

from __future__ import annotations

from torch import nn

from lit_vision.nets.layers import ConvName, conv_class
from lit_vision.ops.conv import Algorithm


def conv_bn_relu(Conv, cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        Conv(cin, cout, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class BatchNormCNN(nn.Module):
    """SimpleCNN + BatchNorm after every convolution (366,244 parameters for 100 classes)."""

    def __init__(self, num_classes: int = 100, conv: ConvName = "torch", conv_algorithm: Algorithm = "auto") -> None:
        """
        Args:
            num_classes: classes of the head.
            conv: "torch" (nn.Conv2d) or "hand_written" (lit_vision.ops.conv; same parameters,
                so weights move freely between the two). "im2col" is its earlier name.
            conv_algorithm: what the hand-written convolution runs: "auto" (per layer: shifted
                GEMMs or im2col on the CPU, implicit-GEMM kernels on CUDA), "im2col", "shifted"
                (stride-1 layers only) or "implicit_gemm" (CUDA, Triton).
        """
        super().__init__()
        Conv = conv_class(conv, conv_algorithm)
        self.features = nn.Sequential(
            *conv_bn_relu(Conv, 3, 64, 7, stride=2),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            *conv_bn_relu(Conv, 64, 64, 1),
            *conv_bn_relu(Conv, 64, 64, 3),
            *conv_bn_relu(Conv, 64, 256, 1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            *conv_bn_relu(Conv, 256, 128, 1),
            *conv_bn_relu(Conv, 128, 128, 3),
            *conv_bn_relu(Conv, 128, 512, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


class DownBlock(nn.Module):
    """conv(cin→cout) – conv(stride 2) – conv, each 3×3 + BN (+ ReLU), with an optional
    projection shortcut added before the last ReLU."""

    def __init__(self, Conv, cin: int, cout: int, residual: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn_relu(Conv, cin, cout, 3),
            *conv_bn_relu(Conv, cout, cout, 3, stride=2),
            *conv_bn_relu(Conv, cout, cout, 3, relu=False),
        )
        self.shortcut = None
        if residual:
            self.shortcut = nn.Sequential(*conv_bn_relu(Conv, cin, cout, 1, stride=2, relu=False))
            # Zero-init the body's last BN scale: the block starts as its shortcut, which
            # keeps the signal's scale steady through depth at initialisation.
            nn.init.zeros_(self.body[-1].weight)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.body(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


class FiveBlockCNN(nn.Module):
    """Five-block CNN, 13 convolutions (8,088,996 parameters with residual shortcuts,
    7,910,948 without, for 100 classes)."""

    def __init__(
        self, num_classes: int = 100, conv: ConvName = "torch", residual: bool = True, conv_algorithm: Algorithm = "auto"
    ) -> None:
        """
        Args:
            num_classes: classes of the head.
            conv: "torch" (nn.Conv2d) or "hand_written" (lit_vision.ops.conv; same parameters,
                so weights move freely between the two). "im2col" is its earlier name.
            conv_algorithm: what the hand-written convolution runs: "auto" (per layer: shifted
                GEMMs or im2col on the CPU, implicit-GEMM kernels on CUDA), "im2col", "shifted"
                (stride-1 layers only) or "implicit_gemm" (CUDA, Triton).
            residual: add a projection shortcut around each of blocks 2–5 (ResNet-style);
                false gives the plain 13-convolution stack.
        """
        super().__init__()
        Conv = conv_class(conv, conv_algorithm)
        self.stem = nn.Sequential(
            *conv_bn_relu(Conv, 3, 64, 3),  # block 1
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        widths = [64, 64, 128, 256, 512]
        self.blocks = nn.Sequential(
            *(DownBlock(Conv, widths[i], widths[i + 1], residual) for i in range(4))  # blocks 2–5
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(512, num_classes)
        for m in self.modules():
            # Any convolution kernel (nn.Conv2d or the hand-written one): He init for ReLU nets.
            if not isinstance(m, nn.BatchNorm2d) and getattr(m, "weight", None) is not None and m.weight.ndim == 4:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.head(self.pool(self.blocks(self.stem(x))).flatten(1))
