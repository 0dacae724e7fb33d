"""The joint forward + backward capture (wafercc/frontend/training.py): tied weights are one weight with one
summed gradient, batch norm's running statistics come back as buffer updates, dropout is refused, and every
gradient is tied to its weight symbol in WIR (train.roles / train.targets)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from wafercc.errors import CaptureError
from wafercc.frontend.training import import_training
from wafercc.ir import parse, print_module
from wafercc.ir.training import result_roles
from wafercc.ops import verify


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.bn = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids, labels):
        return F.cross_entropy(self.head(self.bn(self.emb(ids).mean(1))), labels)


def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 10, (4, 3), generator=g), torch.randint(0, 10, (4,), generator=g)


def test_tied_weight_is_one_symbol_with_one_summed_gradient():
    torch.manual_seed(0)
    model = Tied()
    imported = import_training(model, inputs(), name="tied")
    m = imported.module
    roles = result_roles(m.func())
    grads = [t for r, t in roles if r == "grad"]
    assert grads == ["emb.weight", "bn.weight", "bn.bias"]  # head.weight is emb.weight: no second symbol
    assert "head.weight" not in m.weights
    assert [t for r, t in roles if r == "update"] == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    # the summed gradient is autograd's
    ids, labels = inputs()
    model.zero_grad()
    model(ids, labels).backward()
    import runtime

    weights = {s: src.tensor.numpy() for s, src in imported.weights.items()}
    out = runtime.Interpreter(m, runtime.MemoryStore(weights)).run([ids.numpy(), labels.numpy()]).outputs
    got = dict(zip([t for _, t in roles], out))
    assert torch.allclose(torch.from_numpy(got["emb.weight"]), model.emb.weight.grad, rtol=1e-5, atol=1e-7)


def test_capture_leaves_the_model_and_its_buffers_untouched():
    torch.manual_seed(0)
    model = Tied()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    import_training(model, inputs())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_the_roles_round_trip_through_wir_text():
    m = import_training(Tied(), inputs(), name="tied").module
    text = print_module(m)
    assert 'train.roles = ["loss", "grad", "grad", "grad", "update", "update", "update"]' in text
    assert "train.targets = [none, @emb.weight, @bn.weight, @bn.bias, @bn.running_mean" in text
    again = parse(text)
    verify(again)
    assert print_module(again) == text


def test_dropout_with_p_is_refused_with_how_to_turn_it_off():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1))

    class Loss(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x).sum()

    with pytest.raises(CaptureError, match=r"dropout with p=0.1 at 'net.1' \(Dropout\).*set p=0"):
        import_training(Loss(), (torch.randn(2, 4),))


def test_functional_dropout_is_refused():
    class F1(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return F.dropout(self.fc(x), 0.5, training=True).sum()

    with pytest.raises(CaptureError, match="random numbers.*pass p=0"):
        import_training(F1(), (torch.randn(2, 4),))


def test_a_forward_that_does_not_return_a_scalar_loss_is_refused():
    with pytest.raises(CaptureError, match="one scalar loss"):
        import_training(nn.Linear(4, 3), (torch.randn(2, 4),))
