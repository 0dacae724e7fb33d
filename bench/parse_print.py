"""Parse / print / verify speed of WIR on a 100,000-op module, against json.loads of the same ops.

    python bench/parse_print.py [N_OPS] [--lark]

Prints ops/second for each phase (median of 3 runs) and the ratio of each phase's time to ``json.loads``
of a JSON document holding the same ops, measured in the same run (so the ratio is comparable across
machines; the absolute figures are not). ``parse`` pauses the cyclic garbage collector while it builds a
module, so ``json.loads`` is timed with it paused too. ``--lark`` also times the Lark parser alone, the path irregular
text takes (slow: ~10x parse).
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from wafercc.ir import parse, print_module, verify
from wafercc.ir.parser import parse_lark


def wir_text(n: int) -> str:
    lines = ["module @bench {", "  func @forward(%x: tensor<8x64xf32>) -> (tensor<8x64xf32>) {"]
    prev = "x"
    for i in range(n):
        lines.append(f'    %{i} = add %{prev}, %x {{alpha = 1}} : tensor<8x64xf32> loc("m.py":{i})')
        prev = str(i)
    lines += [f"    return %{prev}", "  }", "}", ""]
    return "\n".join(lines)


def json_text(n: int) -> str:
    prev = "x"
    ops = []
    for i in range(n):
        ops.append(
            {
                "results": [str(i)],
                "op": "add",
                "operands": [prev, "x"],
                "attrs": {"alpha": 1},
                "types": ["tensor<8x64xf32>"],
                "loc": ["m.py", i],
            }
        )
        prev = str(i)
    return json.dumps(
        {
            "module": "bench",
            "funcs": [{"name": "forward", "args": [["x", "tensor<8x64xf32>"]], "ops": ops, "returns": [prev]}],
        }
    )


def median_time(fn, repeat: int = 3, pause_gc: bool = False) -> float:
    """Median wall time of ``fn()``; ``pause_gc`` runs it with the cyclic GC paused, as ``parse`` does."""
    times = []
    for _ in range(repeat):
        gc.collect()
        if pause_gc:
            gc.disable()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        gc.enable()
    return statistics.median(times)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--lark"]
    n = int(args[0]) if args else 100_000
    text, doc = wir_text(n), json_text(n)
    m = parse(text, "bench.wir")
    assert print_module(m) == text, "round trip failed"
    base = median_time(lambda: json.loads(doc), pause_gc=True)
    rows = [
        ("json.loads (baseline)", base),
        ("parse", median_time(lambda: parse(text, "bench.wir"))),
        ("print", median_time(lambda: print_module(m))),
        ("verify (generic)", median_time(lambda: verify(m))),
    ]
    if "--lark" in sys.argv:
        rows.append(("parse, Lark only", median_time(lambda: parse_lark(text, "bench.wir"), pause_gc=True)))
    print(f"{n} ops, {len(text) / 1e6:.1f} MB of WIR, median of 3")
    for name, t in rows:
        print(f"  {name:<22} {t:8.3f} s  {n / t:>12,.0f} ops/s  {t / base:6.1f}x json.loads")


if __name__ == "__main__":
    main()
