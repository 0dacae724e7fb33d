"""How close the cost model's predicted time comes to published measurements of real wafer-scale runs.

    python bench/fidelity.py [--case sgemm|gemv|prefill ...] [--layers N]

Each calibration case is a meta-device ``nn.Module`` (no weight memory is allocated) compiled the way the
measurement ran (``with_weights=False``); the plan's ``plan.totals.seconds`` is turned into the published
figure's unit and printed as predicted / published. Clocks follow docs/hardware.md: 0.85 GHz for
measurements taken with the Cerebras SDK's timers (the SGEMM paper), 1.1 GHz for WaferLLM's (its launch
scripts convert cycles at 1.1 GHz).

Cases (sources in docs/hardware.md):
  sgemm-pipeline  fp32 [33000, 33000] x [33000, 33000] with the weights resident (pipeline mode), on the
                  750 x 750 PEs the measurement used: 349.0 TFLOP/s [SGEMM]
  sgemm-stream    the same product with its weights streamed from MemoryX (not how it was measured: shows
                  what weight streaming would cost)
  gemv            bf16 [1, 16384] x [16384, 16384], weights resident, full wse2: 1.2 us [WLLM] Table 6
  prefill         LLaMA3-8B-shaped prefill of 4,096 tokens, bf16, on a 480 x 480 PE grid of a WSE-2:
                  20,320.6 tokens/s [WLLM] Table 3

The LLaMA prefill's 16 GB of weights do not fit in 480 x 480 PEs' SRAM (10.6 GB), so it is planned in
stream mode; ``--layers`` plans fewer identical blocks and adds the missing blocks' time (the blocks are
identical, and in stream mode a model's time is the sum of its layers').
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import wafercc  # noqa: E402


class Linear(nn.Module):
    def __init__(self, k: int, n: int, dtype: torch.dtype):
        super().__init__()
        self.fc = nn.Linear(k, n, bias=False, dtype=dtype)

    def forward(self, x):
        return self.fc(x)


class RMSNorm(nn.Module):
    def __init__(self, d: int, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d, dtype=dtype))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


class LlamaBlock(nn.Module):
    """LLaMA3-8B's block: d 4096, 32 query heads, 8 KV heads of 128, SwiGLU with d_ff 14336 (RoPE left out:
    elementwise, no weights)."""

    def __init__(self, d=4096, heads=32, kv_heads=8, d_ff=14336, dtype=torch.bfloat16):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, d // heads
        self.n1, self.n2 = RMSNorm(d, dtype), RMSNorm(d, dtype)
        self.q = nn.Linear(d, d, bias=False, dtype=dtype)
        self.kv = nn.Linear(d, 2 * kv_heads * self.hd, bias=False, dtype=dtype)
        self.o = nn.Linear(d, d, bias=False, dtype=dtype)
        self.gate_up = nn.Linear(d, 2 * d_ff, bias=False, dtype=dtype)
        self.down = nn.Linear(d_ff, d, bias=False, dtype=dtype)

    def forward(self, x):
        b, t, d = x.shape
        h = self.n1(x)
        q = self.q(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k, v = self.kv(h).view(b, t, 2, self.kv_heads, self.hd).unbind(2)
        rep = self.heads // self.kv_heads
        k = k.transpose(1, 2).repeat_interleave(rep, dim=1)
        v = v.transpose(1, 2).repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(y.transpose(1, 2).reshape(b, t, d))
        g, u = self.gate_up(self.n2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(g) * u)


class Llama(nn.Module):
    def __init__(self, layers: int, vocab=128256, d=4096, dtype=torch.bfloat16):
        super().__init__()
        self.tok = nn.Embedding(vocab, d, dtype=dtype)
        self.blocks = nn.ModuleList(LlamaBlock(dtype=dtype) for _ in range(layers))
        self.norm = RMSNorm(d, dtype)
        self.head = nn.Linear(d, vocab, bias=False, dtype=dtype)

    def forward(self, idx):
        x = self.tok(idx)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x[:, -1:]))  # prefill emits the next token's logits only


class LlamaDecodeBlock(LlamaBlock):
    """The block for one new token against a KV cache of ``T`` positions (given as inputs: the cache is
    activations on the wafer, not weights): K and V of the new token are appended, the token attends to all
    T + 1 positions. Returns the new hidden state and the token's K and V (the cache update)."""

    def forward(self, x, k_cache, v_cache):
        b, t, d = x.shape
        h = self.n1(x)
        q = self.q(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k, v = self.kv(h).view(b, t, 2, self.kv_heads, self.hd).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        rep = self.heads // self.kv_heads
        keys = torch.cat([k_cache, k], dim=2).repeat_interleave(rep, dim=1)
        values = torch.cat([v_cache, v], dim=2).repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, keys, values)
        x = x + self.o(y.transpose(1, 2).reshape(b, t, d))
        g, u = self.gate_up(self.n2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(g) * u), k, v


class LlamaDecode(nn.Module):
    """A LLaMA3-8B-shaped decode step: one token, bf16, every block with its KV cache (inputs ``caches``:
    k and v of each block, [1, 8, T, 128]); returns the next token's logits and every block's new K and V."""

    def __init__(self, layers: int, vocab=128256, d=4096, dtype=torch.bfloat16):
        super().__init__()
        self.tok = nn.Embedding(vocab, d, dtype=dtype)
        self.blocks = nn.ModuleList(LlamaDecodeBlock(dtype=dtype) for _ in range(layers))
        self.norm = RMSNorm(d, dtype)
        self.head = nn.Linear(d, vocab, bias=False, dtype=dtype)

    def forward(self, idx, *caches):
        x = self.tok(idx)
        updates = []
        for i, blk in enumerate(self.blocks):
            x, k, v = blk(x, caches[2 * i], caches[2 * i + 1])
            updates += [k, v]
        return (self.head(self.norm(x)), *updates)


def llama_decode(layers: int, context: int = 4096, dtype=torch.bfloat16):
    """A meta-device LLaMA decode step with ``layers`` blocks and a KV cache of ``context`` positions, and its
    inputs."""
    with torch.device("meta"):
        m = LlamaDecode(layers, dtype=dtype)
        caches = [torch.zeros(1, 8, context, 128, dtype=dtype) for _ in range(2 * layers)]
        return m, (torch.zeros(1, 1, dtype=torch.long), *caches)


def _plan(model, inputs, target: str, mode: str) -> dict:
    res = wafercc.compile(model, inputs, target=target, mode=mode, with_weights=False)
    return res.module.attrs["plan.totals"]


def sgemm(mode: str):
    n = 33000
    with torch.device("meta"):
        m, x = Linear(n, n, torch.float32), torch.zeros(n, n)
    tot = _plan(m, (x,), "mesh:750x750", mode)
    return 2 * n**3 / tot["seconds"] / 1e12, tot


def gemv():
    k = n = 16384
    with torch.device("meta"):
        m, x = Linear(k, n, torch.bfloat16), torch.zeros(1, k, dtype=torch.bfloat16)
    tot = _plan(m, (x,), "wse2,clock-ghz=1.1", "pipeline")
    return tot["seconds"] * 1e6, tot


def prefill(layers: int):
    """Planned with ``layers`` and ``layers + 1`` blocks: the difference is one block's time (stream mode sums
    its layers), so the 32-block model is the first plus 32 - layers more blocks."""
    tokens = 4096
    seconds = []
    for depth in (layers, layers + 1):
        with torch.device("meta"):
            m, x = Llama(depth), torch.zeros(1, tokens, dtype=torch.long)
        seconds.append(_plan(m, (x,), "mesh:480x480,clock-ghz=1.1", "stream")["seconds"])
    block = seconds[1] - seconds[0]
    return tokens / (seconds[0] + (32 - layers) * block), None


# name -> (what, unit, published, source, runner, higher_is_faster)
CASES = {
    "sgemm-pipeline": (
        "SGEMM fp32 33000^3, resident W, 750x750 PEs",
        "TFLOP/s",
        349.0,
        "[SGEMM]",
        lambda a: sgemm("pipeline"),
        True,
    ),
    "sgemm-stream": (
        "SGEMM fp32 33000^3, streamed W, 750x750 PEs",
        "TFLOP/s",
        349.0,
        "[SGEMM] (not measured so)",
        lambda a: sgemm("stream"),
        True,
    ),
    "gemv": ("GEMV bf16 [1,16K]x[16K,16K], wse2", "us", 1.2, "[WLLM] Table 6", lambda a: gemv(), False),
    "prefill": (
        "LLaMA3-8B prefill 4K bf16, 480x480",
        "tokens/s",
        20320.6,
        "[WLLM] Table 3",
        lambda a: prefill(a.layers),
        True,
    ),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    ap.add_argument("--layers", type=int, default=1, help="LLaMA blocks planned for prefill (extrapolated to 32)")
    ap.add_argument("--goal", type=float, default=0.10, help="allowed relative error")
    args = ap.parse_args(argv)
    head = f"{'case':<16} {'what':<46} {'published':>12} {'predicted':>12} {'unit':<9} {'ratio':>6}  source"
    print(head)
    print("-" * len(head))
    worst = 0.0
    for name in args.case or list(CASES):
        what, unit, published, source, run, _ = CASES[name]
        start = time.perf_counter()
        predicted, _tot = run(args)
        ratio = predicted / published
        if "not measured" not in source:
            worst = max(worst, abs(ratio - 1))
        print(
            f"{name:<16} {what:<46} {published:>12,.1f} {predicted:>12,.1f} {unit:<9} {ratio:>6.3f}  {source}"
            f"  ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    print(
        f"worst |predicted/published - 1| = {worst:.3f}; goal <= {args.goal}: "
        f"{'meets' if worst <= args.goal else 'MISSES'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
