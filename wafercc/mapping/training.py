"""train: the training plan on top of a mapped joint forward + backward module (after cost).

A training module's ``@forward`` returns (loss, gradients..., buffer updates...), named by the function
attributes ``train.roles`` and ``train.targets`` (docs/wir.md). This pass adds what weight-streaming training
needs beyond the per-layer plan the mapping passes already made:

- **phases.** An op is in the forward phase when the loss or a buffer update depends on it, in the backward
  phase otherwise (it only feeds gradients). A layer's phase is its anchor's (its ops' majority without
  one). The loss's own gradient (the elementwise start of the backward) runs in the last forward layer,
  where the loss is. The optimizer runs in MemoryX, not on the wafer: it has no layer, and the totals carry
  its time.
- **backward layers.** ``train.role`` says what a backward layer's anchor computes: ``input_grad`` (dY x W^T:
  an operand is streamed from a weight, so the weight streams in again, charged in the layer's stream bytes
  by partition and cost like any weight read), ``weight_grad`` (X^T x dY: both operands are activations and
  the result becomes a weight's gradient) or ``activation_grad`` (attention's backward products).
- **gradient egress.** Each gradient streams out to MemoryX from the layer that finishes it: ``train.egress``
  = {bytes, seconds} at the target's I/O bandwidth (the link is full duplex: egress runs beside the weight
  ingress; only egress longer than the layer's own time adds to the step).
- **saved activations.** Each value the forward computes and the backward reads (and each input it reads) is
  kept on the wafer, recomputed or spilled. The room: the SRAM the layers leave free (every PE's usable SRAM
  minus the plan's peak per-PE memory). In forward order, a value cheap to make again from what stays on the
  wafer (not an anchor; every operand a weight, a constant, or a value kept or recomputed) is set aside; any
  other is kept while the kept bytes fit the room, spilled to MemoryX past that (charged twice its bytes at the
  I/O bandwidth: out and back). Then the set-aside values are kept while room is left (keeping costs no
  time), recomputed otherwise (charged their FLOPs at the wafer's peak rate). The forward layer that makes it
  carries ``train.saved`` = {kept, spilled, recomputed} bytes.
- **the optimizer.** MemoryX updates each parameter as its gradient arrives; we assume its update keeps pace
  with the gradient stream (gradient bytes at the I/O bandwidth), so without clipping only the last gradient's
  update is exposed; clipping needs the global norm before any update, so the whole update is exposed.

Totals (``plan.totals``) gain: ``forward_seconds``, ``backward_seconds``, ``gradient_bytes_streamed``,
``gradient_seconds``, ``activation_bytes_kept``/``_spilled``/``_recomputed``, ``spill_seconds``,
``recompute_seconds``, ``optimizer_seconds``, ``optimizer_exposed_seconds``, ``step_seconds``, ``batch`` and
``samples_per_s``.
"""

from __future__ import annotations

from wafercc.ir import DType, Func, Module, Op, SymbolRef, Value
from wafercc.ir.plan import ANCHOR_KINDS, LAYER_ATTR, STORAGE_ATTR
from wafercc.ir.training import is_training, result_roles
from wafercc.ops import flops as op_flops

from .layers import weight_derived_values
from .plan import layers, target_of

PHASES = ("forward", "backward", "optimizer")

__all__ = ["PHASES", "is_training", "op_phases", "phase_summary", "restream_weights", "run"]


def op_phases(func: Func) -> dict[int, str]:
    """id(op) -> "forward" (the loss or a buffer update depends on it) or "backward"."""
    roles = result_roles(func)
    owner = {id(r): op for op in func.ops for r in op.results}
    forward: set[int] = set()
    todo = [v for v, (role, _) in zip(func.returns, roles) if role != "grad"]
    while todo:
        op = owner.get(id(todo.pop()))
        if op is None or id(op) in forward:
            continue
        forward.add(id(op))
        todo.extend(op.operands)
    return {id(op): "forward" if id(op) in forward else "backward" for op in func.ops}


def restream_weights(module: Module) -> Module:
    """Give the backward its own reads of the weights it uses (run before partition, after cse).

    The joint graph reads each weight once (``weight.get`` where the forward first uses it) and the backward
    reuses that value: the weight would stay on the wafer from its forward layer to its backward one. In
    weight streaming it streams in again: each weight-derived value a backward op reads from the forward is
    made again just before that op (the ``weight.get`` and the views of it, cloned once for the whole
    backward), so the runtime reads the weight from the store again and releases it after the forward."""
    func = module.func()
    phase = op_phases(func)
    derived = weight_derived_values(func)
    names = {v.name for v in func.values()}
    clones: dict[int, Value] = {}
    out: list[Op] = []

    def clone(v: Value) -> Value:
        if id(v) in clones:
            return clones[id(v)]
        op = v.owner
        operands = [clone(x) if _streamed(x, derived) else x for x in op.operands]
        fresh = []
        for r in op.results:
            base = name = f"{r.name}_bw"
            i = 0
            while name in names:
                i += 1
                name = f"{base}{i}"
            names.add(name)
            fresh.append(name)
        copy = Op(op.name, operands, [r.type for r in op.results], dict(op.attrs), op.loc, fresh)
        out.append(copy)
        for r, c in zip(op.results, copy.results):
            clones[id(r)] = c
        return clones[id(v)]

    for op in func.ops:
        if phase[id(op)] == "backward":
            op.operands = [
                clone(v) if _streamed(v, derived) and phase[id(v.owner)] == "forward" else v for v in op.operands
            ]
        out.append(op)
    func.ops = out
    return module


def _streamed(v: Value, derived: dict) -> bool:
    """A value made from weights by ops (not an argument, not a constant alone)."""
    return v.owner is not None and bool(derived.get(id(v)))


def run(module: Module, optimizer_state_words: int = 0, clip: bool = False) -> Module:
    """Annotate a mapped (costed) training module; ``optimizer_state_words``: f32 words of optimizer state per
    parameter element (0 plain SGD, 1 momentum, 2 AdamW), ``clip``: clipping by global norm is on."""
    func = module.func()
    t = target_of(module)
    todo = layers(module, "cost", by="train")
    phase_of = op_phases(func)
    derived = weight_derived_values(func)
    by_layer: dict[str, list[Op]] = {}
    for op in func.ops:
        ref = op.attrs.get(LAYER_ATTR)
        if isinstance(ref, SymbolRef):
            by_layer.setdefault(ref.name, []).append(op)
    grads = _gradient_layers(func)
    for layer in todo:
        ops = by_layer.get(layer.name, [])
        a = layer.attrs
        a["phase"] = _layer_phase(ops, phase_of, derived)
        if a["phase"] == "backward":
            a["train.role"] = _role(ops, derived, grads)
        nbytes = sum(grads.get(id(op), 0) for op in ops)
        if nbytes:
            a["train.egress"] = {"bytes": nbytes, "seconds": nbytes / t.io_bytes_per_s}
    saved = _saved_activations(module, func, phase_of, derived, t)
    extra = _totals(module, todo, saved, t, optimizer_state_words, clip)
    module.attrs["plan.totals"] = {**module.attrs["plan.totals"], **extra}
    return module


def _layer_phase(ops: list[Op], phase_of: dict, derived: dict) -> str:
    anchor = next((op for op in ops if op.name in ANCHOR_KINDS), None)
    if anchor is not None:
        return phase_of[id(anchor)]
    live = [op for op in ops if not all(id(r) in derived for r in op.results)] or ops
    backward = sum(phase_of[id(op)] == "backward" for op in live)
    return "backward" if backward * 2 > len(live) else "forward"


def _gradient_layers(func: Func) -> dict[int, int]:
    """id(op) -> bytes of the gradients it makes (the op defining a gradient result)."""
    out: dict[int, int] = {}
    for v, (role, _) in zip(func.returns, result_roles(func)):
        if role == "grad" and v.owner is not None:
            out[id(v.owner)] = out.get(id(v.owner), 0) + v.type.nbytes
    return out


def _role(ops: list[Op], derived: dict, grads: dict) -> str:
    anchor = next((op for op in ops if op.name in ANCHOR_KINDS), None)
    if anchor is None:
        return "elementwise"
    if any(id(v) in derived for v in anchor.operands):
        return "input_grad"
    if any(id(op) in grads for op in ops):
        return "weight_grad"
    return "activation_grad"


def _saved_activations(module: Module, func: Func, phase_of: dict, derived: dict, t) -> list[dict]:
    """The forward values the backward reads, each decided (keep, recompute, spill) in forward order."""
    peak = module.attrs["plan.totals"].get("peak_bytes_per_pe", 0)
    budget = t.pes * max(t.usable_sram - peak, 0)
    needed = _needed_by_backward(func, phase_of, derived)
    order = {id(r): i for i, op in enumerate(func.ops) for r in op.results}
    size = _stored_size(module)
    decided = _decide(sorted(needed.values(), key=lambda v: order.get(id(v), -1)), derived, budget, size)
    out = []
    for v, decision in decided:
        producer = v.owner
        nbytes = size(v)
        layer = producer.attrs.get(LAYER_ATTR) if producer is not None else None
        out.append(
            {
                "value": "%" + v.name,
                "bytes": nbytes,
                "decision": decision,
                "layer": layer.name if isinstance(layer, SymbolRef) else None,
                "flops": op_flops(producer) if decision == "recompute" else 0,
            }
        )
    first = min(module.layers.values(), key=lambda layer: layer.attrs.get("index", 0)).name
    for s in out:  # each forward layer says what it saves for the backward
        layer = module.layers[s["layer"] or first]
        tally = layer.attrs.setdefault("train.saved", {"kept": 0, "spilled": 0, "recomputed": 0})
        tally[{"keep": "kept", "spill": "spilled", "recompute": "recomputed"}[s["decision"]]] += s["bytes"]
    return out


def _stored_size(module: Module):
    """Bytes a saved value takes on the wafer: with the module's 16-bit storage (--precision bf16) the runtime
    stores every f32 activation rounded to 16 bits, so 2 bytes an element; otherwise its own dtype's."""
    storage = module.attrs.get(STORAGE_ATTR)
    if not storage:
        return lambda v: v.type.nbytes
    e = DType(storage).itemsize
    return lambda v: v.type.numel * e if v.type.dtype == DType.f32 else v.type.nbytes


def _decide(values: list[Value], derived: dict, budget: int, size=lambda v: v.type.nbytes) -> list[tuple[Value, str]]:
    """keep / recompute / spill for each value, in forward order. First pass: a value that is cheap to make
    again from what stays on the wafer is set aside for recomputation; any other is kept while it fits and
    spilled past that. Second pass: the set-aside values are kept after all while room is left (keeping costs
    no time), recomputed otherwise."""
    kept = 0
    on_wafer: set[int] = set()  # kept or recomputable: what a recomputation may start from
    decision: dict[int, str] = {}
    for v in values:
        if _recomputable(v.owner, derived, on_wafer):
            decision[id(v)] = "recompute"
        elif kept + size(v) <= budget:
            decision[id(v)] = "keep"
            kept += size(v)
        else:
            decision[id(v)] = "spill"
        if decision[id(v)] != "spill":
            on_wafer.add(id(v))
    for v in values:
        if decision[id(v)] == "recompute" and kept + size(v) <= budget:
            decision[id(v)] = "keep"
            kept += size(v)
    return [(v, decision[id(v)]) for v in values]


def _recomputable(op: Op | None, derived: dict, on_wafer: set[int]) -> bool:
    """Cheap to make again from what the wafer holds: not an anchor (a product would stream its weight again),
    and every operand a weight, a constant or a value kept or itself recomputable."""
    if op is None or op.name in ANCHOR_KINDS:
        return False
    return all(id(v) in derived or id(v) in on_wafer for v in op.operands)


def _needed_by_backward(func: Func, phase_of: dict, derived: dict) -> dict[int, Value]:
    """The values the forward makes (and the inputs, the batch) that a backward op reads; not weights."""
    args = {id(a) for a in func.args}
    needed: dict[int, Value] = {}
    for op in func.ops:
        if phase_of[id(op)] != "backward":
            continue
        for v in op.operands:
            made_forward = v.owner is not None and phase_of[id(v.owner)] == "forward" and id(v) not in derived
            if made_forward or id(v) in args:
                needed.setdefault(id(v), v)
    return needed


def _totals(module: Module, todo, saved: list[dict], t, state_words: int, clip: bool) -> dict:
    seconds = {"forward": 0.0, "backward": 0.0}
    exposed_egress = 0.0
    last_grad = 0
    for layer in todo:
        a = layer.attrs
        seconds[a["phase"]] += a["cost"]["seconds"]
        egress = a.get("train.egress")
        if egress:
            exposed_egress += max(0.0, egress["seconds"] - a["cost"]["seconds"])
            last_grad = egress["bytes"]
    func = module.func()
    grad_bytes = sum(v.type.nbytes for v, (role, _) in zip(func.returns, result_roles(func)) if role == "grad")
    params = sum(v.type.numel for v, (role, _) in zip(func.returns, result_roles(func)) if role == "grad")
    spilled = sum(s["bytes"] for s in saved if s["decision"] == "spill")
    recompute_flops = sum(s["flops"] for s in saved)
    spill_s = 2 * spilled / t.io_bytes_per_s
    recompute_s = recompute_flops / t.peak_flops_per_s()
    # MemoryX touches, per parameter element, the gradient, the master (read and written) and the state.
    optimizer_s = params * 4 * (1 + 2 + 2 * state_words) / t.io_bytes_per_s
    exposed_opt = optimizer_s if clip else optimizer_s * (last_grad / grad_bytes if grad_bytes else 0.0)
    step = seconds["forward"] + seconds["backward"] + exposed_egress + spill_s + recompute_s + exposed_opt
    batch = func.args[0].type.shape[0] if func.args and func.args[0].type.shape else 1
    return {
        "forward_seconds": seconds["forward"],
        "backward_seconds": seconds["backward"],
        "gradient_bytes_streamed": grad_bytes,
        "gradient_seconds": grad_bytes / t.io_bytes_per_s,
        "activation_bytes_kept": sum(s["bytes"] for s in saved if s["decision"] == "keep"),
        "activation_bytes_spilled": spilled,
        "activation_bytes_recomputed": sum(s["bytes"] for s in saved if s["decision"] == "recompute"),
        "spill_seconds": spill_s,
        "recompute_seconds": recompute_s,
        "optimizer_seconds": optimizer_s,
        "optimizer_exposed_seconds": exposed_opt,
        "step_seconds": step,
        "batch": batch,
        "samples_per_s": batch / step if step else 0.0,
    }


def phase_summary(plan: dict) -> str:
    """The report's training section, from plan.json's dict: time per phase, gradients, activations."""
    tot = plan.get("totals", {})
    if "step_seconds" not in tot:
        return ""
    count = {p: sum(1 for layer in plan["layers"] if layer.get("phase") == p) for p in PHASES}
    mib = 1 << 20
    rows = [
        ("forward", f"{count['forward']} layers", f"{tot['forward_seconds'] * 1e3:.4g} ms", ""),
        (
            "backward",
            f"{count['backward']} layers",
            f"{tot['backward_seconds'] * 1e3:.4g} ms",
            f"gradients out {tot['gradient_bytes_streamed'] / mib:.2f} MiB ({tot['gradient_seconds'] * 1e3:.4g} ms)",
        ),
        (
            "optimizer",
            "in MemoryX",
            f"{tot['optimizer_seconds'] * 1e3:.4g} ms",
            f"exposed {tot['optimizer_exposed_seconds'] * 1e3:.4g} ms",
        ),
    ]
    lines = ["training step, by phase:", *_table(rows)]
    lines.append(
        f"  saved activations: kept {tot['activation_bytes_kept'] / mib:.2f} MiB, spilled "
        f"{tot['activation_bytes_spilled'] / mib:.2f} MiB ({tot['spill_seconds'] * 1e3:.4g} ms), recomputed "
        f"{tot['activation_bytes_recomputed'] / mib:.2f} MiB ({tot['recompute_seconds'] * 1e3:.4g} ms)"
    )
    lines.append(
        f"  step {tot['step_seconds'] * 1e3:.4g} ms for a batch of {tot['batch']}: "
        f"{rate_text(tot['samples_per_s'])} samples/s"
    )
    lines += ["", "layers by phase:", *_table(_layer_rows(plan))]
    return "\n".join(lines) + "\n"


def rate_text(per_s: float) -> str:
    """A rate for people: whole numbers from 100 up, else 3 significant digits (a 1T model's 0.0104 samples/s
    is not 0)."""
    return f"{per_s:,.0f}" if per_s >= 100 else f"{per_s:.3g}"


def _layer_rows(plan: dict) -> list[tuple[str, ...]]:
    rows = [("layer", "phase", "role", "gradients out", "saved for backward (kept/spilled/recomputed)")]
    for layer in plan["layers"]:
        egress = layer.get("train.egress", {}).get("bytes", 0)
        saved = layer.get("train.saved")
        rows.append(
            (
                layer["name"],
                layer.get("phase", "?"),
                layer.get("train.role", ""),
                f"{egress:,} B" if egress else "",
                "/".join(f"{saved[k]:,}" for k in ("kept", "spilled", "recomputed")) + " B" if saved else "",
            )
        )
    rows.append(("(MemoryX)", "optimizer", "update", "", ""))
    return rows


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
