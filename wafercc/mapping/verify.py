"""The promises of a lowered module, checked: what the mapping passes guarantee, any module that says it
is mapped must keep, whoever wrote it (a pass, or a person editing the text).

- every op of @forward names an existing layer (``plan.layer``), once partitioned;
- every rectangle lies inside the mesh, and rectangles that run at the same step do not overlap;
- every route lies inside the mesh and is connected (a bundle is a box; a path turns only at right angles);
- no router uses more colors than the target's usable colors, counting every flow of one step;
- every layer's per-PE memory (its tiling's buffers, and its memory map) fits the SRAM budget.

Errors name the layer, the rule and what broke it: ``error: layer @L3_fc1: rect [0, 0, 800, 10] leaves the
750x994 mesh [plan-rect]``.
"""

from __future__ import annotations

from wafercc.ir import Module, SymbolRef, VerifyError

from .flows import Flow, router_colors
from .layers import LAYER_ATTR


def _fail(layer: str, rule: str, message: str) -> VerifyError:
    return VerifyError(f"error: layer @{layer}: {message} [{rule}]", rule=rule)


def verify_plan(m: Module) -> None:
    if not m.layers:
        return
    from .plan import target_of

    t = target_of(m)
    for f in m.funcs:
        for op in f.ops:
            ref = op.attrs.get(LAYER_ATTR)
            if ref is not None and (not isinstance(ref, SymbolRef) or ref.name not in m.layers):
                raise VerifyError(f"error: {op.where()}: plan.layer {ref} names no layer [plan-layer]", op=op,
                                  rule="plan-layer")
    steps: dict[int, list] = {}
    for layer in m.layers.values():
        a = layer.attrs
        if "rect" in a:
            x, y, w, h = a["rect"]
            if w < 1 or h < 1 or x < 0 or y < 0 or x + w > t.width or y + h > t.height:
                raise _fail(layer.name, "plan-rect", f"rect {a['rect']} leaves the {t.width}x{t.height} mesh")
            steps.setdefault(a.get("step", 0), []).append(layer)
        if "memory" in a and a["memory"]["total"] > t.usable_sram:
            raise _fail(layer.name, "plan-memory", f"needs {a['memory']['total']:,} bytes per PE, the budget is "
                        f"{t.usable_sram:,}")
        if "memmap" in a:
            end = max(e["offset"] + e["bytes"] for e in a["memmap"])
            if end > t.sram_bytes:
                raise _fail(layer.name, "plan-memory", f"memory map ends at {end:,}, past {t.sram_bytes:,} bytes")
    checked: set[str] = set()  # identical route sets (reused plans of identical layers) are checked once
    for step, group in sorted(steps.items()):
        _check_overlap(group)
        routes = [r for layer in group for r in layer.attrs.get("routes", [])]
        fingerprint = repr(routes)
        if fingerprint in checked:
            continue
        checked.add(fingerprint)
        for layer in group:
            for r in layer.attrs.get("routes", []):
                _check_route(layer.name, r, t)
        flows = [_flow(layer.name, r) for layer in group for r in layer.attrs.get("routes", [])]
        if flows:
            if max(f.color for f in flows) >= t.usable_colors:
                bad = next(f for f in flows if f.color >= t.usable_colors)
                raise _fail(bad.layer, "plan-colors", f"{bad.kind} uses color {bad.color}; {t.name} has "
                            f"{t.usable_colors} usable colors")
            most, x, y, clash = router_colors(flows)
            if clash is not None:
                k, cx, cy = clash
                raise _fail(group[0].name, "plan-colors", f"two flows on color {k} cross router ({cx},{cy}) at step "
                            f"{step}: a router cannot tell their wavelets apart")
            if most > t.usable_colors:
                raise _fail(group[0].name, "plan-colors", f"router ({x},{y}) needs {most} colors at step {step}; "
                            f"{t.name} has {t.usable_colors} usable")


def _check_overlap(group) -> None:
    rects = sorted((layer.attrs["rect"], layer.name) for layer in group)
    for i, (a, na) in enumerate(rects):
        for b, nb in rects[i + 1:]:
            if b[0] >= a[0] + a[2]:
                break
            if a[1] < b[1] + b[3] and b[1] < a[1] + a[3]:
                raise _fail(na, "plan-overlap", f"rect {a} overlaps @{nb}'s {b}, and both run at once")


def _check_route(name: str, r: dict, t) -> None:
    pts = [tuple(r["box"][:2]), tuple(r["box"][2:])] if "box" in r else [tuple(p) for p in r.get("path", [])]
    for x, y in pts:
        if not (0 <= x < t.width and 0 <= y < t.height):
            raise _fail(name, "plan-route", f"{r['flow']} route leaves the mesh at ({x},{y})")
    if "path" in r:
        for (ax, ay), (bx, by) in zip(pts, pts[1:]):
            if ax != bx and ay != by:
                raise _fail(name, "plan-route", f"{r['flow']} path jumps from ({ax},{ay}) to ({bx},{by})")
    elif "box" in r and (r["box"][0] > r["box"][2] or r["box"][1] > r["box"][3]):
        raise _fail(name, "plan-route", f"{r['flow']} box {r['box']} is empty")


def _flow(layer: str, r: dict) -> Flow:
    box = tuple(r["box"]) if "box" in r else None
    path = [tuple(p) for p in r.get("path", [])]
    return Flow(r["flow"], layer, box, r.get("axis", "x"), r.get("src"), r.get("bytes", 0), path=path,
                color=r["color"])
