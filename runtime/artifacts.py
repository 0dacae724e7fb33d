"""A compiled model's directory on disk, as the compiler writes it and the runtime reads it: the names of its
files, and writing files and directories so that nobody ever sees half of one (a sibling temp, renamed into
place). The compiler and the runtime both import this module; it imports nothing of either."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Union

WIR_FILE = "model.wir"  # the module: graph, layers and plan (the contract between compiler and runtime)
STORE_FILE = "weights.safetensors"  # the MemoryX store's tensors
MANIFEST_FILE = "manifest.json"  # the store's index: kind, dtype, shape, sha256 of every tensor
PLAN_FILE = "plan.json"  # a view of the plan for programs (docs/plan.md)
REPORT_FILE = "report.txt"  # a view of the plan for people

Content = Union[bytes, str, Callable]  # the bytes or text to write, or a function that writes to the binary file


def write_atomic(target: str | os.PathLike, content: Content) -> Path:
    """Write ``content`` to ``target`` through a temp file in the same directory and an atomic rename; on any
    failure the temp file is removed and ``target`` is untouched. The file gets ordinary permissions (0644),
    not mkstemp's private ones."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_dir_atomic(target: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Make directory ``target`` all at once: ``fill`` writes the files into a sibling temp directory, which
    then replaces ``target`` (an older ``target`` is moved aside first and removed after). A failure leaves
    ``target`` as it was, and a reader never sees half of it."""
    import shutil

    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(tmp)
        for f in tmp.iterdir():  # mkdtemp makes everything private; the output is an ordinary directory
            f.chmod(0o644)
        tmp.chmod(0o755)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
