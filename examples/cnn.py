"""Small residual CNN image classifier (CIFAR-sized).

Input: (2, 3, 32, 32) float32 images.
Architecture:
  stem:   Conv2d(3->16, 3x3, pad 1) -> BatchNorm2d -> ReLU
  block:  residual basic block on 16 channels
          (Conv3x3 -> BN -> ReLU -> Conv3x3 -> BN, + identity, ReLU)
  down:   Conv2d(16->32, 3x3, stride 2, pad 1) -> BN -> ReLU        (32x32 -> 16x16)
  pool:   MaxPool2d(2)                                              (16x16 -> 8x8)
  head:   AdaptiveAvgPool2d(1) -> flatten -> Linear(32, 10)
Output: (2, 10) class logits. BatchNorm runs in eval mode (uses running stats),
whose statistics are set to non-trivial deterministic values.
"""

import torch
from torch import nn

torch.manual_seed(0)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
    )


class BasicBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv_bn(channels, channels)
        self.conv2 = conv_bn(channels, channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        out = self.conv2(out)
        return self.relu(out + x)


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.block = BasicBlock(16)
        self.down = nn.Sequential(conv_bn(16, 32, stride=2), nn.ReLU())
        self.pool = nn.MaxPool2d(kernel_size=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.block(x)
        x = self.down(x)
        x = self.pool(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def _randomize_bn_stats(m: nn.Module) -> None:
    # Fresh BatchNorm has mean 0 / var 1 / weight 1 / bias 0, which would make
    # it an identity and hide bugs; give it realistic deterministic statistics.
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)


model = SmallCNN()
_randomize_bn_stats(model)
model.eval()
example_inputs = (torch.randn(2, 3, 32, 32),)
