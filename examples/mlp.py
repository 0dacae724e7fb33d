"""Three-layer MLP classifier (MNIST-sized).

Input: a batch of 8 flattened 28x28 images, shape (8, 784), float32.
Architecture: Linear(784, 256) -> ReLU -> Linear(256, 128) -> ReLU -> Linear(128, 10).
Output: (8, 10) class logits.
"""

import torch
from torch import nn

torch.manual_seed(0)


class MLP(nn.Module):
    def __init__(self, in_features: int = 784, hidden: tuple = (256, 128), num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


model = MLP().eval()
example_inputs = (torch.randn(8, 784),)
