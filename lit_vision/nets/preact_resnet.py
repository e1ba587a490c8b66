"""PreActResNet-18 for 32-px images (He et al. 2016, "Identity Mappings in Deep Residual
Networks"): the network of the CIFAR-10 robustness baselines "Fast is better than free" (Wong,
Rice & Kolter 2020) and "Overfitting in adversarially robust deep learning" (Rice, Wong &
Kolter 2020), as RobustBench lists them.

    3×3 conv 3→64 (stride 1: no stem down-sampling, a 32-px image keeps its grid)
    4 stages of 2 pre-activation blocks, widths 64, 128, 256, 512, strides 1, 2, 2, 2
        block: BN-ReLU, 3×3 conv (stride s), BN-ReLU, 3×3 conv, + shortcut (identity, or a
        1×1 conv of stride s applied to the first BN-ReLU's output when the shape changes)
    BN-ReLU, global average pool, linear.
Any input size works (global pooling); at 32 px the last grid is 4×4.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection reads the pre-activated input, as the original pre-activation design does.
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, num_classes: int = 10, blocks: tuple[int, ...] = (2, 2, 2, 2), width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        layers, cin = [], width
        for stage, count in enumerate(blocks):
            cout = width * 2**stage
            for i in range(count):
                layers.append(PreActBlock(cin, cout, stride=2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
