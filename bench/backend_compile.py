"""torch.compile(backend="wafercc") first call / torch.compile(backend="inductor") first call, GPT-2 small
(12 layers, d 768, seq 128, as bench/compile_speed.py builds it), inference. Goal <= 0.5.

Each backend runs in its own subprocess with cold caches: an empty inductor cache directory, the FX graph
and AOTAutograd caches off (a warm cache makes a "first" call several times faster); wafercc keeps no cache
across processes. A first call is everything torch.compile does before the first result: Dynamo's trace,
AOTAutograd, the backend's compile (for wafercc: import, cleanup passes, mapping onto wse2) and one run (for
wafercc: the reference runtime). The second call is printed too: what a training loop pays per step.

Run: python bench/backend_compile.py [--backend wafercc] (one backend only: no ratio)
The machine is shared and noisy: compare the ratio, and run twice if a figure looks off.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CODE = """
import time, warnings, sys; warnings.filterwarnings('ignore'); sys.path.insert(0, '.')
import torch; from bench.compile_speed import gpt2_small
model, inputs = gpt2_small(); compiled = torch.compile(model, backend=sys.argv[1])
times = []
for _ in range(2):
    t = time.perf_counter()
    with torch.no_grad():
        out = compiled(*inputs)
    times.append(time.perf_counter() - t)
with torch.no_grad():
    want = model(*inputs)
err = float((out - want).abs().max())
print(times[0], times[1], err)
"""


def first_call(backend: str) -> tuple[float, float, float] | None:
    """(first call s, second call s, max |compiled - eager|) for ``backend``, in a cold subprocess."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(
            os.environ,
            TORCHINDUCTOR_CACHE_DIR=cache,
            TORCHINDUCTOR_FX_GRAPH_CACHE="0",
            TORCHINDUCTOR_AUTOGRAD_CACHE="0",
            PYTHONWARNINGS="ignore",
        )
        r = subprocess.run([sys.executable, "-c", CODE, backend], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode:
        print(f"torch.compile(backend={backend!r}) failed:\n{r.stderr[-2000:]}")
        return None
    first, second, err = (float(v) for v in r.stdout.strip().splitlines()[-1].split())
    print(f"  {backend:8s} first call {first:7.2f} s   second call {second:6.2f} s   max |out - eager| {err:.2g}")
    return first, second, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["wafercc", "inductor"], help="measure one backend only")
    args = ap.parse_args()
    print("GPT-2 small (12 layers, d 768, seq 128), torch.compile first call, cold caches, one subprocess each:")
    backends = [args.backend] if args.backend else ["wafercc", "inductor"]
    got = {b: first_call(b) for b in backends}
    if got.get("wafercc") and got.get("inductor"):
        ratio = got["wafercc"][0] / got["inductor"][0]
        print(f"ratio wafercc / inductor first call {ratio:.3f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
