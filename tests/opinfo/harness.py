"""One OpInfo case through wafercc: capture, compile to a routed plan, run the plan, compare with eager.

A case is one sample input of one OpInfo op in float32. Its outcome is one of

    pass              every output matches eager PyTorch under the fp32 policy
    unsupported       wafercc refused it with an UnsupportedOpError (reason: the ops it named)
    capture-failure   torch.export could not capture it (not wafercc's op coverage)
    skip              nothing to compare: eager itself fails, or the op returns no tensor
    crash             any other error: a wafercc bug
    wrong             an output differs from eager: the worst kind of wafercc bug

The model of a case takes every tensor of the sample as an input and bakes the other arguments in, so a
sample's index tensors, masks and scalars reach wafercc exactly as torch gives them.
"""

from __future__ import annotations

import itertools
import re
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

STATUSES = ("pass", "unsupported", "capture-failure", "skip", "crash", "wrong")
EXPECTED_FILE = Path(__file__).with_name("expected_unsupported.txt")
# Ops whose result's contents torch leaves undefined (uninitialized memory): only shape and dtype can agree.
UNDEFINED_CONTENTS = {"empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided", "empty_permuted"}
CASE_SECONDS = 120  # a case slower than this is a hang: reported as a crash


@dataclass
class Outcome:
    op: str  # the OpInfo full name (name.variant)
    index: int  # the sample's index
    status: str
    reason: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.op}[{self.index}]: {self.status}" + (f": {self.reason}" if self.reason else "")


def op_db():
    from torch.testing._internal.common_methods_invocations import op_db as db

    return [op for op in db if torch.float32 in op.supported_dtypes("cpu")]


def preload() -> None:
    """Import every module a case uses, by compiling one: workers forked after this all run the same code,
    even if the checkout changes while the sweep runs."""
    from wafercc.numerics import compare_model

    compare_model(CaseModel(torch.relu, _Sample(torch.ones(2, 2))), (torch.ones(2, 2),), bisect=False)


@dataclass
class _Sample:
    input: object
    args: tuple = ()
    kwargs: dict = None

    def __post_init__(self):
        self.kwargs = self.kwargs or {}


def full_name(op) -> str:
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


def samples(op, n: int) -> list:
    torch.manual_seed(0)  # OpInfo's make_tensor draws from torch's generator: the same samples every run
    try:
        return list(itertools.islice(op.sample_inputs("cpu", torch.float32, requires_grad=False), n))
    except Exception:  # an OpInfo generator that cannot make float32 samples on this build
        return []


class CaseModel(torch.nn.Module):
    """``op(input, *args, **kwargs)`` with every tensor of the sample as a forward input."""

    def __init__(self, fn, sample):
        super().__init__()
        self.fn = fn
        leaves, self.spec = torch.utils._pytree.tree_flatten((sample.input, sample.args, sample.kwargs))
        self.slots = [i for i, v in enumerate(leaves) if isinstance(v, torch.Tensor)]
        self.consts = [None if isinstance(v, torch.Tensor) else v for v in leaves]
        self.inputs = tuple(leaves[i] for i in self.slots)

    def forward(self, *tensors):
        leaves = list(self.consts)
        for i, t in zip(self.slots, tensors):
            leaves[i] = t
        x, args, kwargs = torch.utils._pytree.tree_unflatten(leaves, self.spec)
        out = self.fn(x, *args, **kwargs)
        return tuple(t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor))


def run_case(op, sample, index: int) -> Outcome:
    import time

    name = full_name(op)
    t0 = time.perf_counter()
    out = _classify(op, sample, name, index)
    out.seconds = time.perf_counter() - t0
    return out


def _classify(op, sample, name: str, index: int) -> Outcome:
    from wafercc.errors import CaptureError, UnsupportedOpError, WaferError
    from wafercc.numerics import compare_model

    model = CaseModel(op.op, sample)
    try:
        with torch.no_grad():
            eager = model(*[t.clone() for t in model.inputs])
    except Exception as e:
        return Outcome(name, index, "skip", f"eager fails: {type(e).__name__}")
    if not eager:
        return Outcome(name, index, "skip", "returns no tensor")
    if not model.inputs:
        return Outcome(name, index, "skip", "takes no tensor")
    try:
        with _deadline(CASE_SECONDS):
            v = compare_model(model, model.inputs, name=_sym(name), bisect=False)
    except UnsupportedOpError as e:
        return Outcome(name, index, "unsupported", _unsupported_reason(e))
    except CaptureError as e:
        return Outcome(name, index, "capture-failure", str(e).splitlines()[0][:160])
    except WaferError as e:
        return Outcome(name, index, "crash", f"{type(e).__name__}: {_first(str(e))}")
    except Exception as e:
        return Outcome(name, index, "crash", f"{type(e).__name__}: {_first(str(e))} @ {_where(e)}")
    if not v.passed and name.split(".")[0] in UNDEFINED_CONTENTS and not v.reason:
        if all(c.comparison.passed or not c.comparison.reason.startswith(("shape", "dtype")) for c in v.outputs):
            return Outcome(name, index, "pass", "contents undefined in torch: shape and dtype agree")
    if not v.passed:
        bad = [f"{c.name}: {c.comparison.reason}" for c in v.outputs if not c.comparison.passed]
        return Outcome(name, index, "wrong", v.reason or "; ".join(bad))
    return Outcome(name, index, "pass")


def _sym(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _first(msg: str) -> str:
    lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
    return " / ".join(lines[:2])[:300] if lines else ""


def _where(e: Exception) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    mine = [f for f in tb if "/work/" in f.filename or "wafercc" in f.filename or "runtime" in f.filename]
    f = (mine or tb)[-1]
    return f"{Path(f.filename).name}:{f.lineno}"


def _unsupported_reason(e) -> str:
    """The ops named (without locations): the key the expected list and the counts group by."""
    if getattr(e, "items", None):
        return ", ".join(sorted({op for op, _ in e.items}))
    return _first(str(e)).removeprefix("error: ")


class _Timeout(Exception):
    pass


class _deadline:
    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self):
        def ring(*_):
            raise _Timeout(f"case took more than {self.seconds} s")

        self.old = signal.signal(signal.SIGALRM, ring)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)
        return False


# -- the expected-unsupported list -------------------------------------------------------------------


def expected_unsupported() -> dict[str, str]:
    """OpInfo op name -> why wafercc refuses it (the comment after '#')."""
    out = {}
    for line in EXPECTED_FILE.read_text().splitlines():
        body, _, why = line.partition("#")
        name = body.strip()
        if name:
            out[name] = why.strip()
    return out


def problems(outcomes: list[Outcome], expected: dict[str, str]) -> list[str]:
    """What fails the suite: crashes, wrong answers, unsupported ops not on the list, listed ops that now
    pass on every sample (the list may only shrink: take them off)."""
    out = [o.line() for o in outcomes if o.status in ("crash", "wrong")]
    out += [
        o.line() + "  (not in tests/opinfo/expected_unsupported.txt)"
        for o in outcomes
        if o.status == "unsupported" and o.op not in expected
    ]
    by_op: dict[str, set[str]] = {}
    for o in outcomes:
        by_op.setdefault(o.op, set()).add(o.status)
    out += [
        f"{op}: listed as unsupported but now supported on every sample: remove it from "
        "tests/opinfo/expected_unsupported.txt"
        for op, st in by_op.items()
        if op in expected and "unsupported" not in st and st & {"pass"}
    ]
    return out
