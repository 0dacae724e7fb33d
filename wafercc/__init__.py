"""wafercc: a compiler from PyTorch to wafer-scale dataflow hardware.

    import wafercc
    result = wafercc.compile(model, example_inputs, out_dir="build/mlp")
    print(result.text)                      # graph-level WIR
    m = wafercc.parse(text); wafercc.verify(m)

Importing wafercc stays cheap (the IR core only): ``compile``, ``verify`` and ``check`` load the compiler
when called, and torch with it where they need it.
"""

from wafercc.ir import Module, ParseError, VerifyError, WaferError, parse, parse_file, print_module

__version__ = "0.1.0"

# `wafercc.print(m)` mirrors `wafercc.ir.print`; the builtin print stays reachable as builtins.print.
print = print_module  # noqa: A001


def compile(model, example_inputs, **kwargs):
    """Capture, import and optimize ``model``; see ``wafercc.driver.compile`` for the options."""
    from wafercc.driver import compile as _compile

    return _compile(model, example_inputs, **kwargs)


def verify(module: Module) -> Module:
    """Full verification: SSA, symbols, every op's own rules, and a mapped module's plan. Raises VerifyError."""
    from wafercc.driver import verify_module

    return verify_module(module)


def check(model, example_inputs, **kwargs):
    """Op coverage of ``model`` without compiling it (``wafercc check``)."""
    from wafercc.frontend.coverage import coverage_report

    return coverage_report(model, example_inputs, **kwargs)


__all__ = [
    "Module",
    "ParseError",
    "VerifyError",
    "WaferError",
    "check",
    "compile",
    "parse",
    "parse_file",
    "print",
    "print_module",
    "verify",
]
