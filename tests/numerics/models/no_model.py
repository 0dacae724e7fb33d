"""Not a model file: it defines no `model` nor `get_model()` (`wafercc verify` must exit 2)."""

import torch

example_inputs = (torch.randn(2, 8),)
