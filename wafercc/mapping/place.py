"""place: put each layer's rectangle on the mesh.

    layer @L0_fc1 {tiling = {size = [392, 32], ...}, ...}
  gains
    rect = [0, 0, 392, 32], step = 0

Weight streaming: layers run one after another, each alone on the fabric, so every layer is placed at the
mesh origin (the west edge, where the I/O ports feed it) and gets its own time step; rectangles of
different steps may overlap. Layer pipelined: every layer runs at once (step 0), so the rectangles are a
floorplan: shelves filled in execution order, alternating direction from shelf to shelf (a boustrophedon),
so each layer sits next to the one that feeds it.

Requires: tile. Guarantees: every rect lies inside the mesh; rects of one step do not overlap.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from wafercc.errors import PlanError
from wafercc.ir import Module

from .plan import layers, mode_of, target_of, typed


@dataclass(frozen=True)
class Place:
    name = "place"

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        t = target_of(module)
        mode = mode_of(module)
        todo = layers(module, "tile", by="place")
        if mode == "stream":
            for step, layer in enumerate(todo):
                w, h = typed(layer, mode).tiling.size
                layer.attrs["rect"] = [0, 0, w, h]
                layer.attrs["step"] = step
        else:
            _floorplan(todo, [typed(layer, mode).tiling.region for layer in todo], t.width, t.height)
        if stats is not None:
            stats["layers placed"] += len(todo)
        return module


def _floorplan(todo, regions: list[tuple[int, int]], width: int, height: int) -> None:
    shelf_h = max(h for _, h in regions)
    x, y, direction = 0, 0, 1
    for layer, (w, h) in zip(todo, regions):
        if (direction > 0 and x + w > width) or (direction < 0 and x - w < 0):
            y += shelf_h
            direction = -direction
            x = width if direction < 0 else 0
        if y + shelf_h > height:
            raise PlanError(
                f"the pipeline floorplan runs off the {width}x{height} mesh at layer @{layer.name}: its {w}x{h} "
                f"region does not fit beside the layers before it (rows of {shelf_h} PEs); use --mode stream or "
                "a larger target"
            )
        left = x if direction > 0 else x - w
        layer.attrs["rect"] = [left, y, w, shelf_h]
        layer.attrs["step"] = 0
        x += direction * w
