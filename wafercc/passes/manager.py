"""The pass manager: pipelines named by strings, verification after each pass, IR dumps, timing,
statistics, and a reproducer when a pass fails.

    pm = PassManager("canonicalize,fold{max-elements=16},cse,dce", print_ir_after={"fold"}, time_passes=True)
    module = pm.run(module)

A pass is a frozen dataclass with a ``name`` class attribute, its options as fields and
``run(self, module) -> Module``; ``run`` may also take ``stats`` (a Counter) to report what it did.
Passes are found by name in a registry of lazy imports, so naming a pass costs nothing until it runs.

When a pass raises, or the verifier rejects what it produced, ``run`` raises ``PassFailure`` naming the
pass; with ``reproducer_dir`` it also writes ``repro.wir``: the IR before that pass, under a header
giving the rest of the pipeline, so ``wafercc opt repro.wir`` replays the failure.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import json
import re
import sys
import tempfile
import time
import typing
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable, Protocol, TextIO

from runtime.artifacts import write_atomic
from wafercc.ir import Module, WaferError, print_module
from wafercc.ops import verify as verify_ops

# name -> "module:Class", imported on first use.
_REGISTRY: dict[str, str | type] = {
    "canonicalize": "wafercc.passes.canonicalize:Canonicalize",
    "cse": "wafercc.passes.cse:CSE",
    "dce": "wafercc.passes.dce:DCE",
    "fold": "wafercc.passes.fold:Fold",
    # mapping onto the mesh (wafercc.mapping), in pipeline order
    "partition": "wafercc.mapping.partition:Partition",
    "tile": "wafercc.mapping.tile:Tile",
    "place": "wafercc.mapping.place:Place",
    "route": "wafercc.mapping.route:Route",
    "memplan": "wafercc.mapping.memplan:MemPlan",
    "cost": "wafercc.mapping.cost:Cost",
}

REPRO_FILE = "repro.wir"
# reproducer_dir=TEMP_DIR: write a failing pass's reproducer into a new temporary folder (named in the
# message), never into a folder the user did not name.
TEMP_DIR = "<temp>"
_REPRO_HEADER = "// wafercc reproducer: pipeline = "


class Pass(Protocol):
    name: str

    def run(self, module: Module) -> Module: ...


class PipelineError(WaferError):
    """A pipeline string that names an unknown pass or option, or gives an option a bad value."""


class PassFailure(WaferError):
    """A pass raised, or left IR the verifier rejects. ``reproducer`` is the repro file, if one was written."""

    def __init__(self, message: str, pass_name: str, reproducer: Path | None = None):
        super().__init__(message)
        self.pass_name = pass_name
        self.reproducer = reproducer


# -- registry ---------------------------------------------------------------------------------
def register_pass(name: str, target: str | type, *, replace: bool = False) -> None:
    """Make a pass available by name; ``target`` is the class or ``"package.module:Class"``."""
    if isinstance(target, str) and not re.fullmatch(r"[\w.]+:\w+", target):
        raise ValueError(f"pass target must be 'module:Class', got {target!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"pass '{name}' is already registered")
    _REGISTRY[name] = target


def unregister_pass(name: str) -> None:
    _REGISTRY.pop(name, None)


def available_passes() -> list[str]:
    return sorted(_REGISTRY)


def pass_class(name: str) -> type:
    target = _REGISTRY.get(name)
    if target is None:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise PipelineError(f"unknown pass '{name}'{hint}; available passes: {', '.join(available_passes())}")
    if isinstance(target, type):
        return target
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


# -- pipeline strings -------------------------------------------------------------------------
_ITEM = re.compile(r"\s*([A-Za-z_][\w.\-]*)\s*(?:\{(.*)\})?\s*\Z", re.DOTALL)
_OPTION = re.compile(r'\s*([A-Za-z_][\w\-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,{}"]+)\s*,?')


def split_pipeline(text: str) -> list[str]:
    """Split at the commas outside braces and quotes: 'a{x=1,y="b,c"},d' -> ['a{x=1,y="b,c"}', 'd']."""
    items, depth, start, quoted, escaped = [], 0, 0, False, False
    for i, ch in enumerate(text):
        if quoted:  # inside "...": only a closing quote that is not escaped matters
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "{}":
            depth += 1 if ch == "{" else -1
            if depth not in (0, 1):
                raise PipelineError(f'unbalanced braces in pipeline "{text}"')
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise PipelineError(f'unbalanced {"quotes" if quoted else "braces"} in pipeline "{text}"')
    items.append(text[start:])
    if len(items) == 1 and not items[0].strip():
        return []
    return items


def parse_pipeline(text: str) -> list[Pass]:
    """Passes from "canonicalize,fold{max-elements=64},dce"; option names use dashes for underscores."""
    passes = []
    for item in split_pipeline(text):
        m = _ITEM.match(item)
        if m is None:
            raise PipelineError(f'malformed pipeline element "{item.strip()}" in "{text}"')
        cls = pass_class(m.group(1))
        passes.append(cls(**_parse_options(m.group(1), cls, m.group(2) or "")))
    return passes


def _parse_options(pass_name: str, cls: type, text: str) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    hints = typing.get_type_hints(cls) if fields else {}
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(text.rstrip()):
        m = _OPTION.match(text, pos)
        if m is None:
            raise PipelineError(f"malformed options \"{text}\" for pass '{pass_name}'; expected name=value")
        pos = m.end()
        key, raw = m.group(1).replace("-", "_"), m.group(2)
        if key not in fields:
            valid = ", ".join(f.replace("_", "-") for f in fields) or "none"
            raise PipelineError(f"pass '{pass_name}' has no option '{m.group(1)}'; valid options: {valid}")
        if key in out:
            raise PipelineError(f"option '{m.group(1)}' of pass '{pass_name}' is given twice")
        out[key] = _convert(pass_name, m.group(1), raw, hints.get(key, str))
    return out


def _convert(pass_name: str, option: str, raw: str, typ: Any) -> Any:
    if raw.startswith('"'):
        raw = json.loads(raw)
    try:
        if typ is bool:
            return {"true": True, "false": False, "1": True, "0": False}[raw.lower()]
        if typ in (int, float):
            return typ(raw)
        return raw
    except (KeyError, ValueError):
        kind = {bool: "true or false", int: "an integer", float: "a number"}[typ]
        raise PipelineError(f"option '{option}' of pass '{pass_name}' must be {kind}, got '{raw}'") from None


def format_pass(p: Pass) -> str:
    """The pipeline element that rebuilds ``p``: its name and the options that differ from the defaults."""
    opts = []
    if dataclasses.is_dataclass(p):
        for f in dataclasses.fields(p):
            v = getattr(p, f.name)
            if f.default is not dataclasses.MISSING and v == f.default:
                continue
            text = ("true" if v else "false") if isinstance(v, bool) else str(v)
            if not re.fullmatch(r"[^\s,{}\"]+", text):
                text = json.dumps(text)
            opts.append(f"{f.name.replace('_', '-')}={text}")
    return p.name + ("{" + " ".join(opts) + "}" if opts else "")


def format_pipeline(passes: Iterable[Pass]) -> str:
    return ",".join(format_pass(p) for p in passes)


def read_reproducer_pipeline(text: str) -> str | None:
    """The pipeline a reproducer's header records, or None when ``text`` has no such header."""
    for line in text.splitlines():
        if line.startswith(_REPRO_HEADER):
            return json.loads(line[len(_REPRO_HEADER) :])
        if line.strip() and not line.startswith("//"):
            return None
    return None


def _accepts_stats(p: Pass) -> bool:
    return "stats" in inspect.signature(p.run).parameters


def _op_count(m: Module) -> int:
    return sum(len(f.ops) for f in m.funcs)


# -- running ----------------------------------------------------------------------------------
class PassManager:
    """Runs a pipeline of passes over a module, verifying after each (see the module docstring)."""

    def __init__(
        self,
        pipeline: str | list,
        verify_each: bool = True,
        print_ir_after_all: bool = False,
        print_ir_after: Iterable[str] = (),
        print_ir_after_change: bool = False,
        time_passes: bool = False,
        stream: TextIO | None = None,
        reproducer_dir: Path | str | None = None,
        verifier: Callable[[Module], object] = verify_ops,
    ):
        self.passes: list[Pass] = _build(pipeline)
        self.verify_each = verify_each
        self.verifier = verifier  # run before the first pass and after each: the op table's rules by default
        self.print_ir_after_all = print_ir_after_all
        self.print_ir_after = set(print_ir_after)
        for name in self.print_ir_after:
            pass_class(name)  # a misspelt name would silently print nothing
        self.print_ir_after_change = print_ir_after_change
        self.time_passes = time_passes
        self.stream = stream  # None: sys.stderr when writing (so redirecting stderr later works)
        self.reproducer_dir = Path(reproducer_dir) if reproducer_dir is not None else None
        # Of the last run: pass name -> counter -> total (a pass listed twice adds up), and one timing row per pass.
        self.stats: dict[str, dict[str, int]] = {}
        self.timings: list[tuple[str, float, int]] = []  # (pass, seconds in run(), ops after)

    @property
    def pipeline(self) -> str:
        return format_pipeline(self.passes)

    def run(self, module: Module) -> Module:
        if self.verify_each:
            self.verifier(module)
        self.stats, self.timings = {}, []
        for i, p in enumerate(self.passes):
            module = self._run_one(i, p, module)
        if self.time_passes:
            self._print_timing()
        return module

    def _run_one(self, i: int, p: Pass, module: Module) -> Module:
        keep_before = self.reproducer_dir is not None or self.print_ir_after_change
        before = print_module(module) if keep_before else None
        stats: Counter = Counter()
        start = time.perf_counter()
        try:
            out = p.run(module, stats=stats) if _accepts_stats(p) else p.run(module)
            if not isinstance(out, Module):
                raise TypeError(f"run() returned {type(out).__name__}, not a Module")
        except Exception as e:  # any failure inside a pass is that pass's failure; the cause is chained
            # A WaferError's message is complete; anything else is a bug in the pass, named as such.
            why = str(e) if isinstance(e, WaferError) else f"{type(e).__name__}: {e} (an internal error in wafercc)"
            raise self._failure(i, p, before, "failed", why) from e
        elapsed = time.perf_counter() - start
        if self.verify_each:
            try:
                self.verifier(out)
            except WaferError as e:
                raise self._failure(i, p, before, "produced invalid IR", str(e)) from e
        self.timings.append((p.name, elapsed, _op_count(out)))
        totals = self.stats.setdefault(p.name, {})
        for key, n in stats.items():
            totals[key] = totals.get(key, 0) + n
        self._dump(p, out, before)
        return out

    def _dump(self, p: Pass, module: Module, before: str | None) -> None:
        wanted = self.print_ir_after_all or p.name in self.print_ir_after
        text = None
        if not wanted and self.print_ir_after_change:
            text = print_module(module)
            wanted = text != before
        if wanted:
            out = self._out()
            out.write(f"// -----// IR Dump After {p.name} //----- //\n")
            out.write(text if text is not None else print_module(module))

    def _failure(self, i: int, p: Pass, before: str | None, what: str, error: str) -> PassFailure:
        message = f"pass '{p.name}' {what}: {error}"
        repro = None
        if self.reproducer_dir is not None and before is not None:
            first = error.splitlines()[0] if error else what
            repro = self._write_reproducer(self.passes[i:], f"// failed in pass '{p.name}': {first}\n", before)
            message += f"\nreproducer written to {repro}"
        return PassFailure(message, p.name, repro)

    def _write_reproducer(self, rest: list[Pass], failed_line: str, before: str) -> Path:
        """Write repro.wir atomically: a half-written reproducer would replay something else."""
        header = f"{_REPRO_HEADER}{json.dumps(format_pipeline(rest))}\n{failed_line}"
        where = self.reproducer_dir
        if str(where) == TEMP_DIR:
            where = Path(tempfile.mkdtemp(prefix="wafercc-repro-"))
        return write_atomic(where / REPRO_FILE, header + before)

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def _print_timing(self) -> None:
        total = sum(t for _, t, _ in self.timings) or 1e-12
        lines = ["===-- wafercc pass timing --===", f"  {'pass':<24}{'wall ms':>10}{'%':>8}{'ops after':>11}"]
        for name, t, ops in self.timings:
            lines.append(f"  {name:<24}{t * 1e3:>10.3f}{100 * t / total:>7.1f}%{ops:>11}")
        lines.append(f"  {'total':<24}{total * 1e3:>10.3f}{100.0:>7.1f}%")
        if any(self.stats.values()):
            lines.append("===-- wafercc pass statistics --===")
            for name, counters in self.stats.items():  # pipeline order
                for key, n in sorted(counters.items()):
                    lines.append(f"  {name:<16}{key:<40}{n:>8}")
        self._out().write("\n".join(lines) + "\n")


def _build(pipeline: str | list) -> list[Pass]:
    if isinstance(pipeline, str):
        return parse_pipeline(pipeline)
    passes: list[Pass] = []
    for item in pipeline:
        passes.extend(parse_pipeline(item) if isinstance(item, str) else [item])
    return passes


def run_pipeline(module: Module, pipeline: str, **kw) -> Module:
    """``PassManager(pipeline, **kw).run(module)``."""
    return PassManager(pipeline, **kw).run(module)
