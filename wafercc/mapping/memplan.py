"""memplan: a per-PE buffer map for each layer, checked against SRAM.

    layer @L0_fc1 {memory = {accumulator = 128, activation = 8, ...}, ...}
  gains
    memmap = [{buffer = "runtime", offset = 0, bytes = 2048}, {buffer = "activation", offset = 2048, bytes = 8},
              ..., {buffer = "free", offset = 2304, bytes = 46848}]

Every PE of a layer's rectangle holds the same buffers (the tiling is uniform; a ragged last tile is
padded), so one map per layer says what every PE holds. Buffers are laid out from address 0 in a fixed
order, the runtime's reserved share first, each aligned to 16 bytes so that vector (DSD) accesses of the
two reads per cycle start on a bank boundary [hardware.md §1.3]. Overflow is an error that prints the map.

Requires: tile. Guarantees: every layer's map fits in the target's SRAM per PE.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from wafercc.errors import PlanError
from wafercc.ir import Module
from wafercc.ir.plan import ALIGN, BUFFERS

from .plan import layers, mode_of, target_of, typed

ORDER = BUFFERS  # activation, output, accumulator, weight, tail


@dataclass(frozen=True)
class MemPlan:
    name = "memplan"

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        t = target_of(module)
        mode = mode_of(module)
        for layer in layers(module, "tile", by="memplan"):
            mem = typed(layer, mode).memory
            entries = [("runtime", t.runtime_reserved_bytes)] + [(b, mem.get(b)) for b in ORDER if mem.get(b)]
            offset, mmap = 0, []
            for name, size in entries:
                mmap.append({"buffer": name, "offset": offset, "bytes": size})
                offset += -(-size // ALIGN) * ALIGN
            if offset > t.sram_bytes:
                table = "\n".join(f"    {e['offset']:>7}  {e['bytes']:>7}  {e['buffer']}" for e in mmap)
                raise PlanError(
                    f"layer @{layer.name} needs {offset:,} bytes per PE, {offset - t.sram_bytes:,} over the "
                    f"{t.sram_bytes:,} bytes of SRAM of {t.name}:\n    offset    bytes  buffer\n{table}"
                )
            mmap.append({"buffer": "free", "offset": offset, "bytes": t.sram_bytes - offset})
            layer.attrs["memmap"] = mmap
            if stats is not None:
                stats["peak bytes per PE"] = max(stats["peak bytes per PE"], offset)
        return module
