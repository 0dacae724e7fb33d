"""The hardware description: mesh size, per-PE SRAM, router colors, arithmetic rates, clock, link and I/O
bandwidth. Every number of a preset cites ``shared/hardware.md`` (section in brackets); every efficiency
factor the cost model uses is a named field here, not a constant buried in a formula.

A target is given on the command line as a preset name (``wse2``, ``wse3``, ``mesh8``) or as
``mesh:WxH`` with overrides: ``mesh:32x32,sram-kib=48,colors=24,clock-ghz=0.85,io-gbps=150``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from wafercc.errors import UsageError
from wafercc.ir import DType


@dataclass(frozen=True)
class Target:
    name: str
    width: int  # PEs along x (columns)
    height: int  # PEs along y (rows)
    sram_bytes: int  # per PE
    colors: int  # routable colors per router
    reserved_colors: int  # taken by the runtime's I/O (memcpy) [hardware.md §4]
    clock_hz: float
    # FLOPs per PE per cycle by dtype (an FMAC is 2 FLOPs) [hardware.md §1.4]
    flops_per_cycle: tuple[tuple[str, int], ...] = ()
    link_bytes_per_cycle: int = 4  # one 32-bit wavelet per cycle per direction [§1.5]
    hop_cycles: int = 1  # router-to-router latency on a configured route [§1.5]
    relay_cycles: int = 5  # a wavelet relayed through a PE's core: 2*T_R + 1 with T_R = 2 [§1.5, Reduce]
    io_bytes_per_s: float = 150e9  # MemoryX -> wafer, 1.2 Tb/s [§2]
    io_ports_per_edge: int = 60  # fixed I/O entry points on each of the east and west edges [§1.2]
    runtime_reserved_bytes: int = 2048  # per-PE memory the runtime and its buffers take [§4]
    # Efficiency factors of the cost model (documented in docs/hardware.md):
    fmac_pipeline_fill_cycles: int = 8  # start-up of a DSD vector op; paid once per streamed chunk
    overlap_ingress: bool = True  # next layer's weights stream while this layer computes [§3.1.5]
    # Sustained fraction of the FMAC SIMD peak a GEMM kernel reaches per PE: [SGEMM] measured 349.0 TFLOP/s
    # fp32 on 750 x 750 PEs at 0.85 GHz = 0.73 FLOP/cycle/PE of the scalar @fmacs's 2 (its SUMMA traffic
    # overlaps the FMACs, so this is the FMAC loop's own rate). Fitted to that one measurement; 16-bit
    # products are assumed to reach the same fraction of @fmachs (docs/hardware.md, "Calibration").
    fmac_sustained: float = 0.365
    # Levels of the reduction tree that combines partial sums along a row (WaferLLM's K-tree with K = 2: K + 1
    # routes at a root, about K * n**(1/K) / 2 relay stages over n columns) [§5.5, WLLM].
    reduce_tree_levels: int = 2

    @property
    def pes(self) -> int:
        return self.width * self.height

    @property
    def usable_colors(self) -> int:
        return self.colors - self.reserved_colors

    @property
    def usable_sram(self) -> int:
        return self.sram_bytes - self.runtime_reserved_bytes

    @property
    def io_bytes_per_cycle(self) -> float:
        return self.io_bytes_per_s / self.clock_hz

    def flops(self, dtype: DType) -> int:
        table = dict(self.flops_per_cycle)
        return table.get(dtype.value, table["f32"])

    def fmac_peak(self, dtype: DType) -> int:
        """Peak FLOPs per PE per cycle of a product accumulated in fp32: 16-bit operands use the fp16 x fp16 +
        fp32 FMAC (``@fmachs``: 2-wide on WSE-2, 4 on WSE-3), fp32 the scalar ``@fmacs`` [hardware.md §1.4].
        The 8 (16 on WSE-3) of ``f16``/``bf16`` is ``@fmach``, which accumulates in 16 bits: not what a
        product with fp32 accumulators runs."""
        table = dict(self.flops_per_cycle)
        if dtype.itemsize == 2 and "f16acc32" in table:
            return table["f16acc32"]
        return self.flops(dtype)

    def fmac_rate(self, dtype: DType) -> float:
        """Sustained FLOPs per PE per cycle of a product: the peak times ``fmac_sustained`` (the cost model's
        compute rate, and its roofline's)."""
        return self.fmac_peak(dtype) * self.fmac_sustained

    def reduce_stages(self, n):
        """Relay stages on the critical path of a reduction tree over n PEs of a row (n may be an array)."""
        k = self.reduce_tree_levels
        return np.where(n > 1, np.ceil(k * np.power(np.maximum(n, 1), 1.0 / k) / 2), 0)

    def peak_flops_per_s(self, dtype: DType = DType.f32) -> float:
        return self.pes * self.flops(dtype) * self.clock_hz

    def describe(self) -> dict:
        """The target as plain data, for plan.json and the WIR module attributes."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = dict(v) if f.name == "flops_per_cycle" else v
        return out


# WSE-2: SDK program rectangle 750 x 994 (757 x 996 fabric less the memcpy frame) [§1.2]; 48 KB SRAM [§1.3];
# 24 colors, memcpy reserves 3 of the routable ones (21-23) [§4]; 0.85 GHz as the SDK examples convert [§1.3];
# fp16 FMACH 4-wide = 8 FLOP/cycle, fp16 with fp32 accumulate 2-wide = 4, fp32 scalar FMAC = 2 [§1.4].
WSE2 = Target(
    name="wse2",
    width=750,
    height=994,
    sram_bytes=48 * 1024,
    colors=24,
    reserved_colors=3,
    clock_hz=0.85e9,
    flops_per_cycle=(("bf16", 8), ("f16", 8), ("f16acc32", 4), ("f32", 2)),
)
# WSE-3: 762 x 1172 fabric, program rectangle 755 x 1170 with the same memcpy frame [§1.2]; SIMD widths doubled
# [§1.4]; 1.1 GHz as WaferLLM's WSE-3 scripts use [§1.3]; 62 I/O ports per edge [§1.2].
WSE3 = Target(
    name="wse3",
    width=755,
    height=1170,
    sram_bytes=48 * 1024,
    colors=24,
    reserved_colors=3,
    clock_hz=1.1e9,
    flops_per_cycle=(("bf16", 16), ("f16", 16), ("f16acc32", 8), ("f32", 2)),
    io_ports_per_edge=62,
)


def small_mesh(w: int, h: int) -> Target:
    """A small mesh with WSE-2's per-PE numbers: plans a person can check by hand."""
    return replace(
        WSE2, name=f"mesh{w}x{h}" if w != h else f"mesh{w}", width=w, height=h, io_ports_per_edge=max(1, h // 16)
    )


PRESETS = {
    "wse2": WSE2,
    "wse3": WSE3,
    "mesh4": small_mesh(4, 4),
    "mesh8": small_mesh(8, 8),
    "mesh16": small_mesh(16, 16),
    "mesh32": small_mesh(32, 32),
}

# option name -> (field, converter)
_OVERRIDES = {
    "sram-kib": ("sram_bytes", lambda v: int(float(v) * 1024)),
    "sram-bytes": ("sram_bytes", int),
    "colors": ("colors", int),
    "reserved-colors": ("reserved_colors", int),
    "clock-ghz": ("clock_hz", lambda v: float(v) * 1e9),
    "io-gbps": ("io_bytes_per_s", lambda v: float(v) * 1e9),
    "io-ports": ("io_ports_per_edge", int),
    "link-bytes": ("link_bytes_per_cycle", int),
}


def parse_target(spec: str) -> Target:
    """``wse2`` | ``wse3`` | ``mesh8`` | ``mesh:WxH[,key=value...]`` | ``wse2,clock-ghz=1.1``."""
    head, *opts = [s.strip() for s in spec.split(",")]
    t = _base(head)
    changed = dict(_override(opt) for opt in opts)
    if changed:
        t = replace(t, **changed, name=spec)
    if t.reserved_colors >= t.colors:
        raise UsageError(f"target '{spec}' reserves {t.reserved_colors} of its {t.colors} colors")
    if t.usable_colors < 3:
        raise UsageError(f"target '{spec}' leaves {t.usable_colors} routable colors; a layer needs at least 3")
    if t.usable_sram <= 0:
        raise UsageError(f"target '{spec}' has no SRAM left after the runtime's {t.runtime_reserved_bytes} bytes")
    return t


def _base(head: str) -> Target:
    """The preset or ``mesh:WxH`` a target spec starts with."""
    if head in PRESETS:
        return PRESETS[head]
    if not head.startswith("mesh:"):
        raise UsageError(f"unknown target '{head}' (presets: {', '.join(PRESETS)}; or mesh:WxH)")
    try:
        w, h = (int(d) for d in head[5:].lower().split("x"))
    except ValueError:
        raise UsageError(f"bad mesh '{head}': write mesh:WxH, e.g. mesh:16x16") from None
    if w < 1 or h < 1 or w * h > 4_000_000:
        raise UsageError(f"mesh {w}x{h} is out of range (1 to 4,000,000 PEs)")
    return replace(small_mesh(w, h), name=f"mesh:{w}x{h}")


def _override(opt: str) -> tuple[str, float | int]:
    """(Target field, value) of one ``key=value`` option."""
    key, eq, value = opt.partition("=")
    if key not in _OVERRIDES or not eq:
        raise UsageError(f"unknown target option '{opt}' (known: {', '.join(k + '=' for k in _OVERRIDES)})")
    fname, conv = _OVERRIDES[key]
    try:
        v = conv(value)
    except (ValueError, OverflowError):
        raise UsageError(f"target option '{key}' needs a number, got '{value}'") from None
    low = 0 if key == "reserved-colors" else 1e-12
    if not math.isfinite(v) or v < low:
        raise UsageError(f"target option '{key}' must be {'>= 0' if low == 0 else '> 0'}, got '{value}'")
    return fname, v
