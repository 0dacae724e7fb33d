"""Import a captured core-ATen graph into graph-level WIR.

One pass over the FX nodes. Each ``call_function`` node goes through the ATen table
(``aten_table.CONVERTERS``) which emits WIR ops through ``Ctx``. Every emitted op's result type comes
from the op table's own rule and is checked against the type torch recorded for the node, so a
disagreement between wafercc's op semantics and torch's is found at import, not at run time.

Weights become ``weight.get`` ops placed just before their first use, in program order: the order in
which the wafer would stream them.
"""

from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass, field

import torch
import torch.fx

from wafercc.errors import UnsupportedOpError
from wafercc.ir import Func, Loc, Module, Op, SymbolRef, Value
from wafercc.ops import OPS

from .aten_table import CONVERTERS, IGNORED, REFUSED
from .capture import Captured, WeightSource
from .context import TORCH_DTYPES, Ctx, ImportBug, sanitize, tensor_type


@dataclass
class ImportResult:
    module: Module
    weights: dict[str, WeightSource]  # WIR symbol name -> source tensor, in declaration order
    op_counts: dict[str, int]  # ATen overload -> count, for coverage reports
    # FX node name -> the WIR value(s) it became (a list for multi-result nodes; None where ATen's result has
    # no WIR counterpart). Bisection pairs torch's intermediate values with the runtime's through it.
    node_values: dict[str, object] = field(default_factory=dict)


def symbol_name(fqn: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.$\-]", "_", fqn) or "_"


# -- locations ------------------------------------------------------------------------------------

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def location(node: torch.fx.Node, cwd: str) -> Loc | None:
    """The innermost frame of the node's stack trace outside torch: the model line that made the op."""
    trace = node.meta.get("stack_trace")
    if not trace:
        return None
    best = None
    for path, line in _FRAME.findall(trace):
        p = path.replace("\\", "/")
        if "/torch/" in p or p.startswith("<"):
            continue
        best = (path, int(line))
    if best is None:
        return None
    return Loc(_display_path(best[0], cwd), best[1])


def _display_path(path: str, cwd: str) -> str:
    p = path.replace("\\", "/")
    marker = "/site-packages/"
    if marker in p:  # library code (transformers...): the path inside the package reads the same everywhere
        return p.split(marker, 1)[1]
    try:
        rel = os.path.relpath(path, cwd)
    except ValueError:
        return p
    return p if rel.startswith("..") else rel.replace("\\", "/")


# -- the import -----------------------------------------------------------------------------------


def unsupported_ops(captured: Captured, cwd: str) -> list[tuple[str, str]]:
    """Every node wafercc cannot import, as (op, location) pairs in graph order."""

    out = []
    for n in captured.graph.nodes:
        if n.op != "call_function":
            continue
        if n.target in CONVERTERS or n.target in IGNORED or n.target is operator.getitem:
            problem = _dtype_problem(n)
            if problem:
                out.append((f"{target_name(n.target)} on {problem}", _loc_text(n, cwd)))
            continue
        why = REFUSED.get(n.target)  # a reason the user can act on: data-dependent, complex, random
        out.append((target_name(n.target) + (f" ({why})" if why else ""), _loc_text(n, cwd)))
    return out


def _dtype_problem(n: torch.fx.Node) -> str | None:
    vals = n.meta.get("val")
    for v in vals if isinstance(vals, (list, tuple)) else [vals]:
        if isinstance(v, torch.Tensor) and v.dtype not in TORCH_DTYPES:
            return f"dtype {v.dtype}" + (" (complex numbers are not supported)" if v.dtype.is_complex else "")
    return None


def _loc_text(n: torch.fx.Node, cwd: str) -> str:
    loc = location(n, cwd)
    return str(loc) if loc else "(no source location)"


def target_name(t) -> str:
    if isinstance(t, torch._ops.OpOverload):
        name = t._schema.name.replace("aten::", "aten.")
        return name + ("" if t._overloadname == "default" else f".{t._overloadname}")
    return getattr(t, "__name__", str(t))


def import_graph(
    captured: Captured, name: str = "model", source: str | None = None, cwd: str | None = None
) -> ImportResult:
    """WIR for a captured graph: one ``forward`` function whose ops follow the graph's nodes; each weight is
    streamed in (``weight.get``) where it is first used."""
    cwd = cwd or os.getcwd()
    bad = unsupported_ops(captured, cwd)
    if bad:
        raise UnsupportedOpError(_unsupported_message(bad, _why_undecomposed(captured)), bad)

    module = Module(name=sanitize(name) or "model", attrs={"source": source} if source else {})
    used: set[str] = set()
    args = _import_args(captured, used)
    func = Func(name="forward", args=args)
    module.funcs.append(func)
    ctx = Ctx(func, used)
    env: dict[torch.fx.Node, object] = dict(zip(captured.inputs, args))
    weights: dict[str, WeightSource] = {}
    pending_weights = dict(captured.weights)
    counts: dict[str, int] = {}
    node_values: dict[str, object] = {}

    def value_of(a):
        if isinstance(a, torch.fx.Node):
            if a in pending_weights:  # first use: stream the weight in here
                env[a] = _emit_weight(ctx, module, weights, a, pending_weights.pop(a))
            return env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(value_of(x) for x in a)
        return a

    for n in captured.graph.nodes:
        if n.op != "call_function":
            continue
        ctx.node, ctx.loc = n, location(n, cwd)
        if n.target is operator.getitem:
            src, idx = n.args
            env[n] = node_values[n.name] = value_of(src)[idx]
            continue
        counts[target_name(n.target)] = counts.get(target_name(n.target), 0) + 1
        if n.target in IGNORED:
            continue
        a = value_of(n.args)
        kw = {k: value_of(v) for k, v in n.kwargs.items()}
        result = CONVERTERS[n.target](ctx, *a, **kw)
        _check_against_torch(ctx, n, result)
        env[n] = node_values[n.name] = result
    ctx.node, ctx.loc = None, None
    func.returns = [_returned(o, value_of) for o in captured.outputs]
    return ImportResult(module, weights, counts, node_values)


def _import_args(captured: Captured, used: set[str]) -> list[Value]:
    """The function's arguments, one per graph input, named as the user's inputs (their names go in ``used``)."""
    args = []
    for i, n in enumerate(captured.inputs):
        val = n.meta.get("val")
        if not isinstance(val, torch.Tensor) or val.dtype not in TORCH_DTYPES:
            raise UnsupportedOpError(f"input '{n.name}' is not a tensor of a supported dtype ({val!r})")
        arg_name = sanitize(captured.input_names[i] if i < len(captured.input_names) else n.name)
        used.add(arg_name)
        args.append(Value(arg_name, tensor_type(val)))
    return args


def _returned(o, value_of) -> Value:
    v = value_of(o) if isinstance(o, torch.fx.Node) else None
    if not isinstance(v, Value):
        raise UnsupportedOpError(f"the model returns {o!r}, which is not a tensor; wafercc needs tensor outputs")
    return v


def _emit_weight(ctx: Ctx, module: Module, weights: dict, node: torch.fx.Node, src: WeightSource) -> Value:
    if src.tensor.dtype not in TORCH_DTYPES:
        raise UnsupportedOpError(f"weight '{src.name}' has dtype {src.tensor.dtype}, which wafercc does not support")
    sym = symbol_name(src.name)
    while sym in module.weights:
        sym += "_"
    module.add_weight(sym, tensor_type(src.tensor), kind=src.kind)
    weights[sym] = src
    # The result type is the weight's own type (the op table resolves symbols only against a module).
    op = Op(
        "weight.get",
        [],
        [module.weights[sym].type],
        {"symbol": SymbolRef(sym)},
        None,
        [ctx.fresh("p_" + sym.replace(".", "_"))],
    )
    ctx.func.ops.append(op)
    return op.result


def _check_against_torch(ctx: Ctx, n: torch.fx.Node, result) -> None:
    val = n.meta.get("val")
    if val is None:
        return
    vals = list(val) if isinstance(val, (list, tuple)) else [val]
    res = list(result) if isinstance(result, (list, tuple)) else [result]
    for v, r in zip(vals, res):
        if r is None or not isinstance(v, torch.Tensor):
            continue
        want = tensor_type(v)
        if r.type != want:
            raise ImportBug(f"wafercc bug: {ctx._where()} imports as {r.type}, torch says {want}")


def _why_undecomposed(captured: Captured) -> dict[str, str]:
    """Display name of an op (as in the error) -> why capture could not decompose it."""
    out = {}
    for n in captured.graph.nodes:
        if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload):
            why = captured.undecomposed.get(n.target._schema.name)
            if why:
                out[target_name(n.target)] = why
    return out


def _unsupported_message(bad: list[tuple[str, str]], why: dict[str, str] | None = None) -> str:
    groups: dict[str, list[str]] = {}
    for op, loc in bad:
        groups.setdefault(op, []).append(loc)
    lines = [f"the model uses {len(groups)} op(s) wafercc does not support ({len(bad)} use(s)):"]
    for op, locs in groups.items():
        uniq = list(dict.fromkeys(locs))
        shown = ", ".join(uniq[:5]) + (f", and {len(uniq) - 5} more" if len(uniq) > 5 else "")
        lines.append(f"  {op}  at {shown}")
        if why and op in why:
            lines.append(f"    not decomposed: {why[op]}")
    lines.append("see docs/ops.md for the ops wafercc supports")
    return "\n".join(lines)


__all__ = ["Ctx", "ImportBug", "ImportResult", "import_graph", "location", "unsupported_ops", "OPS"]
