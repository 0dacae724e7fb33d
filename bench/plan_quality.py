"""How close the mapper's plans come to the roofline, on GPT-3-class layer shapes.

    python bench/plan_quality.py [--target wse2] [--tokens N] [--dtype f16] [--goal 1.15]

The four matmuls of one GPT-3 175B block (d_model 12288, d_ff 49152): QKV [d, 3d], attention output [d, d],
FC1 [d, d_ff], FC2 [d_ff, d], each with its bias (addmm), fp16, mapped in weight-streaming mode. For each
layer it prints the cost model's estimate (``cost.total``), the roofline (``cost.roofline``: the larger of
all FLOPs at the whole mesh's peak and the layer's weights at the MemoryX -> wafer I/O bandwidth), and their
ratio; then the worst ratio against the goal. The WIR is written directly (weight declarations and addmm
ops), so no weights are allocated: the mapping reads only shapes.

Why a large token batch: streaming P fp16 weights at 150 GB/s takes 2P / 150e9 s and multiplying them with
T tokens at the wafer's peak takes 2TP / peak, so a layer is bound by weight I/O unless T is in the tens of
thousands of tokens per system (hardware.md §3.1 item 7; weight-streaming training runs ~1,000 sequences of
2,048 tokens per step). With M = 2048 x 64 = 131,072 tokens the roofline is compute, and the ratio measures
how well the mapping uses the PEs, not how long MemoryX takes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from wafercc.ir import parse
from wafercc.passes import run_pipeline

D_MODEL, D_FF = 12288, 49152
MATMULS = (
    ("qkv", D_MODEL, 3 * D_MODEL),
    ("attn_out", D_MODEL, D_MODEL),
    ("fc1", D_MODEL, D_FF),
    ("fc2", D_FF, D_MODEL),
)
MATMULS_BY = {name: (k, n) for name, k, n in MATMULS}
MAPPING = "partition,tile,place,route,memplan,cost"


def block_wir(tokens: int, dtype: str, target: str) -> str:
    """One block's matmuls as a WIR module; each takes its input as an argument (attention itself is left
    out: its two products have no weights to stream, and are not what this measures)."""
    args = ", ".join(f"%x_{name}: tensor<{tokens}x{k}x{dtype}>" for name, k, _ in MATMULS)
    results = ", ".join(f"tensor<{tokens}x{n}x{dtype}>" for _, _, n in MATMULS)
    lines = [f'module @gpt3_block attributes {{mode = "stream", target = "{target}"}} {{']
    for name, k, n in MATMULS:
        lines.append(f"  weight @{name}.weight : tensor<{k}x{n}x{dtype}>")
        lines.append(f"  weight @{name}.bias : tensor<{n}x{dtype}>")
    lines.append(f"  func @forward({args}) -> ({results}) {{")
    for name, _, n in MATMULS:
        lines.append(f"    %w_{name} = weight.get @{name}.weight : tensor<{MATMULS_BY[name][0]}x{n}x{dtype}>")
        lines.append(f"    %b_{name} = weight.get @{name}.bias : tensor<{n}x{dtype}>")
        lines.append(f"    %y_{name} = addmm %b_{name}, %x_{name}, %w_{name} : tensor<{tokens}x{n}x{dtype}>")
    lines.append("    return " + ", ".join(f"%y_{name}" for name, _, _ in MATMULS))
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="wse2")
    ap.add_argument("--tokens", type=int, default=2048 * 64, help="M: tokens per system per step")
    ap.add_argument("--dtype", default="f16")
    ap.add_argument("--goal", type=float, default=1.15, help="the worst estimate/roofline ratio allowed")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    module = run_pipeline(parse(block_wir(args.tokens, args.dtype, args.target)), MAPPING)
    took = time.perf_counter() - start
    layers = sorted(module.layers.values(), key=lambda layer: layer.attrs["index"])
    clock = module.attrs["plan.totals"]["seconds"] / module.attrs["plan.totals"]["cycles"]
    print(
        f"GPT-3 block matmuls, M = {args.tokens:,} tokens, {args.dtype}, on {args.target} (stream); "
        f"mapped in {took:.2f} s"
    )
    head = (
        f"{'layer':<14} {'K x N':>13} {'rect':>9} {'passes':>6} {'compute':>9} {'ingress':>9} {'fabric':>9} "
        f"{'estimate':>10} {'roofline':>10} {'by':>8} {'ratio':>6} {'bound':>8} {'util':>6}"
    )
    print(head)
    print("-" * len(head))
    worst = 0.0

    def ms(cycles: float) -> str:
        return f"{cycles * clock * 1e3:>7.2f}ms"

    for layer in layers:
        a, c = layer.attrs, layer.attrs["cost"]
        ratio = c["total"] / c["roofline"]
        worst = max(worst, ratio)
        by = a["estimate"]["roofline_by"]
        print(
            f"{layer.name:<14} {a['dims']['K']:>6}x{a['dims']['N']:<6} {a['rect'][2]:>4}x{a['rect'][3]:<4} "
            f"{a['tiling']['passes']:>6} {ms(c['compute'])} {ms(c['ingress'])} {ms(c['fabric'])} "
            f"{c['total'] * clock * 1e3:>8.2f}ms {c['roofline'] * clock * 1e3:>8.2f}ms "
            f"{by:>8} {ratio:>6.3f} {c['bound']:>8} {c['utilization']:>6.1%}"
        )
    verdict = "meets" if worst <= args.goal else "MISSES"
    print(f"worst estimate/roofline = {worst:.3f}; goal <= {args.goal}: {verdict}")
    return 0 if worst <= args.goal else 1


if __name__ == "__main__":
    sys.exit(main())
