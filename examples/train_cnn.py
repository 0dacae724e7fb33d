"""Training example: a small CNN with batch norm, trained on batch statistics.

In train mode batch norm normalizes with the batch's own mean and variance and updates its running
statistics; the joint graph returns their new values and the training store keeps them (they are buffers,
not parameters: the optimizer never touches them).

    wafercc verify examples/train_cnn.py --train --steps 3 --optimizer sgd --lr 0.05 --momentum 0.9

Input: (4, 3, 16, 16) float32 images and labels (4,) int64 in [0, 10).
Architecture: Conv3x3(3->8) -> BN -> ReLU -> Conv3x3(8->16, stride 2) -> BN -> ReLU -> MaxPool2d(2)
              -> AdaptiveAvgPool2d(1) -> Linear(16, 10); cross-entropy loss.
"""

import torch
from torch import nn
from torch.nn import functional as F

torch.manual_seed(0)


class BNClassifier(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)  # a bias before batch norm has zero gradient
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return F.cross_entropy(self.head(x), labels)


model = BNClassifier().train()
example_inputs = (torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,)))
