"""wafercc as a ``torch.compile`` backend (docs/backend.md).

    compiled = torch.compile(model, backend="wafercc", options={"target": "wse2", "check": True})
    loss = loss_fn(compiled(x), y); loss.backward(); optimizer.step()   # unchanged training loop

Dynamo hands over each graph it captures (one per piece between graph breaks, one per shape its guards
tell apart); AOTAutograd (``torch._dynamo.backends.common.aot_autograd``) functionalizes it, lowers it to
core ATen with ``decompositions()``, lifts the parameters to inputs, and splits forward from backward. Each
of those ATen graphs is imported into WIR, planned for the target and run by the numpy reference runtime
(graph.py). The backend is registered under the ``torch_dynamo_backends`` entry point (pyproject.toml), so
``backend="wafercc"`` works without importing wafercc first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from wafercc.errors import UnsupportedOpError, UsageError
from wafercc.ir import WaferError

from .decompositions import decompositions
from .graph import BackendCheckError, CompiledGraph, FailedGraph, graph_name
from .options import BackendOptions

UNSUPPORTED_HINT = (
    'torch.compile(backend="wafercc") does not fall back to eager for these: run the code that '
    "uses them eagerly by wrapping it in torch.compiler.disable (docs/backend.md)"
)


def wafercc_backend(
    gm: torch.fx.GraphModule, example_inputs, options: dict | None = None, mode: str | None = None, **kwargs
) -> Callable:
    """The Dynamo backend: ``torch.compile(model, backend="wafercc", options={...})``. See BackendOptions for
    the options. A graph wafercc cannot compile (an unsupported op, a bad option) gives a callable that
    raises that WaferError when called: the user sees it as is, never eager numbers in its place."""
    from torch._dynamo.backends.common import aot_autograd

    try:
        if mode not in (None, "default"):
            raise UsageError(
                f"torch.compile mode '{mode}' means nothing to wafercc: give the wafer's mapping mode "
                "as options={'mode': 'stream' | 'pipeline'}"
            )
        if kwargs:
            raise UsageError(f"unknown wafercc backend argument(s) {', '.join(sorted(kwargs))}")
        opts = BackendOptions.parse(options)
    except WaferError as e:
        return _failed_dynamo_graph(e)
    base = graph_name()

    def compiler(kind: str):
        def compile_one(graph: torch.fx.GraphModule, inputs) -> Callable:
            try:
                compiled = CompiledGraph(graph, inputs, f"{base}_{kind}", opts)
            except UnsupportedOpError as e:
                compiled = FailedGraph(UnsupportedOpError(f"{e}\n{UNSUPPORTED_HINT}", e.items))
            except WaferError as e:
                compiled = FailedGraph(e)
            if kind != "backward":
                return compiled
            # AOTAutograd would wrap the backward in Dynamo's disable itself, hiding that it takes boxed
            # arguments; do it here and keep the mark
            fn = torch._dynamo.disable(compiled, reason="wafercc runs the backward graph")
            fn._boxed_call = True
            return fn

        if kind == "backward":
            compile_one._is_wrapped_bw_compiler = True
        return compile_one

    return aot_autograd(
        fw_compiler=compiler("forward"),
        bw_compiler=compiler("backward"),
        inference_compiler=compiler("inference"),
        decompositions=decompositions,
    )(gm, example_inputs)


def _failed_dynamo_graph(error: WaferError) -> Callable:
    def failed(*args, **kwargs):
        raise error.with_traceback(None)

    return failed


__all__ = ["BackendCheckError", "BackendOptions", "CompiledGraph", "decompositions", "wafercc_backend"]
