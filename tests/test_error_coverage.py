"""A ratchet on user-facing error messages (issue 11 item 6): every raise site of wafercc's own errors has a
test that checks its message, or is listed in ``untested_errors.txt``, and that list only shrinks.

A raise site is ``raise SomeError(...)`` in ``wafercc/`` or ``runtime/`` where SomeError is a WaferError
(or ShapeError, which the verifier turns into one), found by reading the class definitions there, or
``raise fail(...)`` where ``fail`` is a function there that returns one (annotated so, or ``return
SomeError(...)``: the verifier's and the plan reader's helpers). Its message's static text is the string
literals in the call, cut at the ``{...}`` holes of f-strings and ``.format`` strings; pieces shorter than 10
characters say too little and are left out, and a site with no piece left (``raise StoreError(str(e))``) is
not counted. A site is tested when one of its pieces, or 4 consecutive words of one, appears in a file under
``tests/`` (an expected-error ``.wir`` file counts). That is a rough measure, not a proof: it keeps a new
message from going untested unnoticed.

The allowlist names a site by its file and the first words of its message (not by line, so editing the
file elsewhere does not disturb it; two sites of one file that begin alike share a line). Regenerate it
with ``python tests/test_error_coverage.py --write``, and read what the diff adds.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
ALLOWLIST = TESTS / "untested_errors.txt"
SCANNED = ("wafercc", "runtime")
ROOT_ERRORS = {"WaferError", "ShapeError"}
TEXT_SUFFIXES = {".py", ".wir", ".txt", ".json"}
MIN_PIECE = 10
KEY_WORDS = 6

HEADER = """\
# Raise sites of wafercc's own errors whose message no test checks (tests/test_error_coverage.py).
# One line per site: <file>: <the first words of its message>. This list may only shrink:
# - a new raise site needs a test that checks its message (an expected-error .wir file is fine), not a line here;
# - when you add a test for a site listed here, delete its line (the ratchet fails until you do);
# - a site that is removed or reworded must leave the list too.
# Rewritten from the tree by: python tests/test_error_coverage.py --write (read the lines it adds)
"""


@dataclass(frozen=True)
class Site:
    path: str  # relative to the repository, with forward slashes
    line: int
    error: str
    pieces: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.path}: {' '.join(self.pieces[0].split()[:KEY_WORDS])}"


# -- scanning -------------------------------------------------------------------------------------


def error_classes(trees: list[ast.Module]) -> set[str]:
    """Names of the classes defined in ``trees`` that derive, by name, from WaferError or ShapeError."""
    bases: dict[str, set[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, set()).update(_name(b) for b in node.bases)
    found = set(ROOT_ERRORS)
    while True:
        more = {name for name, parents in bases.items() if parents & found} - found
        if not more:
            return found
        found |= more


def error_factories(trees: list[ast.Module], errors: set[str]) -> set[str]:
    """Names of the functions defined in ``trees`` that build and return one of ``errors``."""
    return {
        node.name
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _returns_error(node, errors)
    }


def _returns_error(fn: ast.FunctionDef | ast.AsyncFunctionDef, errors: set[str]) -> bool:
    if fn.returns is not None and _name(fn.returns) in errors:
        return True
    returns = (n.value for n in ast.walk(fn) if isinstance(n, ast.Return))
    return any(isinstance(v, ast.Call) and _name(v.func) in errors for v in returns)


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def message_pieces(call: ast.Call) -> tuple[str, ...]:
    """The static text of a raise call's arguments, cut at format holes, each piece trimmed."""
    pieces = []
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        for node in ast.walk(arg):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                pieces += re.split(r"\{[^}]*\}", node.value)
    trimmed = (re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", " ".join(p.split())) for p in pieces)
    return tuple(p for p in trimmed if len(p) >= MIN_PIECE)


def raise_sites(path: str, tree: ast.Module, errors: set[str]) -> list[Site]:
    sites = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and _name(node.exc.func) in errors:
            pieces = message_pieces(node.exc)
            if pieces:
                sites.append(Site(path, node.lineno, _name(node.exc.func), pieces))
    return sites


def scan(root: Path = ROOT) -> list[Site]:
    files = sorted(p for d in SCANNED for p in (root / d).rglob("*.py"))
    trees = {p.relative_to(root).as_posix(): ast.parse(p.read_text(encoding="utf-8")) for p in files}
    errors = error_classes(list(trees.values()))
    errors |= error_factories(list(trees.values()), errors)
    return sorted((s for path, tree in trees.items() for s in raise_sites(path, tree, errors)), key=_order)


def _order(site: Site) -> tuple[str, int]:
    return site.path, site.line


# -- deciding what is tested ----------------------------------------------------------------------


def text_of_tests(tests: Path = TESTS) -> str:
    """Every text file under tests/, except the allowlist and this file (both quote the messages)."""
    skip = {ALLOWLIST.resolve(), Path(__file__).resolve()}
    files = (p for p in sorted(tests.rglob("*")) if p.suffix in TEXT_SUFFIXES and p.resolve() not in skip)
    return "\n".join(p.read_text(encoding="utf-8", errors="ignore") for p in files if p.is_file())


def is_tested(site: Site, text: str) -> bool:
    return any(window in text for piece in site.pieces for window in _windows(piece))


def _windows(piece: str) -> list[str]:
    """The piece itself and, for a longer one, each run of 4 consecutive words."""
    words = piece.split()
    return [piece, *(" ".join(words[i : i + 4]) for i in range(len(words) - 3))]


def untested_keys(sites: list[Site], text: str) -> list[str]:
    return sorted({s.key for s in sites if not is_tested(s, text)})


def read_allowlist(path: Path = ALLOWLIST) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.rstrip() for line in lines if line.strip() and not line.startswith("#")]


def write_allowlist(keys: list[str], path: Path = ALLOWLIST) -> None:
    path.write_text(HEADER + "".join(f"{k}\n" for k in keys), encoding="utf-8")


# -- the ratchet ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _current() -> tuple[list[Site], list[str]]:
    """The repository's raise sites and the keys of the untested ones (scanned once per session)."""
    sites = scan()
    return sites, untested_keys(sites, text_of_tests())


def test_every_raise_site_is_tested_or_allowlisted():
    sites, untested = _current()
    missing = sorted(set(untested) - set(read_allowlist()))
    where = {s.key: f"{s.path}:{s.line}" for s in sites}
    assert not missing, (
        "these raise sites have no test that checks their message; add one (an expected-error .wir file is "
        "fine):\n" + "\n".join(f"  {where[k]}: {k.split(': ', 1)[1]}" for k in missing)
    )


def test_allowlist_only_shrinks():
    stale = sorted(set(read_allowlist()) - set(_current()[1]))
    assert not stale, (
        "tests/untested_errors.txt lists sites that are now tested, or no longer exist: delete these lines\n"
        + "\n".join(f"  {k}" for k in stale)
    )


def test_allowlist_is_sorted_without_duplicates():
    entries = read_allowlist()
    assert entries == sorted(set(entries))
    assert ALLOWLIST.read_text(encoding="utf-8").startswith(HEADER)


# -- the scanner itself ---------------------------------------------------------------------------

SAMPLE = """
class StoreError(WaferError): ...
class ChunkError(StoreError): ...
def f(name, n):
    raise ChunkError(f"chunk {name!r} of the store holds {n} bytes, the manifest says more")
    raise ValueError("a builtin error is not a user-facing message")
    raise StoreError(str(name))
    raise StoreError("manifest.json: entry {} is not a dict".format(name))
def bad(field: str, message: str) -> StoreError:
    return StoreError(f"{field}: {message}")
def refuse(field):
    return ChunkError(field)
def g():
    raise bad("chunks", "the chunk count is not a multiple of the steps")
    raise refuse("a field name that is long enough")
"""


def test_scanner_finds_the_sites_of_wafer_errors_and_their_static_text(tmp_path):
    """Raises of the error classes and of functions returning one; not of builtin errors, nor of text made at
    run time alone."""
    (tmp_path / "runtime").mkdir()
    (tmp_path / "wafercc").mkdir()
    (tmp_path / "runtime" / "m.py").write_text(SAMPLE)
    sites = scan(tmp_path)
    assert [(s.line, s.error, s.pieces) for s in sites] == [
        (5, "ChunkError", ("of the store holds", "bytes, the manifest says more")),
        (8, "StoreError", ("manifest.json: entry", "is not a dict")),
        (14, "bad", ("the chunk count is not a multiple of the steps",)),
        (15, "refuse", ("a field name that is long enough",)),
    ]
    assert sites[0].key == "runtime/m.py: of the store holds"
    assert not is_tested(sites[0], "the store holds 3 bytes")
    assert is_tested(sites[0], "chunk 'w' of the store holds 3 bytes")
    assert is_tested(sites[0], "holds 3 bytes, the manifest says")
    assert untested_keys(sites, "is not a dict; a field name that is long enough") == [
        "runtime/m.py: of the store holds",
        "runtime/m.py: the chunk count is not a",
    ]


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print("usage: python tests/test_error_coverage.py --write  (rewrite tests/untested_errors.txt)")
        return 2
    keys = untested_keys(scan(), text_of_tests())
    write_allowlist(keys)
    print(f"{ALLOWLIST.relative_to(ROOT)}: {len(keys)} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
