"""Run-time assertions (aten._assert_async, _assert_scalar, sym_constrain_range*) are ``check`` ops: the
compiled model carries them through every pass and the plan, and a failing one is a run-time error that names
the model's source line, never a compile-time rejection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import runtime
import wafercc
from runtime.errors import RuntimeExecutionError
from runtime.store import MemoryStore
from wafercc.ir import parse, print_module


class OneHot(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.one_hot(x, 5)  # brings aten._assert_async.msg twice


@pytest.fixture(scope="module")
def compiled():
    return wafercc.compile(OneHot(), (torch.tensor([1, 2, 3]),))


def run(result, x):
    return runtime.Interpreter(result.module, MemoryStore(result.weights), plan=True).run([x]).outputs


def test_checks_survive_the_pipeline_and_the_text(compiled):
    ops = [op for op in compiled.module.func().ops if op.name == "check"]
    assert len(ops) == 2 and all(op.loc is not None and op.attrs.get("plan.layer") for op in ops)
    assert "Class values must be non-negative" in ops[0].attrs["message"]
    assert parse(print_module(compiled.module)) == compiled.module


def test_passing_checks_cost_nothing_in_the_answer(compiled):
    x = np.array([4, 0, 2])
    np.testing.assert_array_equal(run(compiled, x)[0], torch.nn.functional.one_hot(torch.from_numpy(x), 5).numpy())


@pytest.mark.parametrize("bad, says", [([1, 7, 3], "smaller than num_classes"), ([-1, 0, 0], "non-negative")])
def test_a_failing_check_names_the_source_line(compiled, bad, says):
    with pytest.raises(RuntimeExecutionError) as e:
        run(compiled, np.array(bad))
    msg = str(e.value)
    assert says in msg and "test_checks.py:20" in msg and "'check'" in msg


def test_a_static_check_that_fails_fails_at_run_time_not_compile_time():
    from wafercc.frontend.aten_table import CONVERTERS

    class Ctx:  # the converter's view of a failing _assert_scalar(False, msg)
        emitted = []

        def emit1(self, name, operands, attrs=None, **_):
            self.emitted.append((name, attrs))

        def constant(self, value, dtype):
            return value

    ctx = Ctx()
    CONVERTERS[torch.ops.aten._assert_scalar.default](ctx, False, "u0 >= 2")
    assert ctx.emitted == [("check", {"message": "u0 >= 2"})]
    ctx.emitted.clear()
    CONVERTERS[torch.ops.aten._assert_scalar.default](ctx, True, "holds")
    assert ctx.emitted == []
