"""ResNet-style image classifier (a small ResNet-20-like net for CIFAR-sized images).

Input: (2, 3, 32, 32) float32 images.
Architecture:
  stem:    Conv2d(3->16, 3x3, pad 1) -> BatchNorm2d -> ReLU
  stage 1: 2 basic blocks, 16 channels, 32x32
  stage 2: 2 basic blocks, 32 channels, 16x16 (first block stride 2)
  stage 3: 2 basic blocks, 64 channels,  8x8  (first block stride 2)
           basic block: Conv3x3 -> BN -> ReLU -> Conv3x3 -> BN, + shortcut, ReLU;
           the shortcut is the identity, or Conv1x1(stride 2) -> BN where the shape changes
  head:    AdaptiveAvgPool2d(1) -> flatten -> Linear(64, 10)
Output: (2, 10) class logits.

Exercises: strided convolutions, 1x1 downsample convolutions, many eval-mode batch norms (running
statistics set to non-trivial deterministic values so no BN is an identity), residual adds, global
average pooling.
"""

import torch
from torch import nn

torch.manual_seed(0)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(cout),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, widths: tuple = (16, 32, 64), blocks_per_stage: int = 2, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages = []
        cin = widths[0]
        for i, cout in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(cin, cout, stride))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stages(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _randomize_bn_stats(m: nn.Module, seed: int = 1) -> None:
    # Fresh BatchNorm has mean 0 / var 1 / weight 1 / bias 0, which would make
    # it an identity and hide bugs; give it realistic deterministic statistics.
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            with torch.no_grad():
                mod.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(c, generator=g) + 0.5)
                mod.bias.copy_((torch.rand(c, generator=g) - 0.5) * 0.4)


model = ResNet()
_randomize_bn_stats(model)
model.eval()
example_inputs = (torch.randn(2, 3, 32, 32),)
