"""wafercc/ir/jsontext.py writes exactly json.dumps(obj, indent=N, sort_keys=...)'s text: random nested values
of every JSON type (and of types json handles by its own rules), and a mapped plan's plan.json."""

from __future__ import annotations

import json
import math
import random
from enum import IntEnum

import pytest

from wafercc.ir.jsontext import dumps


class Small(IntEnum):
    ONE = 1


def _value(rng: random.Random, depth: int):
    kind = rng.randrange(12 if depth < 5 else 8)
    if kind == 0:
        return rng.choice(["", "a", "ümlaut", 'quote " and \\ slash', "line\nbreak\ttab", "\x00\x1f", "日本", "😀"])
    if kind == 1:
        return rng.randint(-(10**20), 10**20)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1e-300, 1.5, -2.25e17, math.pi, math.inf, -math.inf, math.nan, 1e16])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return Small.ONE
    if kind == 5:
        return rng.randint(0, 5)
    if kind in (6, 7):
        return rng.random() * 10 ** rng.randint(-5, 5)
    if kind in (8, 9):
        seq = [_value(rng, depth + 1) for _ in range(rng.randrange(5))]
        return tuple(seq) if rng.random() < 0.3 else seq
    d = {
        rng.choice(["b", "a", "z", "layer", "Δ", "k1", "k10", "k2"]) + str(i): _value(rng, depth + 1)
        for i in range(rng.randrange(5))
    }
    if rng.random() < 0.1:
        d[3] = "int key"  # json converts it; jsontext hands such a dict to json
    if rng.random() < 0.1:
        d = {k: 1 for k in d if isinstance(k, str)} | {"list of numbers": [1, 2.5, -3, True, None]}
    return d


@pytest.mark.parametrize("indent", [1, 2, 4])
@pytest.mark.parametrize("sort_keys", [True, False])
def test_same_text_as_json_dumps(indent, sort_keys):
    rng = random.Random(indent * 10 + sort_keys)
    for _ in range(400):
        v = _value(rng, 0)
        try:
            want = json.dumps(v, indent=indent, sort_keys=sort_keys)
        except TypeError:  # a dict mixing int and str keys cannot be sorted: json refuses, and so must we
            with pytest.raises(TypeError):
                dumps(v, indent=indent, sort_keys=sort_keys)
            continue
        assert dumps(v, indent=indent, sort_keys=sort_keys) == want


def test_empty_containers_and_top_level_scalars():
    for v in ({}, [], (), {"a": {}}, {"a": []}, [[], {}], "s", 1, 1.0, None, True, [[[1]]]):
        assert dumps(v) == json.dumps(v, indent=1, sort_keys=True)


def test_other_types_are_refused_as_json_refuses_them():
    with pytest.raises(TypeError):
        dumps({"a": [object()]})


def test_plan_json_of_a_mapped_model(tmp_path):
    import torch

    import wafercc
    from wafercc.mapping.report import plan_dict

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 16))
    r = wafercc.compile(model, (torch.randn(4, 64),), name="mlp", target="wse2")
    plan = plan_dict(r.module)
    assert len(plan["layers"]) >= 2
    assert dumps(plan) == json.dumps(plan, indent=1, sort_keys=True)


def test_a_list_met_again_is_written_as_the_first_time():
    shared = [{"box": [0, 1, 2, 3], "flow": "reduce"} for _ in range(9)]
    short = [1, 2, 3]
    v = {"layers": [{"routes": shared, "s": short}, {"routes": shared, "s": short}], "deeper": [[[shared]]]}
    for indent in (1, 2):
        assert dumps(v, indent=indent) == json.dumps(v, indent=indent, sort_keys=True)
