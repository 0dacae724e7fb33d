"""Edge shapes through the whole compiler, one hypothesis property per op family: 0-d tensors, zero-size and
size-1 dims, negative dims. Each example is compiled to a routed plan, run plan-faithfully, and compared
with eager PyTorch under the fp32 policy; an identity or view-only graph compiles to an empty plan."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import wafercc
from wafercc.numerics import compare_model

SETTINGS = settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DIM = st.sampled_from([0, 1, 2, 3])
SHAPE = st.lists(DIM, min_size=0, max_size=3).map(tuple)


class Fn(torch.nn.Module):
    def __init__(self, fn, *modules):
        super().__init__()
        self.fn = fn
        self.mods = torch.nn.ModuleList(modules)

    def forward(self, *xs):
        return self.fn(*xs, *self.mods)


def agrees(fn, *inputs, modules=()):
    """Compile and compare; an example eager PyTorch itself rejects is not an example."""
    model = Fn(fn, *modules)
    try:
        with torch.no_grad():
            model(*inputs)
    except (RuntimeError, IndexError, ValueError):
        assume(False)
    v = compare_model(model, inputs, bisect=False)
    assert v.passed, [c.comparison.reason for c in v.outputs] + [v.reason]
    return v


def rand(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


def broadcastable(shape):
    """A shape that broadcasts against ``shape``: a suffix of it with some dims set to 1."""
    return st.integers(0, len(shape)).flatmap(
        lambda k: st.lists(st.booleans(), min_size=k, max_size=k).map(
            lambda ones: tuple(1 if o else s for o, s in zip(ones, shape[len(shape) - k :]))
        )
    )


@SETTINGS
@given(SHAPE.flatmap(lambda s: st.tuples(st.just(s), broadcastable(s))))
def test_elementwise_broadcasts(shapes):
    a, b = shapes
    agrees(lambda x, y: torch.relu(x * 2 + y) - torch.sigmoid(y), rand(a), rand(b, 1))


@SETTINGS
@given(SHAPE, st.data())
def test_reductions_any_dim(shape, data):
    rank = len(shape)
    dim = data.draw(st.integers(-max(rank, 1), max(rank, 1) - 1))
    keep = data.draw(st.booleans())
    agrees(
        lambda x: (
            x.sum(dim, keepdim=keep),
            x.mean(dim, keepdim=keep),
            x.argmax(dim, keepdim=keep) if x.numel() else x.sum(dim),
        ),
        rand(shape),
    )


@SETTINGS
@given(SHAPE, st.data())
def test_scans_and_softmax(shape, data):
    rank = len(shape)
    dim = data.draw(st.integers(-max(rank, 1), max(rank, 1) - 1))
    agrees(lambda x: (x.cumsum(dim), torch.softmax(x, dim), torch.log_softmax(x, dim)), rand(shape))


@SETTINGS
@given(st.sampled_from([0, 1, 3]), st.sampled_from([0, 1, 3]), st.sampled_from([0, 1, 3]))
def test_matmul_with_empty_dims(m, k, n):
    torch.manual_seed(0)
    agrees(lambda x, lin: lin(x), rand((m, k)), modules=(torch.nn.Linear(k, n),))


@SETTINGS
@given(st.sampled_from([0, 1, 2]), st.sampled_from([0, 1, 3]), st.sampled_from([0, 1, 3]), st.sampled_from([0, 2]))
def test_batched_matmul_with_empty_dims(b, m, k, n):
    agrees(lambda x, y: torch.bmm(x, y), rand((b, m, k)), rand((b, k, n), 1))


@SETTINGS
@given(SHAPE, st.data())
def test_movement(shape, data):
    rank = len(shape)
    perm = data.draw(st.permutations(range(rank)))
    d = data.draw(st.integers(-rank - 1, rank))
    agrees(
        lambda x: (
            x.permute(tuple(perm)).unsqueeze(d).squeeze(d),
            torch.flip(x, [0]) if rank else x,
            torch.cat([x, x], 0) if rank else x.reshape(1),
        ),
        rand(shape),
    )


@SETTINGS
@given(SHAPE.filter(lambda s: len(s) >= 1), st.data())
def test_index_family(shape, data):
    rank = len(shape)
    dim = data.draw(st.integers(-rank, rank - 1))
    n = shape[dim]
    k = data.draw(st.integers(0, 3))
    idx = torch.randint(0, max(n, 1), (k if n else 0,))
    agrees(lambda x, i: torch.index_select(x, dim, i), rand(shape), idx)


@pytest.mark.parametrize(
    "fn",
    [lambda x: x.clone(), lambda x: x.view(x.shape), lambda x: x.detach(), lambda x: x.contiguous()],
    ids=["clone", "same-view", "detach", "contiguous"],
)
def test_identity_compiles_to_an_empty_plan(fn):
    x = rand((2, 3))
    r = wafercc.compile(Fn(fn), (x,))
    assert not r.module.layers and not r.module.func().ops
    agrees(fn, x)


def test_zero_d_everywhere():
    x = torch.tensor(1.5)
    agrees(
        lambda x: (
            x.sum(0),
            x.argmax(0),
            x.amax(-1),
            torch.index_select(x, 0, torch.tensor([0])),
            torch.squeeze(x, ()),
            x.unsqueeze(0),
            x.cumsum(0),
            torch.softmax(x, 0),
        ),
        x,
    )
