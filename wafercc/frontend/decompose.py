"""Decompositions applied at capture to ops the importer has no converter for.

torch.export leaves core-ATen ops and library custom ops (``torch.library.custom_op``: transformers' grouped
matmul of its mixture-of-experts layers, say) in the graph. When the importer cannot take one of them, capture
looks for a decomposition, in this order, and re-runs ``run_decompositions`` with it:

1. wafercc's own table below (``DECOMPOSITIONS``, by the op's qualified name): static-shape rewrites of ops
   whose own implementation is data-dependent (the grouped matmul loops over ``offs.tolist()``) or that torch
   keeps as one core op (``histc``, ``index_put``);
2. torch's registered decomposition (``torch._decomp.decomposition_table``: ``upsample_bilinear2d.vec``...);
3. a custom op's own Python implementation, traced like any model code: it works when the implementation is
   itself static.

An op none of them decomposes stays in the graph, and the importer reports it with its source line and the
reason (``Decomposition.failures``). Each rewrite here is checked against the op itself in
tests/frontend/test_decompositions.py.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Callable

import torch

aten = torch.ops.aten

# Namespaces whose ops are torch's own; any other namespace is a library's custom op.
TORCH_NAMESPACES = {"aten", "prims", "quantized_decomposed", "higher_order"}


def qualname(op) -> str:
    """'aten::histc', 'transformers::grouped_mm_fallback' (the overload name dropped: ``.default``)."""
    schema = getattr(op, "_schema", None)
    return schema.name if schema is not None else getattr(op, "__name__", str(op))


# -- wafercc's own table ----------------------------------------------------------------------------


class Decline(Exception):
    """A decomposition does not apply to these arguments; the reason goes into the user's error."""


def _grouped_mm(input: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """out[s] = input[s] @ weight[e] for the rows s of group e (rows offs[e-1] <= s < offs[e]); rows past
    offs[-1] are zero. Computed densely, every row against every group, and the row's own group selected:
    static shapes, and matmuls a mesh runs well (the data-dependent loop of the library's version is not)."""
    if input.dim() != 2 or weight.dim() != 3 or offs.dim() != 1 or offs.shape[0] != weight.shape[0]:
        raise Decline(
            f"only the 2-D x 3-D grouped form is decomposed, got {tuple(input.shape)} x "
            f"{tuple(weight.shape)} with offs {tuple(offs.shape)}"
        )
    s, (e, k, n) = input.shape[0], weight.shape
    ends = offs.to(torch.int64)
    starts = torch.cat([torch.zeros(1, dtype=torch.int64, device=offs.device), ends[:-1]])
    rows = torch.arange(s, device=input.device).unsqueeze(1)
    member = (rows >= starts.unsqueeze(0)) & (rows < ends.unsqueeze(0))  # (S, E): row s belongs to group e
    every = torch.mm(input, weight.to(input.dtype).permute(1, 0, 2).reshape(k, e * n)).view(s, e, n)
    # where, not a multiply by the mask: a row's product with another group's weights may be inf or nan
    return torch.where(member.unsqueeze(2), every, torch.zeros((), dtype=every.dtype)).sum(1)


def _aten_grouped_mm(input, weight, offs=None, bias=None, out_dtype=None):
    if offs is None or bias is not None or (out_dtype is not None and out_dtype != input.dtype):
        raise Decline("only _grouped_mm(2-D input, 3-D weight, offs) without bias or out_dtype is decomposed")
    return _grouped_mm(input, weight, offs)


def _histc(x: torch.Tensor, bins: int = 100, min=0, max=0) -> torch.Tensor:
    """Counts of ``x`` in ``bins`` equal bins over [min, max], as a tensor of x's dtype; values outside (and
    nan) are not counted, a value equal to max falls in the last bin (torch's CPU kernel's rule)."""
    if min == max:
        raise Decline("histc with min == max takes its range from the data, which a static graph cannot")
    lo, hi = float(min), float(max)
    flat = x.reshape(-1)
    pos = ((flat - lo) * bins / (hi - lo)).to(torch.int64)  # truncation, as the kernel's cast
    pos = torch.where(pos == bins, pos - 1, pos)
    inside = (flat >= lo) & (flat <= hi)
    hit = (pos.unsqueeze(1) == torch.arange(bins, device=x.device).unsqueeze(0)) & inside.unsqueeze(1)
    return hit.to(x.dtype).sum(0)


def _index_put(x: torch.Tensor, indices, values: torch.Tensor, accumulate: bool = False) -> torch.Tensor:
    """x[indices] = values (or +=) without a scatter: each element of x finds the element of ``values`` that
    lands on it by comparing flat positions. Integer indices of any layout (negative ones too); a boolean
    mask only with a single value, as in ``x[mask] = 0`` (any other masked assignment has a data-dependent
    shape)."""
    indices = list(indices)
    if any(i is not None and i.dtype == torch.bool for i in indices):
        return _masked_put(x, indices, values, accumulate)
    numel = x.numel()
    positions = aten.index.Tensor(torch.arange(numel, device=x.device).view(x.shape), indices)  # where x[indices] lies
    target = positions.reshape(-1)
    vals = values.to(x.dtype).expand(positions.shape).reshape(-1)
    flat = x.reshape(-1)
    lands = target.unsqueeze(0) == torch.arange(numel, device=x.device).unsqueeze(1)  # (numel, K)
    if accumulate:
        add = torch.where(lands, vals.unsqueeze(0), torch.zeros((), dtype=x.dtype)).sum(1)
        return (flat + add.to(x.dtype)).view(x.shape)
    # Of several values for one element, the last one written wins (torch leaves it undefined; its CPU
    # kernel writes in order).
    k = torch.arange(target.shape[0], device=x.device)
    last = torch.where(lands, k.unsqueeze(0), -1).amax(1)
    picked = vals[last.clamp(min=0)]
    return torch.where(last >= 0, picked, flat).view(x.shape)


def _masked_put(x, indices, values, accumulate):
    lead = 0
    while lead < len(indices) and indices[lead] is None:
        lead += 1
    rest = indices[lead + 1 :]
    if any(i is not None for i in rest) or values.numel() != 1:
        raise Decline(
            "a boolean-mask index_put is decomposed only as x[mask] = one value (any other has a data-dependent shape)"
        )
    mask = indices[lead]
    mask = mask.view((1,) * lead + tuple(mask.shape) + (1,) * (x.dim() - lead - mask.dim()))
    v = values.to(x.dtype).reshape(())
    return torch.where(mask, x + v, x) if accumulate else torch.where(mask, v, x)


def _empty_permuted(size, physical_layout, dtype=None, layout=None, device=None, pin_memory=None):
    # The contents are undefined and a WIR tensor has no strides: an empty tensor of the logical size.
    return torch.empty(size, dtype=dtype, device=device)


DECOMPOSITIONS: dict[str, Callable] = {
    "transformers::grouped_mm_fallback": _grouped_mm,
    "aten::_grouped_mm": _aten_grouped_mm,
    "aten::histc": _histc,
    "aten::index_put": _index_put,
    "aten::empty_permuted": _empty_permuted,
}


def wafercc_decompositions(supported: Callable[[object], bool]) -> dict:
    """wafercc's table as OpOverload -> function, for the ops ``supported`` rejects (and that exist: a library's
    custom op only once the library is imported). For the torch.fx capture, whose make_fx takes a table."""
    out = {}
    for name, fn in DECOMPOSITIONS.items():
        namespace, op = name.split("::")
        try:
            overload = getattr(getattr(torch.ops, namespace), op).default
        except (AttributeError, RuntimeError):
            continue
        if not supported(overload):
            out[overload] = fn
    return out


# -- the core-ATen table, with torch's decompositions fixed where they disagree with torch's kernels ----


def _sdpa_flash_cpu(*args, **kwargs):
    """torch's decomposition of the CPU flash-attention op returns its output in an (L, N, H, E) memory layout,
    while the kernel (and its meta function, which export traced the model's later views with) returns it
    contiguous. A model that views the attention output (GPT-2's Conv1D: ``x.view(-1, C)``) then fails in
    ``run_decompositions``: "Cannot view a tensor with shape ... and strides ...". Same values, the kernel's
    layout."""
    from torch._decomp import decomposition_table

    out, logsumexp = decomposition_table[aten._scaled_dot_product_flash_attention_for_cpu.default](*args, **kwargs)
    return out.contiguous(), logsumexp


def core_table():
    """torch.export's default (core-ATen) decomposition table, with the fixes above."""
    table = torch.export.default_decompositions()
    table[aten._scaled_dot_product_flash_attention_for_cpu.default] = _sdpa_flash_cpu
    return table


# -- applying them ----------------------------------------------------------------------------------


@dataclass
class Decomposition:
    program: object  # the ExportedProgram after the decompositions
    applied: list[str] = field(default_factory=list)  # qualified names of the ops decomposed
    failures: dict[str, str] = field(default_factory=dict)  # qualified name -> why it could not be


def _candidate(op) -> tuple[Callable | None, str]:
    name = qualname(op)
    if name in DECOMPOSITIONS:
        return DECOMPOSITIONS[name], "wafercc"
    from torch._decomp import decomposition_table

    if op in decomposition_table:
        return decomposition_table[op], "torch"
    namespace = name.split("::", 1)[0]
    if namespace not in TORCH_NAMESPACES:
        from torch._library.custom_ops import OPDEFS

        opdef = OPDEFS.get(name)
        if opdef is not None and opdef._init_fn is not None:
            return opdef._init_fn, "its own implementation"
        return None, "a custom op with no Python implementation to trace, and wafercc has no decomposition for it"
    return None, ""


def decompose_unsupported(ep, supported: Callable[[object], bool], rounds: int = 3) -> Decomposition:
    """Re-run ``ep.run_decompositions`` with a decomposition for every op ``supported`` rejects, until none
    is left that has one (a decomposition may bring ops of its own). The core-ATen table goes in each time,
    so what a decomposition brings is normalized like the rest of the graph. A decomposition that trades the
    op for others the importer cannot take either (``special_erfcx`` for ``prims::erfcx``) is not kept: the
    error then names the op of the model, and says what its decomposition would need."""
    before = _unsupported(ep, supported)
    result = _decompose(ep, supported, rounds)
    if not _unsupported(result.program, supported) - before:
        return result
    # The model will not compile: find which decompositions help and which only move the problem (rare, so
    # the one-op-at-a-time runs are paid only here).
    useful, traded = set(), {}
    for op in before:
        if qualname(op) in result.failures:
            continue
        trial = _decompose(ep, supported, rounds, skip=before - {op})
        brought = _unsupported(trial.program, supported) - before
        if brought:
            traded[qualname(op)] = (
                "its decomposition brings "
                + ", ".join(sorted(qualname(t) for t in brought))
                + ", which wafercc cannot take either"
            )
        elif qualname(op) in trial.applied:
            useful.add(op)
    final = _decompose(ep, supported, rounds, skip=before - useful) if useful else Decomposition(ep)
    final.failures.update(result.failures)
    final.failures.update(traded)
    return final


def _unsupported(ep, supported) -> set:
    return {
        n.target
        for n in ep.graph.nodes
        if n.op == "call_function" and n.target is not operator.getitem and not supported(n.target)
    }


def _decompose(ep, supported, rounds: int, skip: frozenset | set = frozenset()) -> Decomposition:
    """The rounds of decomposition, leaving the ops in ``skip`` as they are."""
    result = Decomposition(ep)
    for _ in range(rounds):
        todo = {}
        for n in result.program.graph.nodes:
            if n.op != "call_function" or n.target is operator.getitem or supported(n.target):
                continue
            name = qualname(n.target)
            if name in result.failures or n.target in todo or n.target in skip:
                continue
            fn, source = _candidate(n.target)
            if fn is None:
                if source:
                    result.failures[name] = source
                continue
            todo[n.target] = (fn, source)
        if not todo:
            break
        _apply(result, todo)
    return result


def _apply(result: Decomposition, todo: dict) -> None:
    table = core_table()
    for op, (fn, _) in todo.items():
        table[op] = fn
    try:
        result.program = result.program.run_decompositions(table)
        result.applied += [qualname(op) for op in todo]
        return
    except Exception:  # whatever tracing a decomposition raised; found below
        pass
    # One of them failed: apply them one at a time, to name the one that cannot be decomposed and why.
    for op, (fn, source) in todo.items():
        table = core_table()
        table[op] = fn
        try:
            result.program = result.program.run_decompositions(table)
            result.applied.append(qualname(op))
        except Exception as e:  # whatever tracing the decomposition raised
            result.failures[qualname(op)] = f"its decomposition ({source}) failed: {_reason(e)}"


def _reason(e: BaseException) -> str:
    chain, seen = [], set()
    while e is not None and id(e) not in seen:  # a Decline may come back wrapped in torch's own errors
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    decline = next((x for x in chain if isinstance(x, Decline)), None)
    if decline is not None:
        return str(decline)
    text = " ".join(str(x) for x in chain).lower()
    if any(
        k in text
        for k in ("data-dependent", "data dependent", "guardondatadependent", "could not guard", "tolist", ".item()")
    ):
        return "it reads tensor values to decide shapes or control flow (data-dependent)"
    first = str(chain[0]).strip().splitlines()[0] if str(chain[0]).strip() else type(chain[0]).__name__
    return f"{type(chain[0]).__name__}: {first}"[:240]
