"""What a layer is, and how the graph is cut into layers.

A layer is what the wafer runs at one time in weight-streaming mode: an *anchor* (a matrix product,
convolution or embedding: the ops whose weights stream in from MemoryX and which do nearly all the FLOPs)
together with the elementwise and normalization ops that follow it up to the next anchor. Ops that only
prepare a weight (``weight.get`` and the views of it) belong to the layer that consumes the weight, so a
layer's weights stream in with it. Ops before the first anchor form a prologue layer.

Each op carries its layer as the discardable attribute ``plan.layer = @L3_fc1``; the layer itself is a
module-level ``layer @L3_fc1 {...}`` declaration whose attributes grow as the mapping passes run.
"""

from __future__ import annotations

import hashlib
import re

from wafercc.ir import DType, Func, Module, Op, SymbolRef
from wafercc.ir.plan import (
    ANCHOR_KINDS,
    LAYER_ATTR,
    PRODUCT_OPERANDS,
    STORAGE_ATTR,
    matmul_dims,
    operand_storage_dtype,
    stored_weight_bytes,
)
from wafercc.ops import flops as op_flops

ANCHORS = frozenset(ANCHOR_KINDS)


def kind_of(op: Op, weight_derived: dict) -> str:
    if op.name == "embedding":
        return "gather"
    if op.name == "convolution":
        return "conv"
    if any(id(v) in weight_derived for v in op.operands):
        return "matmul"
    return "attention"  # both operands are activations: Q @ K^T, P @ V


def weight_derived_values(func: Func) -> dict[int, frozenset[str]]:
    """Values computed from weights and constants only (they can be streamed in): id -> the weight
    symbols each one is made from."""
    derived: dict[int, frozenset[str]] = {}
    for op in func.ops:
        if op.name == "weight.get":
            srcs = frozenset({op.attrs["symbol"].name})
        elif all(id(v) in derived for v in op.operands):  # includes constant, full, arange (no operands)
            srcs = frozenset().union(*(derived[id(v)] for v in op.operands))
        else:
            continue
        for r in op.results:
            derived[id(r)] = srcs
    return derived


def partition(module: Module) -> list[dict]:
    """Assign every op of ``forward`` to a layer; return the layers' descriptions in execution order."""
    func = module.func()
    derived = weight_derived_values(func)
    is_weight_side = [all(id(r) in derived for r in op.results) for op in func.ops]
    # Forward walk: activation ops belong to the latest anchor (-1: the prologue before the first one).
    layer_of = [0] * len(func.ops)
    current = -1
    for i, op in enumerate(func.ops):
        if op.name in ANCHORS:
            current += 1
        layer_of[i] = current
    # Backward walk: weight-side ops join the earliest layer that uses them, so they stream in with it.
    first_use: dict[int, int] = {}
    for i in range(len(func.ops) - 1, -1, -1):
        op = func.ops[i]
        if is_weight_side[i]:
            uses = [first_use[id(r)] for r in op.results if id(r) in first_use]
            layer_of[i] = min(uses) if uses else current
        for v in op.operands:
            first_use[id(v)] = min(first_use.get(id(v), layer_of[i]), layer_of[i])
    for v in func.returns:
        first_use.setdefault(id(v), current)
    groups: dict[int, list[Op]] = {}
    for i, op in enumerate(func.ops):
        groups.setdefault(layer_of[i], []).append(op)
    layers = []
    for key in sorted(groups):
        ops = groups[key]
        anchor = next((op for op in ops if op.name in ANCHORS), None)
        layers.append(_layer_info(module, len(layers), ops, anchor, derived))
    return layers


def _layer_info(module: Module, index: int, ops: list[Op], anchor: Op | None, derived: dict) -> dict:
    # The weights a layer streams: every weight its activation ops read, through any views of it.
    used = set().union(
        *(derived[id(v)] for op in ops if id(op.results[0]) not in derived for v in op.operands if id(v) in derived),
        set(),
    )
    order = {w: i for i, w in enumerate(module.weights)}
    weights = sorted(used, key=order.__getitem__)
    weight_bytes = stored_weight_bytes(module, weights)  # as the store streams them (16-bit storage: 2 bytes)
    storage = module.attrs.get(STORAGE_ATTR)
    name = _layer_name(index, anchor, weights)
    info = {
        "index": index,
        "kind": kind_of(anchor, derived) if anchor is not None else "elementwise",
        "ops": len(ops),
        "flops": sum(op_flops(op) for op in ops),
        "weights": [SymbolRef(w) for w in weights],
        "weight_bytes": weight_bytes,
        "dtype": (anchor or ops[-1]).results[0].type.dtype,
    }
    if anchor is not None:
        info["dims"] = matmul_dims(anchor)
        info["anchor"] = "%" + anchor.results[0].name
        narrow = operand_storage_dtype(anchor)  # f32 product of exact 16-bit values: 2-byte operands, f16acc32
        if storage and anchor.name in PRODUCT_OPERANDS and info["dtype"] == DType.f32:
            narrow = DType(storage)  # 16-bit storage: the runtime rounds every stored operand to it
        if narrow is not None:
            info["operand_dtype"] = narrow
    if storage:
        info["storage"] = DType(storage)
    # Activation elements the layer's elementwise tail touches (for its compute and memory).
    info["tail_elements"] = max(
        (
            op.results[0].type.numel
            for op in ops
            if op is not anchor and op.name not in ("weight.get",) and not all(id(r) in derived for r in op.results)
        ),
        default=0,
    )
    info["structure"] = structure_hash(ops)
    for op in ops:
        op.attrs[LAYER_ATTR] = SymbolRef(name)
    info["name"] = name
    return info


def structure_hash(ops: list[Op]) -> str:
    """A fingerprint of a layer's computation that ignores names: two transformer blocks' layers hash the same.

    Each op contributes its kind, its result types, its attributes (weight symbols replaced by their types,
    plan attributes left out) and, for every operand, either its position among the layer's earlier
    results or its type when it comes from outside the layer.
    """
    index: dict[int, int] = {}
    parts = []
    for op in ops:
        operands = tuple(index.get(id(v), str(v.type)) for v in op.operands)
        attrs = tuple(sorted((k, _anonymous(v, op)) for k, v in op.attrs.items() if not k.startswith("plan.")))
        parts.append((op.name, operands, tuple(str(r.type) for r in op.results), attrs))
        for r in op.results:
            index[id(r)] = len(index)
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def _anonymous(v, op: Op):
    if isinstance(v, SymbolRef):
        return str(op.results[0].type)
    return repr(v)


def _layer_name(index: int, anchor: Op | None, weights: list[str]) -> str:
    if weights:
        stem = weights[0].rsplit(".", 1)[0] if "." in weights[0] else weights[0]
    elif anchor is not None:
        stem = anchor.results[0].name
    else:
        stem = "prologue" if index == 0 else "tail"
    return f"L{index}_" + re.sub(r"[^A-Za-z0-9_]", "_", stem)


def dtype_of(info: dict) -> DType:
    return info["dtype"]
