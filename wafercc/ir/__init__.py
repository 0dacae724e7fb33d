"""WIR: wafercc's textual IR. The closed core: it imports nothing else of wafercc, and not torch."""

from .core import Attr, Func, Layer, Loc, Module, NameGen, Op, SymbolRef, Value, Weight, attr_key, structural_key
from .errors import ParseError, VerifyError, WaferError
from .parser import parse, parse_file
from .printer import format_op, print_module
from .types import DType, TensorType, parse_type, promote, result_dtype
from .verifier import verify

# `wafercc.ir.print(m)` reads naturally; the builtin stays reachable as builtins.print.
print = print_module  # noqa: A001

__all__ = [
    "Attr",
    "DType",
    "Func",
    "Layer",
    "Loc",
    "Module",
    "NameGen",
    "Op",
    "ParseError",
    "SymbolRef",
    "TensorType",
    "Value",
    "VerifyError",
    "WaferError",
    "Weight",
    "attr_key",
    "format_op",
    "parse",
    "parse_file",
    "parse_type",
    "print",
    "print_module",
    "promote",
    "result_dtype",
    "structural_key",
    "verify",
]
