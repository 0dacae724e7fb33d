"""The runtime's errors: all WaferErrors, so the CLI prints them and exits 2 without a traceback."""

from __future__ import annotations

from wafercc.ir import WaferError


class StoreError(WaferError):
    """The MemoryX store (weights.safetensors + manifest.json) is missing, malformed or corrupted."""


class InputError(WaferError, ValueError):
    """Inputs that do not fit the function's signature (count, names, shapes, dtypes)."""


class RuntimeExecutionError(WaferError, RuntimeError):
    """An op could not be executed; the message names the op and its location in the model."""

    def __init__(self, message: str, op=None):
        super().__init__(message)
        self.op = op


class OutputError(WaferError):
    """An output that may not or cannot be written: it would replace something wafercc did not write, another
    wafercc process is writing it, or the place cannot hold it. Nothing was written."""
