"""The plan checker: every promise of a lowered module, checked before anything uses it, whoever wrote it
(a pass, or a person editing the text). ``check_plan`` is the one gate: the compile driver and ``wafercc
opt`` run it after every pass, and ``run``, ``verify``, ``golden``, ``report`` and ``viz`` load their plans
through the same rules.

Two layers of rules:

- what the runtime relies on, in ``wafercc.ir.plan`` (the runtime imports only ``wafercc.ir``, and checks
  them itself when it loads a plan): the tiles cover every dimension exactly, the tiling fits its
  rectangle, every flow the tiling needs has its route, the memory map's buffers do not overlap and fit the
  budget, the dims and anchor agree with the op (see that module's docstring for every rule);
- what needs the target, here:
  - every op of @forward names an existing layer (``plan.layer``), once partitioned;
  - every rectangle lies inside the mesh, and rectangles that run at the same step do not overlap;
  - every route lies inside the mesh and is connected (a bundle is a box; a path turns only at right angles);
  - no router uses more colors than the target's usable colors, counting every flow of one step;
  - every layer's per-PE memory (its tiling's buffers, and its memory map) fits the SRAM budget.

Errors name the layer, the field or rule, and what broke it: ``layer @L3_fc1: rect [0, 0, 800, 10] leaves
the 750x994 mesh [plan-rect]`` (the CLI puts "error: " in front).
"""

from __future__ import annotations

from wafercc.ir import Module, SymbolRef, VerifyError
from wafercc.ir.plan import LayerPlan, Plan, Route, load_plan
from wafercc.target import Target

from .flows import Flow, router_colors
from .layers import LAYER_ATTR
from .plan import target_of


def _fail(layer: str, rule: str, message: str) -> VerifyError:
    return VerifyError(f"layer @{layer}: {message} [{rule}]", rule=rule)


def check_plan(m: Module) -> Plan | None:
    """Check every promise of the module's plan; return the typed plan (None for an unmapped module)."""
    if not m.layers:
        return None
    t = target_of(m)
    for f in m.funcs:
        for op in f.ops:
            ref = op.attrs.get(LAYER_ATTR)
            if ref is not None and (not isinstance(ref, SymbolRef) or ref.name not in m.layers):
                raise VerifyError(
                    f"{op.where()}: plan.layer {ref} names no layer [plan-layer]", op=op, rule="plan-layer"
                )
    plan = load_plan(m)
    check_target(plan, t)
    return plan


def check_target(plan: Plan, t: Target) -> None:
    """The rules that need the target: the mesh, the SRAM and the colors."""
    steps: dict[int, list[LayerPlan]] = {}
    for lp in plan.layers:
        _check_layer(lp, t)
        if lp.rect is not None:
            steps.setdefault(lp.step, []).append(lp)
    checked: set = set()  # identical route sets (reused plans of identical layers) are checked once
    for step, group in sorted(steps.items()):
        _check_overlap(group)
        fingerprint = tuple(r for lp in group for r in lp.routes or ())
        if fingerprint not in checked:
            checked.add(fingerprint)
            _check_step_routes(step, group, t)


def _check_layer(lp: LayerPlan, t: Target) -> None:
    if lp.rect is not None:
        r = lp.rect
        if r.x + r.w > t.width or r.y + r.h > t.height:
            raise _fail(lp.name, "plan-rect", f"rect {r.to_attrs()} leaves the {t.width}x{t.height} mesh")
    if lp.memory is not None and lp.memory.total > t.usable_sram:
        raise _fail(lp.name, "plan-memory", f"needs {lp.memory.total:,} bytes per PE, the budget is {t.usable_sram:,}")
    if lp.memmap:
        end = max(e.end for e in lp.memmap)
        if end > t.sram_bytes:
            raise _fail(lp.name, "plan-memory", f"memory map ends at {end:,}, past {t.sram_bytes:,} bytes")
        if lp.memmap[0].bytes != t.runtime_reserved_bytes:
            raise _fail(
                lp.name,
                "plan-memory",
                f"memory map reserves {lp.memmap[0].bytes:,} bytes for the "
                f"runtime; {t.name} reserves {t.runtime_reserved_bytes:,}",
            )


def _check_step_routes(step: int, group: list[LayerPlan], t: Target) -> None:
    """Every route of one time step inside the mesh, and the step's colors within the budget."""
    for lp in group:
        for r in lp.routes or ():
            _check_route(lp.name, r, t)
    flows = [_flow(lp.name, r) for lp in group for r in lp.routes or ()]
    if not flows:
        return
    if max(f.color for f in flows) >= t.usable_colors:
        bad = next(f for f in flows if f.color >= t.usable_colors)
        raise _fail(
            bad.layer, "plan-colors", f"{bad.kind} uses color {bad.color}; {t.name} has {t.usable_colors} usable colors"
        )
    most, x, y, clash = router_colors(flows)
    if clash is not None:
        k, cx, cy = clash
        here = [f for f in flows if f.color == k and _passes(f, cx, cy)]
        raise _fail(
            here[0].layer,
            "plan-colors",
            f"{_flows(here)} cross router ({cx},{cy}) on color {k} "
            f"at step {step}: a router cannot tell their wavelets apart",
        )
    if most > t.usable_colors:
        here = [f for f in flows if _passes(f, x, y)]
        raise _fail(
            here[0].layer,
            "plan-colors",
            f"router ({x},{y}) needs {most} colors at step {step}; "
            f"{t.name} has {t.usable_colors} usable; flows through it: {_flows(here)}",
        )


def _check_overlap(group: list[LayerPlan]) -> None:
    rects = sorted((lp.rect.to_attrs(), lp.name) for lp in group)
    for i, (a, na) in enumerate(rects):
        for b, nb in rects[i + 1 :]:
            if b[0] >= a[0] + a[2]:
                break
            if a[1] < b[1] + b[3] and b[1] < a[1] + a[3]:
                raise _fail(na, "plan-overlap", f"rect {a} overlaps @{nb}'s {b}, and both run at once")


def _check_route(name: str, r: Route, t: Target) -> None:
    for x, y in r.points():
        if not (0 <= x < t.width and 0 <= y < t.height):
            raise _fail(name, "plan-route", f"{r.flow} route leaves the mesh at ({x},{y})")


def _passes(f: Flow, x: int, y: int) -> bool:
    return any(r.start <= y < r.stop and c.start <= x < c.stop for r, c in f.routers())


def _flows(flows: list[Flow], most: int = 6) -> str:
    named = [f"{f.kind} of @{f.layer}" for f in flows[:most]]
    return ", ".join(named) + (f" and {len(flows) - most} more" if len(flows) > most else "")


def _flow(layer: str, r: Route) -> Flow:
    return Flow(r.flow, layer, r.box, r.axis or "x", r.src, r.bytes, path=list(r.path or ()), color=r.color)


__all__ = ["check_plan", "check_target"]
