"""The root of wafercc's exception tree.

Every error a *user* can cause (bad WIR text, a model wafercc cannot take, a plan that does not fit) is a
WaferError. The CLI prints its message and exits with code 2; anything else that escapes is a bug in
wafercc and is allowed to show a traceback.
"""

from __future__ import annotations


class WaferError(Exception):
    """A user-facing error: the message is complete and says what to do. It carries no "error: " prefix;
    ``render`` adds one, behind the place in the user's text the error is about when it has one
    (``location``, ``file:line:col``), the way compilers print diagnostics."""

    exit_code = 2
    location: str | None = None

    def render(self) -> str:
        head = f"{self.location}: error: " if self.location else "error: "
        return head + str(self)


class ParseError(WaferError):
    """WIR text that does not parse. The message says what was found and expected, then shows the line with
    a caret under the column; ``location`` is ``source:line:col``."""

    def __init__(self, message: str, line: int = 0, column: int = 0, source: str | None = "<wir>"):
        super().__init__(message)
        self.line = line
        self.column = column
        self.source = source
        self.location = f"{source}:{line}:{column}" if source and line > 0 else source


class VerifyError(WaferError):
    """WIR that parses but breaks a rule. The message names the op, its location and the rule."""

    def __init__(self, message: str, op=None, rule: str = ""):
        super().__init__(message)
        self.op = op
        self.rule = rule

    def locate(self, source: str | None) -> VerifyError:
        """Point at the op's place in the WIR text ``source`` it was parsed from, when known."""
        pos = getattr(self.op, "pos", None)
        if source and pos and self.location is None:
            self.location = f"{source}:{pos[0]}:{pos[1]}"
        return self
