"""Training benchmarks (issue 15): a training step against eager PyTorch, the memory of a streamed training run,
and the 1T training plan.

    python bench/train_step.py [--part step,memory,plan1t] [--runs 3] [--layers 12] [--seq 128]

1. step: GPT-2-small shape (12 layers, d 768, 12 heads, vocab 50257, tied embeddings; batch 1, seq 128; the
   model of examples/train_gpt.py at that size), AdamW. One optimizer step in the runtime (``TrainStep``: the
   joint forward + backward following the plan, the gradients streamed into the training store, AdamW in
   MemoryX) against one eager PyTorch step (forward, backward, ``torch.optim.AdamW.step``). Each side in its
   own subprocess (thread pools of the two libraries never spin together), medians of ``--runs`` after one
   warm-up step, from the same initial weights and data: the first losses are printed side by side. Goal <= 2.0.
2. memory: a deep MLP of 16 x Linear(4096, 4096) (1.07 GB of fp32 weights; forward(x, y) returns the MSE loss),
   compiled with --train (AdamW: 2.15 GB of state), then ``wafercc train DIR --steps 2 --checkpoint-every 1`` in
   a subprocess that imports no torch: its peak RSS (VmHWM) / (weights + optimizer state). Goal <= 0.3.
3. plan1t: ``wafercc compile examples/gpt_1t.py --train --target wse3 --no-weights``: wall time and peak RSS of
   the 1T training plan (goal <= 120 s and <= 4 GB), or what refuses it.

Ratios are measured in one run; the machine is shared (2 cores): rerun when a figure looks off.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

STEP_GOAL, MEMORY_GOAL, PLAN_SECONDS_GOAL, PLAN_RSS_GOAL = 2.0, 0.3, 120.0, 4 << 30
VOCAB, LR = 50257, 1e-4


# -- 1. the training step ---------------------------------------------------------------------------------


def gpt(layers: int, seq: int):
    """examples/train_gpt.py's GPTLM at the GPT-2-small shape (its module constants set before building)."""
    import torch

    spec = importlib.util.spec_from_file_location("train_gpt", ROOT / "examples" / "train_gpt.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.VOCAB, mod.D_MODEL, mod.N_HEADS, mod.N_LAYERS, mod.SEQ = VOCAB, 768, 12, layers, seq
    torch.manual_seed(0)
    model = mod.GPTLM().train()
    tokens = torch.randint(0, VOCAB, (1, seq + 1), generator=torch.Generator().manual_seed(1))
    return model, (tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())


def step_compile(work: Path, args) -> dict:
    import numpy as np

    from runtime.optim import AdamW
    from wafercc.driver import compile_training

    model, (idx, targets) = gpt(args.layers, args.seq)
    np.savez(work / "inputs.npz", idx=idx.numpy(), targets=targets.numpy())
    t = time.perf_counter()
    result = compile_training(model, (idx, targets), AdamW(lr=LR), name="gpt2_small_train", out_dir=work / "model")
    params = sum(a.size for s, a in result.weights.items() if result.kinds[s] == "parameter")
    return {"seconds": time.perf_counter() - t, "ops": len(result.module.func().ops), "params": int(params)}


def step_eager(work: Path, args) -> dict:
    import numpy as np
    import torch

    model, _ = gpt(args.layers, args.seq)
    data = np.load(work / "inputs.npz")
    idx, targets = torch.from_numpy(data["idx"]), torch.from_numpy(data["targets"])
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    times, losses = [], []
    for i in range(args.runs + 1):
        t = time.perf_counter()
        opt.zero_grad()
        loss = model(idx, targets)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if i:
            times.append(time.perf_counter() - t)
    return {"times": times, "losses": losses, "threads": torch.get_num_threads()}


def step_runtime(work: Path, args) -> dict:
    import numpy as np

    from runtime.training import TrainStep

    data = np.load(work / "inputs.npz")
    inputs = [data["idx"], data["targets"]]
    times, losses = [], []
    with TrainStep(work / "model") as step:
        for i in range(args.runs + 1):
            t = time.perf_counter()
            losses.append(step.run(inputs))
            if i:
                times.append(time.perf_counter() - t)
    return {"times": times, "losses": losses, "torch_loaded": "torch" in sys.modules}


def part_step(args) -> None:
    argv = ["--runs", str(args.runs), "--layers", str(args.layers), "--seq", str(args.seq)]
    with tempfile.TemporaryDirectory(prefix="wafercc-train-step-", dir=args.tmp) as tmp:
        work = Path(tmp)
        c = child("compile", work, argv)
        print(
            f"step: GPT-2 small shape ({args.layers} layers, d 768, 12 heads, vocab {VOCAB}, tied), batch 1, seq "
            f"{args.seq}, AdamW: {c['params'] / 1e6:.1f}M parameters, {c['ops']} ops; compiled in {c['seconds']:.0f} s"
        )
        e = child("eager", work, argv)
        r = child("runtime", work, argv)
    em, rm = statistics.median(e["times"]), statistics.median(r["times"])
    print(f"  eager PyTorch step  {em * 1e3:8.0f} ms  (median of {len(e['times'])}; {e['threads']} threads)")
    print(f"  runtime step        {rm * 1e3:8.0f} ms  (median of {len(r['times'])}; torch loaded: {r['torch_loaded']})")
    print(
        "  losses, runtime vs eager: "
        + ", ".join(f"{a:.6f}/{b:.6f}" for a, b in zip(r["losses"], e["losses"]))
        + f"  (max abs {max(abs(a - b) for a, b in zip(r['losses'], e['losses'])):.2g})"
    )
    ratio = rm / em
    verdict = "met" if ratio <= STEP_GOAL else "NOT met"
    print(f"  runtime / eager training step: {ratio:.2f}  (goal <= {STEP_GOAL}: {verdict})")


# -- 2. memory of a streamed training run ------------------------------------------------------------------


def deep_mlp(layers: int, width: int):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class DeepMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(width, width, device="meta") for _ in range(layers)])

        def forward(self, x, y):
            for layer in self.layers:
                x = torch.relu(layer(x))
            return F.mse_loss(x, y)

    torch.manual_seed(0)
    model = DeepMLP().to_empty(device="cpu").train()
    bound = width**-0.5
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-bound, bound)
    return model


def step_memory_compile(work: Path, args) -> dict:
    import torch

    from runtime.optim import AdamW
    from wafercc.driver import compile_training

    model = deep_mlp(args.mlp_layers, args.width)
    x, y = torch.randn(args.batch, args.width), torch.randn(args.batch, args.width)
    t = time.perf_counter()
    result = compile_training(model, (x, y), AdamW(lr=1e-4), name="deep_mlp_train", out_dir=work / "model")
    weights = sum(a.nbytes for a in result.weights.values())
    return {"seconds": time.perf_counter() - t, "weight_bytes": int(weights), "state_bytes": int(2 * weights)}


# The measured process: `wafercc train` itself, in a process that reports its own peak RSS when done.
TRAIN_CHILD = r"""
import json, sys, time
from wafercc.cli import main
t = time.perf_counter()
code = main(sys.argv[1:])
seconds = time.perf_counter() - t
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({"code": code, "seconds": seconds, "hwm_bytes": int(status["VmHWM"].split()[0]) * 1024,
                  "torch_loaded": "torch" in sys.modules}))
"""


def part_memory(args) -> None:
    argv = ["--mlp-layers", str(args.mlp_layers), "--width", str(args.width), "--batch", str(args.batch)]
    with tempfile.TemporaryDirectory(prefix="wafercc-train-memory-", dir=args.tmp) as tmp:
        work = Path(tmp)
        c = child("memory_compile", work, argv)
        cmd = ["train", str(work / "model"), "--steps", "2", "--checkpoint-every", "1", "--quiet"]
        proc = subprocess.run(
            [sys.executable, "-c", TRAIN_CHILD, *cmd], capture_output=True, text=True, cwd=ROOT, check=False
        )
        if proc.returncode != 0:
            sys.exit(f"wafercc train failed:\n{proc.stderr}")
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        store = sum(p.stat().st_size for p in (work / "model" / "store").rglob("*") if p.is_file())
    total = c["weight_bytes"] + c["state_bytes"]
    ratio = m["hwm_bytes"] / total
    print(
        f"memory: deep MLP {args.mlp_layers} x Linear({args.width}, {args.width}), batch {args.batch}, AdamW: "
        f"{c['weight_bytes'] / 1e9:.2f} GB of weights + {c['state_bytes'] / 1e9:.2f} GB of state "
        f"(store on disk {store / 1e9:.2f} GB); compiled in {c['seconds']:.0f} s"
    )
    print(
        f"  wafercc train --steps 2 --checkpoint-every 1: {m['seconds']:.0f} s, peak RSS {m['hwm_bytes'] / 1e6:.0f} MB "
        f"(torch loaded: {m['torch_loaded']})"
    )
    print(
        f"  peak RSS / (weights + optimizer state): {ratio:.3f}  (goal <= {MEMORY_GOAL}: "
        f"{'met' if ratio <= MEMORY_GOAL else 'NOT met'})"
    )


# -- 3. the 1T training plan ----------------------------------------------------------------------------------


def part_plan1t(args) -> None:
    with tempfile.TemporaryDirectory(prefix="wafercc-train-1t-", dir=args.tmp) as tmp:
        out = Path(tmp) / "gpt_1t_train"
        cmd = ["compile", "examples/gpt_1t.py", "--train", "--target", "wse3", "--no-weights", "-o", str(out)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "wafercc.cli", *cmd], capture_output=True, text=True, cwd=ROOT, check=False
        )
        seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss = after.ru_maxrss * 1024
    # the compile's own CPU time: wall time over it says how much of the 2 shared cores the compile got
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(f"plan1t: wafercc {' '.join(cmd[:-2])} ... : exit {proc.returncode} after {seconds:.1f} s")
    if proc.returncode != 0:
        print(f"  NOT measured: {proc.stderr.strip()}")
        return
    stages = [line.removeprefix("wafercc: ") for line in proc.stderr.splitlines() if " took " in line]
    print("  stages over 1 s: " + "; ".join(stages))
    print(
        f"  1T training plan: {seconds:.1f} s (goal <= {PLAN_SECONDS_GOAL:.0f}; CPU {cpu:.1f} s, user + sys), peak RSS "
        f"of the children so far {rss / 2**30:.2f} GiB (goal <= {PLAN_RSS_GOAL / 2**30:.0f})"
    )


# -- driver -------------------------------------------------------------------------------------------------

STEPS = {
    "compile": step_compile,
    "eager": step_eager,
    "runtime": step_runtime,
    "memory_compile": step_memory_compile,
}
PARTS = {"step": part_step, "memory": part_memory, "plan1t": part_plan1t}


def child(step: str, work: Path, argv: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--step", step, "--work", str(work), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"the {step} step failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="step,memory,plan1t", help="which parts, comma-separated (default all)")
    ap.add_argument("--runs", type=int, default=3, help="timed steps per side after one warm-up (default 3)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--mlp-layers", type=int, default=16)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tmp", help="where the compiled directories go (default: the system's temp directory)")
    ap.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:  # inside a subprocess
        import warnings

        warnings.simplefilter("ignore")
        print(json.dumps(STEPS[args.step](Path(args.work), args)))
        return
    parts = args.part.split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        sys.exit(f"unknown --part {unknown[0]} (choose from {', '.join(PARTS)})")
    if args.tmp:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)
    for p in parts:
        PARTS[p](args)


if __name__ == "__main__":
    main()
