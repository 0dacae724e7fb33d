"""cost: per-layer cycles with the routes known, the weight-streaming schedule, and module totals.

    layer @L0_fc1 {estimate = {...}, links = {bytes = 401408, ...}, ...}
  gains
    cost = {bound = "ingress", broadcast = ..., compute = ..., fabric = ..., ingress = ..., roofline = ...,
            seconds = ..., total = ..., utilization = ...}
    stream = {bytes = 803840, chunk_bytes = 50240, chunks = 16, order = 0, prefetch = true}

The tile pass estimated each layer from its tiling alone; here the fabric term also takes the busiest link
the routes produced (a link carries one 32-bit wavelet per cycle), so congestion that routing could not
avoid shows up in the time. Compute, weight ingress and fabric overlap (weights for the next chunk stream
while this one computes [hardware.md §3.1.5]); latency and the elementwise tail add. The bound says which
term limits the layer; utilization is FLOPs over (cycles x PEs x peak FLOPs per PE per cycle).

In streaming mode the schedule streams layers in order and prefetches each layer's weights during the
previous layer. In pipeline mode the layers run at once, so the module's time per batch is the slowest
layer (the pipeline's bottleneck) plus the fill through all of them.

Requires: route. Guarantees: every layer has cost and stream; the module has ``plan.totals``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from wafercc.ir import Module


from .plan import layers, mode_of, shape_of, target_of
from .tiling import sig4


@dataclass(frozen=True)
class Cost:
    name = "cost"

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        t = target_of(module)
        mode = mode_of(module)
        todo = layers(module, "route", by="cost")
        for order, layer in enumerate(todo):
            a = layer.attrs
            est = a["estimate"]
            fabric = max(est["broadcast"], est["reduce"], a["links"]["cycles"])
            parts = {"compute": est["compute"], "ingress": est["ingress"], "fabric": fabric}
            overlapped = parts if t.overlap_ingress else {"compute": parts["compute"], "fabric": parts["fabric"]}
            total = max(overlapped.values()) + est["latency"] + est["tail"]
            if not t.overlap_ingress:  # weights must arrive before the layer starts
                total += parts["ingress"]
            bound = max(parts, key=parts.get)
            fpc = t.fmac_peak(shape_of(layer).storage)
            a["cost"] = {
                **{k: round(v, 1) for k, v in parts.items()},
                "latency": est["latency"],
                "tail": est["tail"],
                "total": round(total, 1),
                "bound": bound,
                "roofline": est["roofline"],
                "seconds": total / t.clock_hz,
                "utilization": sig4(a["flops"] / (total * t.pes * fpc)) if total else 0.0,
            }
            chunks = a["tiling"]["N"]["steps"] * a["tiling"]["passes"]
            streamed = a["weight_bytes"] * a["tiling"]["passes"] if mode == "stream" else 0
            a["stream"] = {
                "order": order,
                "bytes": streamed,
                "chunks": chunks,
                "chunk_bytes": -(-streamed // max(chunks, 1)),
                "prefetch": mode == "stream" and order > 0,
            }
        module.attrs["plan.totals"] = _totals(todo, t, mode)
        if stats is not None:
            stats["layers costed"] += len(todo)
        return module


def _totals(todo, t, mode: str) -> dict:
    costs = [layer.attrs["cost"] for layer in todo]
    if not todo:  # an empty plan: the model computes nothing (an identity, or a graph that folded away)
        return {
            "layers": 0,
            "cycles": 0.0,
            "seconds": 0.0,
            "flops": 0,
            "weight_bytes_streamed": 0,
            "peak_bytes_per_pe": 0,
            "utilization": 0.0,
            "max_colors": 0,
            "structures": 0,
        }
    if mode == "stream":
        cycles = sum(c["total"] for c in costs)
    else:
        # the slowest layer's step without its own latency, plus the fill through every layer's latency
        cycles = max(c["total"] - c["latency"] for c in costs) + sum(c["latency"] for c in costs)
    flops = sum(layer.attrs["flops"] for layer in todo)
    streamed = sum(layer.attrs["stream"]["bytes"] for layer in todo)
    peak = max(layer.attrs["memory"]["total"] for layer in todo)
    fpc = t.fmac_peak(shape_of(todo[0]).dtype)
    return {
        "layers": len(todo),
        "cycles": round(cycles, 1),
        "seconds": cycles / t.clock_hz,
        "flops": flops,
        "weight_bytes_streamed": streamed,
        "peak_bytes_per_pe": peak,
        "utilization": sig4(flops / (cycles * t.pes * fpc)) if cycles else 0.0,
        "max_colors": max(layer.attrs["colors"] for layer in todo),
        # Layers with one computation (identical transformer blocks) share their routes (see route).
        "structures": len({layer.attrs.get("structure", layer.name) for layer in todo}),
    }
