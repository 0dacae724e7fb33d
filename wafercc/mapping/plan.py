"""Shared helpers of the mapping passes: the target and mode a module is mapped for, and its layers.

A mapped module says what it is mapped for in its attributes (``target = "wse2"``, ``mode = "stream"``);
the layers are module-level ``layer`` declarations whose attributes each pass extends:

    partition  index, kind, ops, dims, dtype, flops, weights, weight_bytes, tail_elements, anchor,
               operand_dtype (when the product's operands are exact 16-bit values)
    tile       tiling, memory (per-PE estimate), estimate (cycles)
    place      rect = [x, y, w, h], step
    route      routes, colors, links
    memplan    memmap
    cost       cost, stream
"""

from __future__ import annotations

from wafercc.errors import PlanError
from wafercc.ir import DType, Layer, Module
from wafercc.ir.plan import LayerPlan
from wafercc.target import Target, parse_target

from .tiling import Shape

MODES = ("stream", "pipeline")
STAGE_KEYS = {
    "partition": "kind",
    "tile": "tiling",
    "place": "rect",
    "route": "routes",
    "memplan": "memmap",
    "cost": "cost",
}


def target_of(module: Module, override: str = "") -> Target:
    spec = override or module.attrs.get("target")
    if not spec:
        raise PlanError(
            f"module @{module.name} names no target: pass target=NAME to the pass, or compile with --target"
        )
    if override:
        module.attrs["target"] = override
    return parse_target(str(spec))


def mode_of(module: Module, override: str = "") -> str:
    mode = override or module.attrs.get("mode", "stream")
    if mode not in MODES:
        raise PlanError(f"unknown mode '{mode}' (use stream or pipeline)")
    module.attrs["mode"] = mode
    return mode


def layers(module: Module, needs: str | None = None, by: str = "") -> list[Layer]:
    """The module's layers in execution order; with ``needs``, check that stage ran first."""
    out = sorted(module.layers.values(), key=lambda layer: layer.attrs.get("index", 0))
    if not out and not _computes(module):
        return []  # nothing to run (an identity or a graph that folded away): the plan is empty
    if not out:
        raise PlanError(f"{by or 'this pass'} needs layers: run partition first")
    if needs is not None and any(STAGE_KEYS[needs] not in layer.attrs for layer in out):
        raise PlanError(f"{by or 'this pass'} needs the '{needs}' pass to have run first")
    return out


def _computes(module: Module) -> bool:
    return any(op.name != "weight.get" for f in module.funcs for op in f.ops)


def shape_of(layer: Layer) -> Shape:
    a = layer.attrs
    dims = a.get("dims", {})
    return Shape(
        kind=a["kind"],
        B=dims.get("B", 1),
        M=dims.get("M", 1),
        K=dims.get("K", 1),
        N=dims.get("N", 1),
        dtype=a["dtype"] if isinstance(a["dtype"], DType) else DType(a["dtype"]),
        weight_bytes=a["weight_bytes"],
        flops=a["flops"],
        tail_elements=a.get("tail_elements", 0),
        operand_dtype=DType(a["operand_dtype"]) if a.get("operand_dtype") is not None else None,
        stored=DType(a["storage"]) if a.get("storage") is not None else None,
        causal=_causal(a),
    )


def _causal(a: dict) -> tuple[str, int] | None:
    c = a.get("tiling", {}).get("causal") if isinstance(a.get("tiling"), dict) else None
    return (c["on"], c["offset"]) if c is not None else None


def typed(layer: Layer, mode: str) -> LayerPlan:
    """The layer's plan so far, loaded and checked: what a pass reads of the passes before it (a malformed
    attribute is one error naming the layer and field, never a KeyError)."""
    return LayerPlan.from_attrs(layer.name, layer.attrs, mode)
