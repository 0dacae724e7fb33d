"""The root of wafercc's exception tree.

Every error a *user* can cause (bad WIR text, a model wafercc cannot take, a plan that does not fit) is a
WaferError. The CLI prints its message and exits with code 2; anything else that escapes is a bug in
wafercc and is allowed to show a traceback.
"""

from __future__ import annotations


class WaferError(Exception):
    """A user-facing error: the message is complete and says what to do."""

    exit_code = 2


class ParseError(WaferError):
    """WIR text that does not parse. The message has line, column, the line and a caret."""

    def __init__(self, message: str, line: int = 0, column: int = 0, source: str = "<wir>"):
        super().__init__(message)
        self.line = line
        self.column = column
        self.source = source


class VerifyError(WaferError):
    """WIR that parses but breaks a rule. The message names the op, its location and the rule."""

    def __init__(self, message: str, op=None, rule: str = ""):
        super().__init__(message)
        self.op = op
        self.rule = rule
