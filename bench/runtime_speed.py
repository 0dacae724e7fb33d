"""Runtime speed against eager PyTorch on a GPT-2-small-shaped model (12 layers, d 768, 12 heads,
vocab 50257), batch 1, sequence 128, random weights.

    python bench/runtime_speed.py [--runs 7] [--seq 128] [--layers 12]

Each side runs in its own subprocess, one after the other, so that neither library's thread pool is
spinning while the other one computes (torch's OpenMP pool and numpy's BLAS pool, kept awake in one
process, roughly double both timings):

    1. compile   build the model (seeded), compile it once to a temporary directory, save the input ids
    2. eager     rebuild the same model (same seed), warm up, time ``--runs`` forwards, save the logits
    3. runtime   open the compiled directory, warm up, time ``--runs`` forwards (plan-faithful execution,
                 the runtime's default for a compiled model), then the same with the plan off (one
                 kernel per op); save the logits

Prints the median of each side, runtime/eager for the graph-level runtime (goal <= 2.0) and for the
plan-faithful runtime (goal <= 3.0), and the max abs error between the logits.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

GOAL = 2.0  # the graph-level runtime (issue 4)
PLAN_GOAL = 3.0  # the runtime following the plan's tiles, routes and chunks (issue 6)
VOCAB = 50257


def build(layers: int, seq: int):
    import torch
    import transformers
    from torch import nn

    class Logits(nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids):
            return self.lm(input_ids=input_ids).logits

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=layers,
        n_embd=768,
        n_head=12,
        n_positions=max(128, seq),
        vocab_size=VOCAB,
        use_cache=False,
        attn_implementation="eager",
    )
    return Logits(transformers.GPT2LMHeadModel(cfg)).eval()


def step_compile(work: Path, args) -> dict:
    import numpy as np
    import torch

    import wafercc

    model = build(args.layers, args.seq)
    ids = torch.randint(0, VOCAB, (1, args.seq), generator=torch.Generator().manual_seed(1))
    np.savez(work / "inputs.npz", input_ids=ids.numpy())
    t = time.perf_counter()
    fallback = ""
    try:
        result = wafercc.compile(model, (ids,), name="gpt2_small", emit=args.emit, out_dir=work / "model")
    except wafercc.WaferError as e:  # a plan that cannot be made is the mapping's problem: still time the rest
        if args.emit == "graph":
            raise
        fallback = str(e).splitlines()[0]
        result = wafercc.compile(model, (ids,), name="gpt2_small", emit="graph", out_dir=work / "model")
    return {
        "seconds": time.perf_counter() - t,
        "ops": len(result.module.func().ops),
        "fallback": fallback,
        "weight_bytes": sum(a.nbytes for a in result.weights.values()),
    }


def step_eager(work: Path, args) -> dict:
    import numpy as np
    import torch

    model = build(args.layers, args.seq)
    ids = torch.from_numpy(np.load(work / "inputs.npz")["input_ids"])
    times = []
    with torch.no_grad():
        for i in range(args.runs + args.warmup):
            t = time.perf_counter()
            out = model(ids)
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
    np.save(work / "eager.npy", out.numpy())
    return {"times": times, "threads": torch.get_num_threads()}


def step_runtime(work: Path, args) -> dict:
    import numpy as np

    import runtime
    from wafercc.ir import parse_file

    module = parse_file(work / "model" / "model.wir")
    res = {}
    with runtime.Store(work / "model") as store:
        for label, plan in (("plan", None), ("no_plan", False)):
            interp = runtime.Interpreter(module, store, plan=plan)
            inputs = runtime.load_inputs(work / "inputs.npz", interp.func)
            times = []
            for i in range(args.runs + args.warmup):
                t = time.perf_counter()
                r = interp.run(inputs)
                if i >= args.warmup:
                    times.append(time.perf_counter() - t)
            np.save(work / f"runtime_{label}.npy", r.outputs[0])
            res[label] = {"times": times, "planned": interp.plan}
    return res


STEPS = {"compile": step_compile, "eager": step_eager, "runtime": step_runtime}


def child(step: str, work: Path, argv: list[str], threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:  # both libraries' pools: torch (OpenMP) and numpy (OpenBLAS or MKL)
        env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    proc = subprocess.run(
        [sys.executable, __file__, "--step", step, "--work", str(work), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"the {step} step failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed forwards per side (default 7; median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--emit", default="routed", help="compile stage to run (default routed: the full plan)")
    ap.add_argument("--threads", type=int, help="threads for both sides (default: each library's own default)")
    ap.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:  # inside a subprocess: one side only
        import warnings

        warnings.simplefilter("ignore")
        print(json.dumps(STEPS[args.step](Path(args.work), args)))
        return

    import numpy as np

    argv = [
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
        "--seq",
        str(args.seq),
        "--layers",
        str(args.layers),
        "--emit",
        args.emit,
    ]
    with tempfile.TemporaryDirectory(prefix="wafercc-speed-") as tmp:
        work = Path(tmp)
        c = child("compile", work, argv, args.threads)
        print(
            f"GPT-2 small shape ({args.layers} layers, d 768, 12 heads, vocab {VOCAB}), batch 1, seq {args.seq}: "
            f"{c['ops']} ops, {c['weight_bytes'] / 1e6:.0f} MB of weights; compiled once in {c['seconds']:.1f} s"
        )
        if c["fallback"]:
            print(
                f"  NOTE: compiling to --emit {args.emit} failed ({c['fallback']}); timing the graph-level "
                "module instead (no plan)"
            )
        e = child("eager", work, argv, args.threads)
        r = child("runtime", work, argv, args.threads)
        want = np.load(work / "eager.npy")
        errors = {k: float(np.abs(np.load(work / f"runtime_{k}.npy") - want).max()) for k in r}
        scale = float(np.abs(want).max())

    eager = statistics.median(e["times"])
    print(
        f"measured in separate subprocesses, one after the other (eager: torch with {e['threads']} threads; "
        f"runtime: numpy); median of {args.runs} runs after {args.warmup} warm-up runs each"
    )
    print(f"  eager PyTorch             {eager * 1e3:9.1f} ms")
    for label, title in (("plan", "runtime (plan-faithful)"), ("no_plan", "runtime (plan off)")):
        t = statistics.median(r[label]["times"])
        note = "" if label != "plan" or r[label]["planned"] else "  (the module has no plan: same as plan off)"
        print(
            f"  {title:<25} {t * 1e3:9.1f} ms   runtime/eager {t / eager:5.2f}   max abs error "
            f"{errors[label]:.3g} (logits up to {scale:.3g}){note}"
        )
    for label, what, goal in (("no_plan", "graph-level runtime", GOAL), ("plan", "plan-faithful runtime", PLAN_GOAL)):
        ratio = statistics.median(r[label]["times"]) / eager
        print(f"{what} / eager = {ratio:.2f}  (goal <= {goal}: {'met' if ratio <= goal else 'NOT met'})")


if __name__ == "__main__":
    main()
