"""Loading a plan fast without changing what it finds (wafercc/ir/plan.py): the route-coverage check's
difference-array sweep finds the hole the cell-by-cell scan found, and a routes list shared by identical layers
(as the route pass shares it) is read once per load and gives the plan reading it twice gives."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from torch import nn

import wafercc
from wafercc.ir.plan import PlanFormatError, _uncovered, load_plan


def _scan(boxes, want):
    """The reference: every cell of the grid the boxes' edges cut ``want`` into, x then y, against every box."""
    x0, y0, x1, y1 = want
    xs = sorted(
        {x0, x1 + 1} | {b[0] for b in boxes if x0 <= b[0] <= x1} | {b[2] + 1 for b in boxes if x0 <= b[2] + 1 <= x1}
    )
    ys = sorted(
        {y0, y1 + 1} | {b[1] for b in boxes if y0 <= b[1] <= y1} | {b[3] + 1 for b in boxes if y0 <= b[3] + 1 <= y1}
    )
    for x in xs[:-1]:
        for y in ys[:-1]:
            if not any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes):
                return (x, y)
    return None


def test_uncovered_finds_the_scans_hole():
    rng = random.Random(7)
    found = 0
    for _ in range(5000):
        x0, y0 = rng.randint(0, 3), rng.randint(0, 3)
        want = (x0, y0, x0 + rng.randint(0, 11), y0 + rng.randint(0, 11))
        boxes = []
        for _ in range(rng.randint(0, 8)):
            a, b = sorted(rng.randint(-2, 18) for _ in range(2))
            c, d = sorted(rng.randint(-2, 18) for _ in range(2))
            boxes.append((a, c, b, d))
        if rng.random() < 0.4:  # a bundle of one-column boxes with some columns missing, as routes are
            boxes += [(x, want[1], x, want[3]) for x in range(want[0], want[2] + 1) if rng.random() < 0.97]
        hole = _uncovered(boxes, want)
        assert hole == _scan(boxes, want), (boxes, want)
        found += hole is None
    assert 0 < found < 5000  # both outcomes were exercised


def test_full_and_empty_cover():
    strips = [(x, 0, x, 511) for x in range(753)]
    assert _uncovered(strips, (0, 0, 752, 511)) is None
    assert _uncovered(strips[:400] + strips[401:], (0, 0, 752, 511)) == (400, 0)
    assert _uncovered([], (2, 3, 5, 9)) == (2, 3)


@pytest.fixture(scope="module")
def deep():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(6)])
    return wafercc.compile(model, (torch.randn(8, 64),), name="deep", target="wse2").module


def _shared_pairs(m):
    layers = list(m.layers.values())
    return [(a, b) for i, a in enumerate(layers) for b in layers[i + 1 :] if a.attrs["routes"] is b.attrs["routes"]]


def test_a_shared_routes_list_loads_as_its_copies(deep):
    assert _shared_pairs(deep), "the route pass no longer shares identical layers' routes"
    unshared = copy.deepcopy(deep)
    for layer in unshared.layers.values():
        layer.attrs["routes"] = copy.deepcopy(layer.attrs["routes"])
    assert not _shared_pairs(unshared)
    assert load_plan(deep) == load_plan(unshared)


def test_a_bad_shared_routes_list_names_the_first_layer_reading_it(deep):
    m = copy.deepcopy(deep)  # deepcopy keeps the sharing
    a, b = _shared_pairs(m)[0]
    a.attrs["routes"][0]["color"] = -1
    assert b.attrs["routes"][0]["color"] == -1
    first = min((a, b), key=lambda layer: list(m.layers).index(layer.name))
    with pytest.raises(PlanFormatError, match=rf"layer @{first.name}: routes\[0\]\.color: expected a non-negative"):
        load_plan(m)


def test_shared_routes_print_and_write_as_their_copies(deep):
    from wafercc.ir import print_module
    from wafercc.mapping.report import format_report, plan_json, plan_views

    unshared = copy.deepcopy(deep)
    for layer in unshared.layers.values():
        layer.attrs["routes"] = copy.deepcopy(layer.attrs["routes"])
    assert print_module(deep) == print_module(unshared)
    (d, typed), (d2, typed2) = plan_views(deep), plan_views(unshared)
    assert d == d2 and typed == typed2
    assert plan_json(deep, d) == plan_json(unshared, d2) == json.dumps(d2, indent=1, sort_keys=True) + "\n"
    assert format_report(typed) == format_report(typed2)
