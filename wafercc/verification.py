"""Full verification of a module at any stage: the IR's generic rules, every op's own rules, and, once
the module is mapped, every promise of its plan (``wafercc.mapping.verify``)."""

from __future__ import annotations

from wafercc.ir import Module


def verify(module: Module) -> Module:
    from wafercc.ops import verify as verify_ops

    verify_ops(module)
    if module.layers:
        from wafercc.mapping.verify import verify_plan

        verify_plan(module)
    return module
