"""partition: group the graph into the layers the wafer runs one after another.

    %w = weight.get @fc1.weight : tensor<256x784xf32>
    %wt = permute %w {dims = [1, 0]} : tensor<784x256xf32>
    %y = mm %x, %wt : tensor<8x256xf32>
    %r = relu %y : tensor<8x256xf32>
  becomes
    layer @L0_fc1 {anchor = "%y", dims = {B = 1, K = 784, M = 8, N = 256}, kind = "matmul", ops = 4, ...}
    ...
    %y = mm %x, %wt {plan.layer = @L0_fc1} : tensor<8x256xf32>
    %r = relu %y {plan.layer = @L0_fc1} : tensor<8x256xf32>

A layer is an anchor (mm, addmm, bmm, convolution, embedding) with the ops that follow it up to the next
anchor; the ops that prepare a weight join the layer that reads it (``wafercc.mapping.layers``).

Requires: graph-level WIR. Guarantees: every op of @forward has ``plan.layer``; the module declares
the layers in execution order; computation is unchanged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from wafercc.ir import Module

from .layers import LAYER_ATTR, partition
from .plan import mode_of, target_of


@dataclass(frozen=True)
class Partition:
    name = "partition"
    target: str = ""
    mode: str = ""

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        if self.target or "target" in module.attrs:
            target_of(module, self.target)
        mode_of(module, self.mode)
        for op in module.func().ops:
            op.attrs.pop(LAYER_ATTR, None)
        module.layers.clear()
        for info in partition(module):
            module.add_layer(info.pop("name"), **info)
        if stats is not None:
            stats["layers"] += len(module.layers)
        return module
