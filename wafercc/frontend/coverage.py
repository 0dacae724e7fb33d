"""``wafercc check``: capture a model and report which of its ops wafercc supports, without compiling."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from wafercc.frontend.capture import capture as capture_model
from wafercc.frontend.importer import import_graph, target_name, unsupported_ops
from wafercc.ir import WaferError


@dataclass
class CoverageReport:
    source: str
    capture: str
    op_counts: dict[str, int]  # ATen overload → uses
    unsupported: list[tuple[str, str]]  # (op, location), every use
    params: int
    param_bytes: int
    seconds: float
    import_error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unsupported and self.import_error is None

    def text(self) -> str:
        total = sum(self.op_counts.values())
        bad_ops = {op for op, _ in self.unsupported}
        lines = [
            f"{self.source}: captured with {self.capture} in {self.seconds:.2f} s",
            f"  parameters and buffers: {self.params:,} elements, {self.param_bytes / 2**20:.2f} MiB",
            f"  ops: {total} uses of {len(self.op_counts)} distinct core-ATen ops; "
            f"{len(self.op_counts) - len(bad_ops & set(self.op_counts))} supported, {len(bad_ops)} unsupported",
        ]
        width = max((len(k) for k in self.op_counts), default=10)
        for op in sorted(self.op_counts):
            mark = "unsupported" if op in bad_ops else "ok"
            lines.append(f"    {op:<{width}}  {self.op_counts[op]:>5}  {mark}")
        if self.unsupported:
            lines.append("unsupported ops, with the line of the model that made each:")
            for op, loc in self.unsupported:
                lines.append(f"  {op}  at {loc}")
        if self.import_error:
            lines.append(f"import failed: {self.import_error}")
        lines.append("result: " + ("every op is supported" if self.ok else "NOT supported"))
        return "\n".join(lines)


def coverage_report(model, example_inputs, *, capture: str = "export", source: str = "<model>") -> CoverageReport:
    t = time.perf_counter()
    captured = capture_model(model, example_inputs, capture)
    counts: dict[str, int] = {}
    for n in captured.graph.nodes:
        if n.op == "call_function" and target_name(n.target) != "getitem":
            counts[target_name(n.target)] = counts.get(target_name(n.target), 0) + 1
    unsupported = unsupported_ops(captured, os.getcwd())
    import_error = None
    if not unsupported:
        try:
            import_graph(captured, source=source)
        except WaferError as e:
            import_error = str(e)
    seen, params, nbytes = set(), 0, 0
    for w in captured.weights.values():
        if w.name in seen:
            continue
        seen.add(w.name)
        params += w.tensor.numel()
        nbytes += w.tensor.numel() * w.tensor.element_size()
    return CoverageReport(source, capture, counts, unsupported, params, nbytes, time.perf_counter() - t, import_error)
