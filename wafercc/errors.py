"""wafercc's exception tree above the IR core's (``WaferError`` → ``ParseError``, ``VerifyError``).

Each carries a complete, user-facing message; the CLI prints it and exits with ``exit_code`` (2).
"""

from __future__ import annotations

from wafercc.ir.errors import ParseError, VerifyError, WaferError


class UnsupportedOpError(WaferError):
    """The model uses ops wafercc does not support. ``items`` lists (op, location) pairs, all of them."""

    def __init__(self, message: str, items: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.items = items or []


class CaptureError(WaferError):
    """torch.export / torch.fx could not capture the model."""


class ModelFileError(WaferError):
    """A model file that cannot be loaded, or does not follow the model-file convention."""


class PlanError(WaferError):
    """A model that cannot be mapped onto the target."""


class UsageError(WaferError):
    """Bad command-line arguments or options."""


__all__ = [
    "CaptureError",
    "ModelFileError",
    "ParseError",
    "PlanError",
    "UnsupportedOpError",
    "UsageError",
    "VerifyError",
    "WaferError",
]
