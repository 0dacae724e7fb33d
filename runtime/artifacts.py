"""A compiled model's directory on disk, as the compiler writes it and the runtime reads it: the names of its
files, and writing files and directories so that nobody ever sees half of one, nothing wafercc did not make
is ever replaced, and a kill at any instant leaves the old output or the new one (docs/safety.md).

Directories (``write_dir_atomic``): every output directory holds a marker, ``.wafercc``, naming its kind and
its files. An existing ``target`` is replaced only when it is empty, or a wafercc output of the same kind
holding nothing but the files it lists, or inside ``forced(target)`` (the commands' ``--force``); never when
it holds the current directory. The new output is built in a sibling ``.NAME.wafercc-tmp-PID-XXXX`` and
swapped in with one ``renameat2(RENAME_EXCHANGE)`` (Linux), so ``target`` always names a whole output; where
the OS lacks it, two renames and a recovery by the next writer (``.NAME.wafercc-old-*`` put back). A
``.NAME.wafercc-lock`` (``flock``) makes a second writer of the same target fail at once with a message.
The next writer removes what a killed one left.

Files (``write_atomic``): a sibling temp file and one rename. ``check_output_file`` is the commands' rule for
a file a user names with ``-o``: replaced only when it is what that command writes, or with ``--force``.

The compiler and the runtime both import this module; it imports nothing of either but the error type.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

from .errors import OutputError

WIR_FILE = "model.wir"  # the module: graph, layers and plan (the contract between compiler and runtime)
STORE_FILE = "weights.safetensors"  # the MemoryX store's tensors
MANIFEST_FILE = "manifest.json"  # the store's index: kind, dtype, shape, sha256 of every tensor
PLAN_FILE = "plan.json"  # a view of the plan for programs (docs/plan.md)
REPORT_FILE = "report.txt"  # a view of the plan for people
MARKER_FILE = ".wafercc"  # in every output directory: {"format", "kind", "files"}
MARKER_FORMAT = "wafercc-output/1"
KIND_MODEL = "compiled model"
KIND_GOLDEN = "golden"
# What a compiled model's directory held before markers existed: such a directory is still ours to replace.
MODEL_FILES = frozenset({WIR_FILE, STORE_FILE, MANIFEST_FILE, PLAN_FILE, REPORT_FILE})

Content = Union[bytes, str, Callable]  # the bytes or text to write, or a function that writes to the binary file

_TMP, _OLD, _LOCK = "wafercc-tmp", "wafercc-old", "wafercc-lock"
_KILL_ENV = "WAFERCC_TEST_KILL_AT"  # fault injection: os._exit at the step of this name (tests/safety)
_NO_EXCHANGE_ENV = "WAFERCC_TEST_NO_EXCHANGE"  # take the two-rename path even where the exchange exists
_forced: set[Path] = set()


def _step(name: str) -> None:
    """A point where a kill must leave the old output or the new one; tests kill the writer here."""
    if os.environ.get(_KILL_ENV) == name:
        os._exit(86)


@contextlib.contextmanager
def forced(target: str | os.PathLike) -> Iterator[None]:
    """Within the block, ``write_dir_atomic(target)`` may replace whatever is there (``--force``), except a
    directory that holds the current one."""
    p = _abs(target)
    _forced.add(p)
    try:
        yield
    finally:
        _forced.discard(p)


# -- files -------------------------------------------------------------------------------------


def write_atomic(target: str | os.PathLike, content: Content) -> Path:
    """Write ``content`` to ``target`` through a temp file in the same directory and an atomic rename; on any
    failure the temp file is removed and ``target`` is untouched. The file gets ordinary permissions (0644),
    not mkstemp's private ones. OutputError: the place cannot hold a file (a directory, a path under a file,
    no permission)."""
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"cannot write '{target}': it is a directory; name a file")
    _make_parent(target)
    remove_dead_temps(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{_TMP}-{os.getpid()}-", suffix=".tmp")
    except OSError as e:
        raise _cannot_write(target, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        _step("file-written")
        os.replace(tmp, target)
        _note_in_marker(target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _cannot_write(target, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _note_in_marker(target: Path) -> None:
    """A file written into a wafercc output directory (``viz -o build/m/mesh.png``) joins the files its marker
    lists: wafercc wrote it, so a later compile may replace the directory with it."""
    marker = read_marker(target.parent) if (target.parent / MARKER_FILE).is_file() else None
    if marker is None or target.name in marker["files"] or target.name == MARKER_FILE:
        return
    marker["files"] = sorted(marker["files"] + [target.name])
    write_atomic(target.parent / MARKER_FILE, json.dumps(marker, sort_keys=True) + "\n")


def check_output_file(target: str | os.PathLike, ours: Callable[[Path], bool], what: str, force: bool = False) -> Path:
    """The rule for a file a user names with ``-o``: a new name, or an existing file that ``ours`` recognizes
    as what the command writes (``what``: "an .npz of outputs"), or anything but a directory with ``force``."""
    p = Path(target)
    if p.is_dir():
        raise OutputError(f"-o '{p}' is a directory; give the name of the file to write")
    _check_parents(p)
    if p.exists() and not force and not _recognized(p, ours):
        raise OutputError(
            f"-o '{p}' exists and is not {what} that wafercc wrote: nothing was written; choose "
            "another name, or pass --force to replace it"
        )
    return p


def _recognized(p: Path, ours: Callable[[Path], bool]) -> bool:
    try:
        return p.is_file() and ours(p)
    except (OSError, ValueError):
        return False


def remove_dead_temps(target: Path) -> None:
    """Temp files and folders that killed writers of ``target`` left (their process is gone); those of a
    writer still running are left to it."""
    for p in _siblings(target, _TMP):
        pid = _pid_of(p.name, target.name)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


# -- directories -------------------------------------------------------------------------------


def check_output_dir(target: str | os.PathLike, kind: str, legacy: Iterable[str] = (), force: bool = False) -> Path:
    """The absolute ``target``, once writing a ``kind`` output there is allowed (OutputError otherwise):
    the commands call it before any work, ``write_dir_atomic`` again under the lock."""
    p = _abs(target)
    _check_parents(p)
    problem = _refusal(p, kind, frozenset(legacy), force or p in _forced)
    if problem:
        raise OutputError(problem)
    return p


def write_dir_atomic(
    target: str | os.PathLike, fill: Callable[[Path], None], kind: str = KIND_MODEL, legacy: Iterable[str] = ()
) -> Path:
    """Make directory ``target`` all at once: ``fill`` writes the files into a sibling temp directory, which
    then takes ``target``'s place in one exchange. A failure leaves ``target`` as it was; a reader never
    sees half of it; an existing ``target`` must pass ``check_output_dir``. ``legacy``: the files an
    unmarked output of this kind may hold (outputs written before markers)."""
    target = _abs(target)
    _make_parent(target)
    with _locked(target):
        _recover(target)
        _step("recovered")
        check_output_dir(target, kind, legacy)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_TMP}-{os.getpid()}-", dir=target.parent))
        except OSError as e:
            raise _cannot_write(target, e) from None
        try:
            _step("tmp-made")
            fill(tmp)
            _step("filled")
            _write_marker(tmp, kind)
            _step("marked")
            _swap(tmp, target)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _cannot_write(target, e) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def read_marker(directory: Path) -> dict | None:
    """The marker of a wafercc output directory, or None (no marker, or not one wafercc wrote)."""
    try:
        data = json.loads((directory / MARKER_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    ok = (
        isinstance(data, dict)
        and data.get("format") == MARKER_FORMAT
        and isinstance(data.get("kind"), str)
        and isinstance(data.get("files"), list)
        and all(isinstance(f, str) for f in data["files"])
    )
    return data if ok else None


def _write_marker(tmp: Path, kind: str) -> None:
    files = sorted(p.name for p in tmp.iterdir())
    text = json.dumps({"format": MARKER_FORMAT, "kind": kind, "files": files}, sort_keys=True) + "\n"
    (tmp / MARKER_FILE).write_text(text)
    for f in tmp.iterdir():  # mkdtemp makes everything private; the output is an ordinary directory
        f.chmod(0o755 if f.is_dir() and not f.is_symlink() else 0o644)
    tmp.chmod(0o755)


def _refusal(p: Path, kind: str, legacy: frozenset[str], force: bool) -> str:
    """Why a ``kind`` output may not replace what is at ``p`` ("" when it may)."""
    if _holds_cwd(p):
        return f"cannot write into '{p}': it holds the current directory; nothing was written (choose another -o)"
    if not p.exists() and not p.is_symlink():
        return ""
    if p.is_symlink() or not p.is_dir():
        what = "a symbolic link" if p.is_symlink() else "a file"
        return (
            ""
            if force
            else (
                f"'{p}' exists and is {what}, not a wafercc {kind} directory: nothing was written; "
                "choose another -o, or pass --force to replace it"
            )
        )
    if force:
        return ""
    try:
        names = {e.name for e in os.scandir(p)}
    except OSError as e:
        return f"cannot write into '{p}': {e.strerror}"
    if not names:
        return ""
    marker = read_marker(p) if MARKER_FILE in names else None
    if marker is not None and marker["kind"] != kind:
        return (
            f"'{p}' is a wafercc {marker['kind']}, not a {kind}: nothing was written; choose another -o, or "
            "pass --force to replace it"
        )
    known = set(marker["files"]) | {MARKER_FILE} if marker is not None else set(legacy)
    extra = sorted(names - known)
    if marker is None and (extra or not legacy):
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        return (
            f"'{p}' exists and is not a wafercc {kind} output (it holds {shown}): nothing was written; choose "
            "another -o, or pass --force to replace it"
        )
    if extra:
        shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        return (
            f"'{p}' is a wafercc {kind} output, but also holds {shown}, which wafercc did not write there: "
            "nothing was written; move them, or pass --force to replace the whole directory"
        )
    return ""


def _holds_cwd(p: Path) -> bool:
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    real = p.resolve()
    return real == cwd or real in cwd.parents or str(real) == real.anchor


# -- the swap ----------------------------------------------------------------------------------

RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def _swap(tmp: Path, target: Path) -> None:
    """``tmp`` becomes ``target``; whatever ``target`` was is removed after. With the exchange, ``target``
    names a whole output at every instant; without it, ``_recover`` mends a kill between the two renames."""
    if not target.exists() and not target.is_symlink():
        if not _renameat2(tmp, target, RENAME_NOREPLACE):
            os.rename(tmp, target)
        _step("swapped")
        return
    if _renameat2(tmp, target, RENAME_EXCHANGE):
        _step("swapped")  # tmp's name now holds the old output: ours to remove (the next writer does, if killed)
        _remove(tmp)
        _step("old-removed")
        return
    old = target.with_name(f".{target.name}.{_OLD}-{os.getpid()}")
    os.rename(target, old)
    _step("old-moved")
    os.rename(tmp, target)
    _step("swapped")
    _remove(old)
    _step("old-removed")


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """One renameat2(2); False where the OS or the file system has none (then the caller renames)."""
    if os.environ.get(_NO_EXCHANGE_ENV) or not hasattr(os, "fsencode"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(str(src)), at_fdcwd, os.fsencode(str(dst)), ctypes.c_uint(flags)) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _recover(target: Path) -> None:
    """Undo what a killed writer of ``target`` left: an old output moved aside and never replaced goes back;
    temp and old directories (names only wafercc makes) are removed."""
    olds = sorted(_siblings(target, _OLD), key=lambda q: q.stat().st_mtime)
    if olds and not target.exists() and not target.is_symlink():
        os.rename(olds.pop(), target)
    for q in olds + _siblings(target, _TMP):
        _remove(q)


def _siblings(target: Path, tag: str) -> list[Path]:
    prefix = f".{target.name}.{tag}-"
    try:
        return [e for e in target.parent.iterdir() if e.name.startswith(prefix)]
    except OSError:
        return []


def _pid_of(name: str, target_name: str) -> int | None:
    rest = name[len(f".{target_name}.{_TMP}-") :]
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# -- the lock ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold ``.NAME.wafercc-lock`` beside ``target``; another holder means another writer: OutputError at once.
    The lock file is removed on release (a killed holder's file is taken over: the kernel dropped its lock)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): writers are not serialized
        yield
        return
    path = target.with_name(f".{target.name}.{_LOCK}")
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(
                f"cannot write '{target}': cannot create files in '{target.parent}' ({e.strerror}); nothing was written"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputError(
                f"'{target}' is being written by another wafercc process (it holds {path.name}): "
                "nothing was written; wait for it and try again"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file as we opened it: take the new one
    try:
        _step("locked")
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


# -- helpers -----------------------------------------------------------------------------------


def _abs(target: str | os.PathLike) -> Path:
    """``target`` absolute with its parent resolved, its last component kept: a symbolic link at ``-o`` is
    seen as one, not followed."""
    p = Path(os.path.abspath(target))
    if p.name in ("", ".", ".."):
        return p.resolve()
    try:
        return p.parent.resolve() / p.name
    except OSError:
        return p


def _check_parents(target: Path) -> None:
    above = next((a for a in target.parents if a.exists()), None)
    if above is not None and not above.is_dir():
        raise OutputError(f"cannot write '{target}': '{above}' is a file, not a folder; nothing was written")


def _make_parent(target: Path) -> None:
    _check_parents(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cannot_write(target, e) from None


def _cannot_write(target: Path, e: OSError) -> OutputError:
    named = str(e.filename or "")
    where = f" ({named})" if named and named != str(target) and _TMP not in named else ""
    return OutputError(f"cannot write '{target}': {e.strerror or e}{where}; nothing was written")
