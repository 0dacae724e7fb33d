"""MobileNetV2-style image classifier built from inverted residual blocks.

Input: (2, 3, 32, 32) float32 images.
Architecture:
  stem:  Conv2d(3->16, 3x3, stride 2, pad 1) -> BN -> Hardswish                  (32x32 -> 16x16)
  blocks (expand ratio t, out channels c, stride s):
         t=1 c=16 s=1    (no expand conv, residual)
         t=4 c=24 s=2    (16x16 -> 8x8)
         t=4 c=24 s=1    (residual)
         t=4 c=32 s=2    (8x8 -> 4x4)
         t=4 c=32 s=1    (residual)
         inverted residual: [Conv1x1 expand -> BN -> ReLU6] ->
                            Conv3x3 depthwise (groups = channels, stride s) -> BN -> ReLU6 ->
                            Conv1x1 project -> BN (linear bottleneck), + input when shapes match
  last:  Conv1x1(32->128) -> BN -> Hardswish
  head:  AdaptiveAvgPool2d(1) -> flatten -> Dropout (identity in eval) -> Linear(128, 10)
Output: (2, 10) class logits.

Exercises: depthwise (grouped) convolutions, strided depthwise convolutions, ReLU6 (hardtanh ->
clamp), hardswish, eval-mode batch norm with non-trivial running statistics, residual adds.
"""

import torch
from torch import nn

torch.manual_seed(0)


def conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type = nn.ReLU6):
    layers = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = cin * expand_ratio
        self.use_residual = stride == 1 and cin == cout
        layers = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(cin, hidden, 1))  # expand
        layers.append(conv_bn_act(hidden, hidden, 3, stride=stride, groups=hidden))  # depthwise
        layers.append(conv_bn_act(hidden, cout, 1, act=None))  # linear project
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    # (expand ratio, out channels, stride)
    CONFIG = [(1, 16, 1), (4, 24, 2), (4, 24, 1), (4, 32, 2), (4, 32, 1)]

    def __init__(self, num_classes: int = 10, stem: int = 16, last: int = 128):
        super().__init__()
        self.stem = conv_bn_act(3, stem, 3, stride=2, act=nn.Hardswish)
        blocks = []
        cin = stem
        for t, c, s in self.CONFIG:
            blocks.append(InvertedResidual(cin, c, s, t))
            cin = c
        self.blocks = nn.Sequential(*blocks)
        self.last = conv_bn_act(cin, last, 1, act=nn.Hardswish)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.blocks(x)
        x = self.last(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


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


model = MobileNetV2()
_randomize_bn_stats(model)
model.eval()
example_inputs = (torch.randn(2, 3, 32, 32),)
