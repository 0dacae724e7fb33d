"""Weight streaming keeps memory flat: peak RSS of the runtime over the size of the weights it runs.

    python bench/stream_memory.py [--layers 16] [--width 4096] [--batch 8] [--keep DIR]

Builds a deep MLP (default 16 x Linear(4096, 4096) + ReLU: 1.07 GB of fp32 weights), compiles it to a
temporary directory (model.wir + weights.safetensors + manifest.json), frees the torch model, then runs
the runtime on that directory in a subprocess that imports neither torch nor the compiler's torch side,
so that only the runtime's memory is counted. Prints the subprocess's peak RSS divided by the total
weight bytes. Goal: <= 0.3 (the whole store is never resident at once).

Peak RSS is the subprocess's VmHWM (/proc/self/status): the high-water mark of its own address space.
``getrusage(RUSAGE_SELF).ru_maxrss`` is printed beside it, but on Linux it survives exec(): a child forked
from this (torch-sized) parent starts with the parent's RSS as its max, so it can overstate the runtime.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

GOAL = 0.3

# The measured process: the runtime alone, on a compiled directory.
CHILD = r"""
import json, resource, sys, time
import runtime
t = time.perf_counter()
r = runtime.run(sys.argv[1], seed=0)
seconds = time.perf_counter() - t
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({
    "hwm_bytes": int(status["VmHWM"].split()[0]) * 1024,  # this process image's peak RSS (KiB)
    "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
    "seconds": seconds,
    "streamed": r.stats.weight_bytes_streamed,
    "peak_resident_weights": r.stats.peak_resident_weight_bytes,
    "peak_activations": r.stats.peak_activation_bytes,
    "torch_loaded": "torch" in sys.modules,
}))
"""


def build(layers: int, width: int):
    """The MLP, filled cheaply and deterministically: made on the meta device (no default init, which
    would cost a kaiming pass over 1 GB), materialized once, filled in place with a seeded uniform."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    blocks = []
    for _ in range(layers):
        blocks += [nn.Linear(width, width, device="meta"), nn.ReLU()]
    model = nn.Sequential(*blocks).to_empty(device="cpu").eval()
    bound = width**-0.5
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-bound, bound)
    return model


def compile_to(out: Path, layers: int, width: int, batch: int) -> tuple[int, float]:
    """Compile into ``out``; returns the store's weight bytes and the compile time. Everything torch
    allocated is dropped before returning."""
    import torch

    import wafercc

    model = build(layers, width)
    x = torch.randn(batch, width)
    t = time.perf_counter()
    result = wafercc.compile(model, (x,), name="deep_mlp", out_dir=out)
    seconds = time.perf_counter() - t
    nbytes = sum(a.nbytes for a in result.weights.values())
    del result, model, x  # the compile's numpy weights view the torch parameters: drop both together
    gc.collect()
    return nbytes, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--keep", metavar="DIR", help="compile here and keep it (default: a temporary directory)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="wafercc-stream-") as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "deep_mlp"
        t = time.perf_counter()
        nbytes, compile_s = compile_to(out, args.layers, args.width, args.batch)
        print(
            f"model: {args.layers} x Linear({args.width}, {args.width}) + ReLU, batch {args.batch}: "
            f"{nbytes / 1e9:.3f} GB of fp32 weights; built and compiled in {time.perf_counter() - t:.1f} s "
            f"(compile {compile_s:.1f} s) -> {out}"
        )
        store = (out / "weights.safetensors").stat().st_size
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(out)], capture_output=True, text=True, cwd=ROOT, check=False
        )
        if proc.returncode != 0:
            sys.exit(f"the runtime failed:\n{proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])

    ratio = r["hwm_bytes"] / nbytes
    print(
        f"runtime subprocess: {r['seconds']:.2f} s; streamed {r['streamed'] / 1e9:.3f} GB "
        f"(store file {store / 1e9:.3f} GB); runtime's own count: peak resident weights "
        f"{r['peak_resident_weights'] / 1e6:.1f} MB, peak activations {r['peak_activations'] / 1e6:.2f} MB"
        + ("; NOTE: torch was imported in the subprocess" if r["torch_loaded"] else "")
    )
    print(
        f"getrusage ru_maxrss {r['maxrss_bytes'] / 1e6:.1f} MB (includes the parent's RSS at fork: see the docstring)"
    )
    print(
        f"peak RSS (VmHWM) {r['hwm_bytes'] / 1e6:.1f} MB / weights {nbytes / 1e6:.1f} MB = {ratio:.3f}  "
        f"(goal <= {GOAL}: {'met' if ratio <= GOAL else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
