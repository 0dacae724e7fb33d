"""Compile-time benchmarks, each a ratio against a baseline measured in the same run.

1. GPT-2 small (12 layers, d 768, seq 128): wafercc's own work (import, cleanup passes, mapping onto wse2,
   printing) / torch.export capture (export + run_decompositions). Goal <= 0.2.
2. The whole `wafercc.compile` (capture included) / torch.compile(backend="inductor")'s first call on the same
   model. Goal <= 0.2.
3. Planning a GPT-3 175B config (wse2) and a 1T config (wse3) on the meta device, through the CLI in a
   subprocess: wall time and peak RSS. Goals: 175B <= 20 s; 1T <= 60 s and <= 4 GB.

Run: python bench/compile_speed.py [--skip-inductor] [--skip-large]
The machine is shared and noisy: compare the ratios, and run twice if a figure looks off.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def gpt2_small():
    import torch
    import transformers

    cfg = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=128, vocab_size=50257)
    cfg._attn_implementation = "eager"

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = transformers.GPT2LMHeadModel(cfg).eval()

        def forward(self, ids):
            return self.m(ids, use_cache=False).logits

    torch.manual_seed(0)
    return LM().eval(), (torch.randint(0, cfg.vocab_size, (1, 128)),)


def median_time(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def bench_passes(model, inputs) -> None:
    import torch

    import wafercc
    from wafercc.frontend import capture, import_graph
    from wafercc.ir import print_module
    from wafercc.passes import DEFAULT_PIPELINE, run_pipeline
    from wafercc.mapping.tiling import _search

    with torch.no_grad():
        export_s = median_time(lambda: torch.export.export(model, inputs).run_decompositions())
    captured = capture(model, inputs)

    def ours():
        _search.cache_clear()  # every run cold, as a first compile is
        m = import_graph(captured, name="gpt2").module
        m = run_pipeline(m, DEFAULT_PIPELINE)
        m.attrs.update(target="wse2", mode="stream")
        m = run_pipeline(m, "partition,tile,place,route,memplan,cost")
        print_module(m)

    ours_s = median_time(ours, runs=5)
    print(
        f"1. GPT-2 small: torch.export + run_decompositions {export_s:.2f} s; wafercc import + passes + mapping "
        f"+ print {ours_s:.2f} s; ratio {ours_s / export_s:.3f} (goal <= 0.2)"
    )
    whole = median_time(lambda: wafercc.compile(model, inputs, name="gpt2"), runs=1)
    return whole


def bench_inductor(whole: float) -> None:
    """torch.compile's first call, cold: a subprocess with an empty inductor cache directory and the FX graph
    caches off (a warm cache makes a 'first' call several times faster)."""
    code = (
        "import time, warnings, sys; warnings.filterwarnings('ignore'); sys.path.insert(0, '.')\n"
        "import torch; from bench.compile_speed import gpt2_small\n"
        "model, inputs = gpt2_small(); compiled = torch.compile(model, backend='inductor')\n"
        "t = time.perf_counter()\n"
        "with torch.no_grad(): compiled(*inputs)\n"
        "print(time.perf_counter() - t)\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(
            os.environ,
            TORCHINDUCTOR_CACHE_DIR=cache,
            TORCHINDUCTOR_FX_GRAPH_CACHE="0",
            TORCHINDUCTOR_AUTOGRAD_CACHE="0",
            PYTHONWARNINGS="ignore",
        )
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode:
        print(f"2. torch.compile failed:\n{r.stderr[-2000:]}")
        return
    first = float(r.stdout.strip().splitlines()[-1])
    print(
        f"2. whole wafercc.compile {whole:.2f} s; torch.compile(inductor) first call, cold cache {first:.2f} s; "
        f"ratio {whole / first:.3f} (goal <= 0.2)"
    )


def bench_large(config: str, target: str, goal_s: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, GPT_CONFIG=config, PYTHONWARNINGS="ignore")
        cmd = [
            sys.executable,
            "-m",
            "wafercc.cli",
            "compile",
            "examples/gpt_1t.py",
            "--target",
            target,
            "-o",
            str(Path(d) / "out"),
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if r.returncode:
            print(f"3. {config}: FAILED\n{r.stderr}")
            return
        plan = next((line.strip() for line in r.stdout.splitlines() if "plan on" in line), "")
        peak = max(rss, before) / 2**20  # KiB -> GiB
        print(
            f"3. {config} on {target}: {wall:.1f} s wall (goal <= {goal_s:.0f} s), peak RSS {peak:.2f} GiB "
            f"(goal <= 4)\n   {plan}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--skip-inductor", action="store_true", help="skip torch.compile (about 30 s)")
    p.add_argument("--skip-large", action="store_true", help="skip the 175B and 1T plans")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    model, inputs = gpt2_small()
    whole = bench_passes(model, inputs)
    if not args.skip_inductor:
        bench_inductor(whole)
    if not args.skip_large:
        # The children's peak RSS is a running maximum: measure the smaller config first.
        bench_large("175b", "wse2", 20)
        bench_large("1t", "wse3", 60)


if __name__ == "__main__":
    main()
