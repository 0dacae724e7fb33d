"""A training step does not hold its gradients: each streams into the store as soon as the backward has made it
(and its weight has been read for the last time), so the peak RSS of a step grows by about one gradient and one
weight, not by all of them (docs/training.md, "Memory"). 8 x Linear(2048, 2048): 134 MB of gradients;
measured +17 MB for a step, also with 2 micro-batches and clipping (+256 MB, +406 MB when the step held every gradient
and then copied them all on the way out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS, WIDTH = 8, 2048

# A torch-free process: one warm-up step, then the peak RSS (reset through clear_refs) of a second step over the
# RSS before it. Both steps run without a commit between them, so the second updates the weights in place.
CHILD = r"""
import json, sys
import numpy as np
from runtime.training import TrainStep

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

data = np.load(sys.argv[2])
inputs = [data["x"], data["y"]]
if int(sys.argv[3]) == 2:  # two micro-batches
    inputs = [inputs, [data["y"], data["x"]]]
with TrainStep(sys.argv[1]) as step:
    step.run(inputs)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = status("VmRSS")
    loss = step.run(inputs)
    print(json.dumps({"before": before, "peak": status("VmHWM"), "loss": loss, "torch": "torch" in sys.modules}))
"""


def _deep_mlp():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class DeepMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)])

        def forward(self, x, y):
            for layer in self.layers:
                x = torch.relu(layer(x))
            return F.mse_loss(x, y)

    torch.manual_seed(0)
    return DeepMLP().train()


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
@pytest.mark.parametrize("micro_batches, clip_norm", [(1, None), (2, 1.0)])
def test_a_step_holds_about_one_gradient_not_all(tmp_path, micro_batches, clip_norm):
    """Accumulation and clipping too: the store keeps what waits in its memory-mapped accumulator (+17 MB)."""
    import torch

    from runtime.optim import AdamW
    from wafercc.driver import compile_training

    x, y = torch.randn(8, WIDTH), torch.randn(8, WIDTH)
    compile_training(
        _deep_mlp(),
        (x, y),
        AdamW(lr=1e-4),
        micro_batches=micro_batches,
        clip_norm=clip_norm,
        name="deep_mlp",
        out_dir=tmp_path / "m",
    )
    np.savez(tmp_path / "in.npz", x=x.numpy(), y=y.numpy())
    grads = LAYERS * (WIDTH * WIDTH + WIDTH) * 4
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "m"), str(tmp_path / "in.npz"), str(micro_batches)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert not m["torch"] and np.isfinite(m["loss"])
    growth = m["peak"] - m["before"]
    # One gradient (16.8 MB) and one weight's pages (16.8 MB) at a time, and a few store chunks; holding every
    # gradient to the end of the step is 134 MB by itself.
    assert growth < 0.4 * grads, f"a step grew peak RSS by {growth / 1e6:.0f} MB: {grads / 1e6:.0f} MB of gradients"


def test_each_gradient_streams_after_the_last_read_of_its_own_weight(compiled_training, tmp_path):
    """The store updates a weight in place during the last micro-batch, so its gradient must not stream out
    before the step's last read of that weight (tests/runtime/test_runtime_stream.py checks the schedule)."""
    import shutil

    from runtime.training import TrainStep

    d = tmp_path / "m"
    shutil.copytree(compiled_training("train_mlp", "sgd"), d)
    with TrainStep(d) as step:
        grads = {i: (target,) for i, (role, target) in enumerate(step.roles) if role == "grad"}
        assert grads and step.interp.stream == grads
        assert sorted(target for (target,) in grads.values()) == sorted(step.store.params)


@pytest.mark.parametrize("strided", [False, True])
def test_a_gradient_streams_in_row_major_chunks_strided_or_not(strided):
    """A strided gradient (a transpose's view) is copied a chunk at a time, never whole; the chunks and their
    offsets are those of the contiguous gradient (the clipped norm sums squares chunk by chunk: same chunks, same
    bits)."""
    from runtime.training import _GradSink

    class Update:
        def __init__(self):
            self.calls = []

        def add_grad(self, name, g, offset):
            assert g.dtype == np.float32 and g.flags.c_contiguous
            self.calls.append((name, offset, g.copy()))

    g = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    value = np.asfortranarray(g) if strided else g  # same values, row-major order read through strides
    assert value.flags.c_contiguous != strided

    class Inline:  # the optimizer's thread, done in place
        def put(self, fn, args, nbytes):
            fn(*args)

    up = Update()
    _GradSink(up, Inline(), 8, [("loss", None), ("grad", "w")], None, 1)(1, value)
    assert [(n, o) for n, o, _ in up.calls] == [("w", 0), ("w", 8), ("w", 16), ("w", 24), ("w", 32)]
    np.testing.assert_array_equal(np.concatenate([c for _, _, c in up.calls]), g.reshape(-1))
