"""Progress on stderr while a command works: a spinner on a terminal, plain lines for slow stages elsewhere."""

from __future__ import annotations

import sys
import time


class Reporter:
    """Call it with each stage's description; ``close`` it when done. ``quiet`` prints nothing."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.start = time.perf_counter()
        self.last: tuple[str, float] | None = None
        self.status = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console  # rich: only on a terminal

            self.status = Console(stderr=True).status("wafercc")
            self.status.start()

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if self.status is not None:
            self.status.update(message + " ...")
        elif self.last is not None and now - self.last[1] > 1.0:
            print(f"wafercc: {self.last[0]} took {now - self.last[1]:.1f} s", file=sys.stderr)
        self.last = (message, now)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
