"""Training through the backend: AOTAutograd's forward and backward graphs both run in the reference runtime;
loss.backward() and torch.optim work unchanged, and a few steps match eager autograd within fp32's policy."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from wafercc.ir import WaferError


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)  # before BN a bias has zero gradient
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)


def mlp():
    return nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.Linear(32, 32), nn.Tanh(), nn.LayerNorm(32), nn.Linear(32, 3))


def train(model, opt_cls, batches, steps: int, **opt_args) -> list[float]:
    opt = opt_cls(model.parameters(), **opt_args)
    losses = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def assert_same_training(make, shape, classes, opt_cls, steps=4, **opt_args):
    torch.manual_seed(0)
    eager = make()
    ours = copy.deepcopy(eager)
    batches = [(torch.randn(*shape), torch.randint(0, classes, (shape[0],))) for _ in range(2)]
    want = train(eager, opt_cls, batches, steps, **opt_args)
    got = train(torch.compile(ours, backend="wafercc"), opt_cls, batches, steps, **opt_args)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    for (name, p), q in zip(eager.state_dict().items(), ours.state_dict().values()):
        if p.dtype.is_floating_point:
            scale = max(1.0, float(p.abs().max()))
            assert (p - q).abs().max() <= 1e-4 * scale, name
        else:
            assert torch.equal(p, q), name  # batch norm's step counter


def test_mlp_with_sgd_matches_eager():
    assert_same_training(mlp, (6, 12), 3, torch.optim.SGD, lr=0.1, momentum=0.9)


def test_mlp_with_adamw_matches_eager():
    assert_same_training(mlp, (6, 12), 3, torch.optim.AdamW, lr=1e-2)


def test_cnn_with_adamw_matches_eager():
    """conv (grouped, strided), training-mode batch norm (its running stats come back as outputs), max and
    adaptive pooling: their backward ops decompose into ops wafercc imports."""
    assert_same_training(SmallCNN, (2, 3, 8, 8), 5, torch.optim.AdamW, steps=3, lr=1e-2)


def test_gradients_equal_eager_autograd():
    torch.manual_seed(0)
    eager = SmallCNN()
    ours = copy.deepcopy(eager)
    x = torch.randn(2, 3, 8, 8)
    xe, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager(xe).square().sum().backward()
    torch.compile(ours, backend="wafercc")(xo).square().sum().backward()
    for (name, p), q in zip(eager.named_parameters(), ours.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5), name
    assert torch.allclose(xe.grad, xo.grad, rtol=1e-4, atol=1e-5)


def test_the_loss_inside_the_compiled_function_with_check():
    """The loss computed in the graph (a 0-d output), the forward and backward graphs compared with eager
    on every call (check=True)."""
    torch.manual_seed(0)
    eager = mlp()
    ours = copy.deepcopy(eager)

    def loss_fn(model, x, y):
        out = model(x)
        return nn.functional.cross_entropy(out, y) + 0.1 * nn.functional.mse_loss(out, torch.zeros_like(out))

    compiled = torch.compile(loss_fn, backend="wafercc", options={"check": True})
    x, y = torch.randn(6, 12), torch.randint(0, 3, (6,))
    got, want = compiled(ours, x, y), loss_fn(eager, x, y)
    assert got.shape == () and torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    got.backward()
    want.backward()
    for (name, p), q in zip(eager.named_parameters(), ours.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), name


def test_transformer_block_gradients_equal_eager(example_models):
    """Attention, softmax, layer norm and GELU backward, through AOTAutograd's decompositions."""
    model, (x,) = example_models["transformer_block"]
    eager = copy.deepcopy(model).train()
    ours = copy.deepcopy(model).train()
    eager(x).square().mean().backward()
    torch.compile(ours, backend="wafercc")(x).square().mean().backward()
    for (name, p), q in zip(eager.named_parameters(), ours.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7), name


def test_dropout_in_training_is_refused_not_approximated():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1)).train()
    compiled = torch.compile(model, backend="wafercc")
    with pytest.raises(WaferError, match="aten.native_dropout .*random numbers"):
        compiled(torch.randn(2, 4))
    assert compiled.eval()(torch.randn(2, 4)).shape == (2, 4)  # eval: dropout is the identity
