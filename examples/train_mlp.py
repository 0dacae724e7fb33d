"""Training example: an MLP classifier whose forward returns the cross-entropy loss.

A training model file (docs/models.md, "Training models"): ``model``'s forward takes the inputs and the
targets and returns a scalar loss; ``example_inputs`` are (inputs, targets); the model is in train mode.

    wafercc compile examples/train_mlp.py --train --optimizer sgd --lr 0.1 --momentum 0.9 -o build/train_mlp
    wafercc verify examples/train_mlp.py --train --steps 5 --optimizer adamw --lr 1e-3

Input: 16 flattened 28x28 images (16, 784) float32 and their labels (16,) int64 in [0, 10).
Architecture: Linear(784, 128) -> ReLU -> Linear(128, 64) -> ReLU -> Linear(64, 10); cross-entropy loss.
"""

import torch
from torch import nn
from torch.nn import functional as F

torch.manual_seed(0)


class MLPClassifier(nn.Module):
    def __init__(self, in_features: int = 784, hidden: tuple = (128, 64), num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return F.cross_entropy(self.fc3(x), labels)


model = MLPClassifier().train()
example_inputs = (torch.randn(16, 784), torch.randint(0, 10, (16,)))
