"""The typed plan: what the mapping passes decide for each layer, as frozen dataclasses that load from (and
save to) the WIR ``layer @L {...}`` attributes and plan.json, checking every promise the runtime relies on
as they load.

The WIR text is the contract between the compiler and the runtime, and the plan attributes are part of it:
this module is where both sides read them (the runtime imports only ``wafercc.ir``). A plan that breaks a
rule is one ``PlanFormatError`` naming the layer, the field and the rule, never a ``KeyError``::

    layer @L3_fc1: tiling.K.parts: expected a positive integer, got 0 [plan-format]
    layer @L3_fc1: tiling.K: 15 parts of 49 cover 735 of K = 784 [plan-cover]

The dataclasses (docs/plan.md has every key): ``Split`` (M and K), ``NSplit`` (N), ``Tiling``, ``Memory``,
``Rect``, ``Route``, ``MemEntry`` (one buffer of the memory map), ``Links``, ``Estimate``, ``Cost``,
``Stream``, ``Dims``, ``LayerPlan`` (one layer), ``Totals``, and ``Plan`` (the module's: mode, target facts,
totals, layers). ``to_attrs()`` gives back the attributes with the keys in the order the passes write them
(the printed WIR is byte for byte the same); ``to_json()`` the plan.json values.

Rules (each error ends with its rule tag):

- ``plan-format``: every field has its type and range (positive counts, non-negative sizes and cycles,
  known enums);
- ``plan-stage``: a layer that has a stage's keys has every earlier stage's (partition, tile, place, route,
  memplan, cost);
- ``plan-cover``: the tiles cover each dimension exactly: ``parts x tile >= dim`` and ``(parts - 1) x tile
  < dim`` for K, the same for M with its ``passes`` (no empty row of tiles, no empty pass); ``groups <= N``,
  ``chunk <= ceil(N / groups)``, ``steps = ceil(ceil(N / groups) / chunk)``; batch groups (``B``, optional)
  cover B the same way, side by side over the columns, so none overlaps another; ``size = [K.parts x
  B.parts, M.parts x N.groups]``, ``pes = size[0] x size[1]``, ``size`` inside ``region``; a zero dimension
  has one part;
- ``plan-rect``: the tiling fits its rectangle (``size`` inside ``rect``);
- ``plan-route``: every flow the tiling needs has its routes: weights streamed in stream mode need
  ``ingress`` feeding and ``broadcast`` covering the tiling's columns and rows; row groups need
  ``replicate``; ``K.parts > 1`` needs ``reduce`` over every column and row of the tiling, one ring
  starting at its west column and one at its east column (per batch group: the group's own columns, and no
  reduce route crossing into another group's); pipeline mode needs the activations'
  ``broadcast``; in stream mode a layer whose tiling size differs from the previous layer's needs a
  ``relayout``; boxes are not empty, sources lie in their box, paths turn at right angles; ``colors``
  counts the routes' distinct colors;
- ``plan-memory``: the buffers are what the tiling needs (``activation = B.tile x M.tile x K.tile x
  itemsize``, B.tile being B without batch groups, the activation and weight tiles at the operands' storage
  itemsize (``operand_dtype``, else ``dtype``), output and tail at ``dtype``'s, and so on), ``total`` is
  their sum and fits ``budget``; the memory map starts with ``runtime`` at 0, holds each non-empty buffer
  with its size, in order, no two overlapping, and ends with ``free``;
- ``plan-stream``: ``stream.chunks = N.steps x passes``, ``stream.bytes = weight_bytes x passes`` (0 in
  pipeline mode);
- ``plan-anchor`` (with the module's ops): the anchor names an op of ``@forward`` tagged with the layer, of
  an anchor kind agreeing with ``kind``; ``dims`` and ``dtype`` are the op's; ``operand_dtype``, when
  present, is what ``operand_storage_dtype`` finds for the anchor (its operands are exact upcasts of 16-bit
  values) or the layer's ``storage``; ``storage`` is the module's (``STORAGE_ATTR``); ``ops`` counts the
  layer's ops; ``weights`` are declared and ``weight_bytes`` is their size as stored
  (``stored_weight_bytes``);
- ``plan-causal``: ``tiling.causal`` (optional) only on an attention layer in stream mode, and (with the
  module's ops) exactly what ``wafercc.ir.causal.analyze`` finds for its anchor: the scores masked by a
  constant causal mask before the softmax, or P the softmax of such scores, with the mask's diagonal offset;
- ``plan-index``: layers are numbered 0 .. n-1, once each;
- ``plan-totals``: the totals agree with the layers (count, streamed bytes, peak bytes, colors).

What needs the target (the mesh, SRAM, colors) is checked by ``wafercc.mapping.check``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace

from .causal import analyze, users
from .core import Module, Op, SymbolRef
from .errors import VerifyError
from .types import DType

PLAN_FORMAT = "wafercc-plan/1"
MODES = ("stream", "pipeline")
KINDS = ("matmul", "attention", "conv", "gather", "elementwise")
FLOWS = ("ingress", "broadcast", "replicate", "reduce", "relayout", "transfer")
BUFFERS = ("activation", "output", "accumulator", "weight", "tail")
DIRS = ("E", "W", "S", "N")
LAYER_ATTR = "plan.layer"
ACC_BYTES = 4  # the fp32 accumulator of a partial sum
ALIGN = 16  # every per-PE buffer starts at a multiple of this many bytes (memplan lays them out)
# The anchor ops and the layer kinds each can anchor.
ANCHOR_KINDS = {
    "mm": ("matmul", "attention"),
    "addmm": ("matmul", "attention"),
    "bmm": ("matmul", "attention"),
    "convolution": ("conv",),
    "embedding": ("gather",),
}
# The keys each mapping stage adds to a layer, in pipeline order.
STAGES = (
    ("partition", ("index", "kind", "ops", "dtype", "flops", "weights", "weight_bytes", "tail_elements")),
    ("tile", ("tiling", "memory", "estimate")),
    ("place", ("rect", "step")),
    ("route", ("routes", "colors", "links")),
    ("memplan", ("memmap",)),
    ("cost", ("cost", "stream")),
)


class PlanFormatError(VerifyError):
    """A plan that breaks a rule: names the layer, the field and the rule."""

    def __init__(self, layer: str, field: str, message: str, rule: str = "plan-format"):
        where = f"layer @{layer}: " if layer else ""
        super().__init__(f"{where}{field}: {message} [{rule}]", rule=rule)
        self.layer, self.field = layer, field


# -- reading fields -----------------------------------------------------------------------------------


class _Fields:
    """One attribute dict being read: each accessor checks the field's type and names it in errors."""

    def __init__(self, layer: str, path: str, d):
        if not isinstance(d, dict):
            raise PlanFormatError(layer, path or "layer", f"expected a dict, got {_show(d)}")
        self.layer, self.path, self.d = layer, path, d

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, message: str, rule: str = "plan-format") -> PlanFormatError:
        return PlanFormatError(self.layer, self.name(key), message, rule)

    def has(self, key: str) -> bool:
        return key in self.d

    def raw(self, key: str):
        if key not in self.d:
            raise self.fail(key, "missing")
        return self.d[key]

    def int(self, key: str, lo: int = 0) -> int:
        return _int(self.raw(key), lo, self, key)

    def num(self, key: str):
        """A non-negative finite number, kept as written (an int stays an int: the text prints it so)."""
        v = self.raw(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise self.fail(key, f"expected a non-negative number, got {_show(v)}")
        return v

    def str(self, key: str, choices: tuple[str, ...] | None = None) -> str:
        v = self.raw(key)
        if not isinstance(v, str) or (choices is not None and v not in choices):
            want = f"one of {', '.join(choices)}" if choices else "a string"
            raise self.fail(key, f"expected {want}, got {_show(v)}")
        return v

    def bool(self, key: str) -> bool:
        v = self.raw(key)
        if not isinstance(v, bool):
            raise self.fail(key, f"expected true or false, got {_show(v)}")
        return v

    def ints(self, key: str, n: int, lo: int = 0) -> tuple[int, ...]:
        v = self.raw(key)
        if not isinstance(v, (list, tuple)) or len(v) != n:
            raise self.fail(key, f"expected a list of {n} integers, got {_show(v)}")
        return tuple(_int(x, lo, self, key) for x in v)

    def list(self, key: str) -> list:
        v = self.raw(key)
        if not isinstance(v, (list, tuple)):
            raise self.fail(key, f"expected a list, got {_show(v)}")
        return list(v)

    def sub(self, key: str) -> _Fields:
        return _Fields(self.layer, self.name(key), self.raw(key))


def _int(v, lo: int, f: _Fields, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        want = "a positive integer" if lo == 1 else "a non-negative integer" if lo == 0 else f"an integer >= {lo}"
        raise f.fail(key, f"expected {want}, got {_show(v)}")
    return v


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list, tuple)):
        text = repr(v)
        return text if len(text) <= 60 else text[:57] + "..."
    return repr(v) if isinstance(v, str) else str(v)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# -- the parts of a layer's plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class Dims:
    """The anchor as a matrix product Y[M, N] = X[M, K] W[K, N], batched B times."""

    B: int
    M: int
    K: int
    N: int

    @classmethod
    def from_attrs(cls, f: _Fields) -> Dims:
        unknown = [k for k in f.d if k not in ("B", "M", "K", "N")]
        if unknown:
            raise f.fail(unknown[0], "unknown dimension (the dims are B, M, K, N)")
        return cls(f.int("B"), f.int("M"), f.int("K"), f.int("N"))

    def to_attrs(self) -> dict:
        return {"B": self.B, "M": self.M, "K": self.K, "N": self.N}


@dataclass(frozen=True)
class Split:
    """M or K split over a mesh axis: ``parts`` blocks of ``tile`` elements per PE."""

    axis: str
    parts: int
    tile: int

    @classmethod
    def from_attrs(cls, f: _Fields, axis: str) -> Split:
        return cls(f.str("axis", (axis,)), f.int("parts", 1), f.int("tile", 1))

    def to_attrs(self) -> dict:
        return {"axis": self.axis, "parts": self.parts, "tile": self.tile}


@dataclass(frozen=True)
class NSplit:
    """N: streamed in ``steps`` chunks of ``chunk`` columns (axis "time") or resident (axis "y"), over
    ``groups`` row groups."""

    axis: str
    groups: int
    chunk: int
    steps: int

    @classmethod
    def from_attrs(cls, f: _Fields, mode: str) -> NSplit:
        return cls(
            f.str("axis", ("time",) if mode == "stream" else ("y",)),
            f.int("groups", 1),
            f.int("chunk", 1),
            f.int("steps"),
        )

    def to_attrs(self) -> dict:
        return {"axis": self.axis, "groups": self.groups, "chunk": self.chunk, "steps": self.steps}


@dataclass(frozen=True)
class Causal:
    """A causal mask's diagonal, which tiles skip: ``on = "scores"`` (Q.K^T: a tile of scores whose every
    key j > query i + offset is not computed; the mask overwrites it) or ``"probs"`` (P.V: a block of P above
    that diagonal is zero, not multiplied)."""

    on: str
    offset: int

    @classmethod
    def from_attrs(cls, f: _Fields) -> Causal:
        off = f.raw("offset")
        if isinstance(off, bool) or not isinstance(off, int):
            raise f.fail("offset", f"expected an integer, got {_show(off)}")
        return cls(f.str("on", ("scores", "probs")), off)

    def to_attrs(self) -> dict:
        return {"on": self.on, "offset": self.offset}


@dataclass(frozen=True)
class Tiling:
    M: Split
    K: Split
    N: NSplit
    passes: int
    pes: int
    size: tuple[int, int]  # [columns, rows] that hold tiles
    region: tuple[int, int]  # [w, h] the tile search was given
    # A batched product's B split into ``parts`` groups of ``tile`` products, side by side over the columns:
    # group g holds products [g x tile, (g + 1) x tile) on columns [g x K.parts, (g + 1) x K.parts) of the
    # tiling. None: one group runs the whole batch, one product after another on the same tiles.
    B: Split | None = None
    # Causal skipping (``wafercc.ir.causal``): tiles above the mask's diagonal are not computed. None: none.
    causal: Causal | None = None

    @property
    def columns(self) -> int:
        return self.size[0]

    @property
    def batch_groups(self) -> int:
        return self.B.parts if self.B is not None else 1

    def batch_tile(self, dims: Dims) -> int:
        """Products each PE holds: its group's."""
        return self.B.tile if self.B is not None else dims.B

    def group_columns(self, g: int) -> tuple[int, int]:
        """Batch group g's columns, relative to the tiling's first: [first, last]."""
        return (g * self.K.parts, (g + 1) * self.K.parts - 1)

    @property
    def rows(self) -> int:
        return self.size[1]

    @classmethod
    def from_attrs(cls, f: _Fields, mode: str) -> Tiling:
        t = cls(
            Split.from_attrs(f.sub("M"), "y"),
            Split.from_attrs(f.sub("K"), "x"),
            NSplit.from_attrs(f.sub("N"), mode),
            f.int("passes", 1),
            f.int("pes", 1),
            f.ints("size", 2, 1),
            f.ints("region", 2, 1),
            Split.from_attrs(f.sub("B"), "x") if f.has("B") else None,
            Causal.from_attrs(f.sub("causal")) if f.has("causal") else None,
        )
        return t

    def to_attrs(self) -> dict:
        batch = {"B": self.B.to_attrs()} if self.B is not None else {}
        causal = {"causal": self.causal.to_attrs()} if self.causal is not None else {}
        return {
            "M": self.M.to_attrs(),
            "K": self.K.to_attrs(),
            "N": self.N.to_attrs(),
            **batch,
            **causal,
            "passes": self.passes,
            "pes": self.pes,
            "size": list(self.size),
            "region": list(self.region),
        }


@dataclass(frozen=True)
class Memory:
    """Per-PE buffers in bytes (in the order the tile pass wrote them), their total and the budget."""

    buffers: tuple[tuple[str, int], ...]
    total: int
    budget: int

    def get(self, name: str, default: int = 0) -> int:
        return dict(self.buffers).get(name, default)

    @classmethod
    def from_attrs(cls, f: _Fields) -> Memory:
        buffers = []
        for k in f.d:
            if k in ("total", "budget"):
                continue
            if k not in BUFFERS:
                raise f.fail(k, f"unknown buffer (the buffers are {', '.join(BUFFERS)})")
            buffers.append((k, f.int(k)))
        m = cls(tuple(buffers), f.int("total"), f.int("budget"))
        if m.total != sum(b for _, b in m.buffers):
            raise f.fail(
                "total", f"{m.total:,} is not the sum of the buffers, {sum(b for _, b in m.buffers):,}", "plan-memory"
            )
        if m.total > m.budget:
            raise f.fail("total", f"needs {m.total:,} bytes per PE, the budget is {m.budget:,}", "plan-memory")
        return m

    def to_attrs(self) -> dict:
        return {**dict(self.buffers), "total": self.total, "budget": self.budget}


@dataclass(frozen=True)
class Rect:
    """``[x, y, w, h]``: west-north corner (x, y), w columns, h rows."""

    x: int
    y: int
    w: int
    h: int

    @classmethod
    def from_attrs(cls, f: _Fields, key: str) -> Rect:
        v = f.raw(key)
        if not isinstance(v, (list, tuple)) or len(v) != 4:
            raise f.fail(key, f"expected [x, y, w, h], got {_show(v)}")
        x, y = (_int(a, 0, f, key) for a in v[:2])
        w, h = (_int(a, 1, f, key) for a in v[2:])
        return cls(x, y, w, h)

    def to_attrs(self) -> list:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True)
class Route:
    """One flow: a bundle of straight paths (``box``, ``axis``, ``src``, ``feeds``) or a routed ``path``."""

    flow: str
    color: int
    bytes: int
    box: tuple[int, int, int, int] | None = None
    axis: str | None = None
    src: int | None = None
    feeds: tuple[int, int] | None = None
    path: tuple[tuple[int, int], ...] | None = None
    peer: str | None = None

    @classmethod
    def from_attrs(cls, f: _Fields) -> Route:
        flow = f.str("flow", FLOWS)
        color, nbytes = f.int("color"), f.int("bytes")
        box = axis = src = feeds = path = peer = None
        if f.has("box") == (flow == "transfer") or f.has("path") != (flow == "transfer"):
            raise f.fail(
                "flow",
                f"a {flow} route is " + ("a routed path" if flow == "transfer" else "a bundle: a box with an axis"),
                "plan-route",
            )
        if f.has("box"):
            box, axis, src, feeds = _bundle(f, flow)
        else:
            path = _path(f, flow)
        if f.has("peer"):
            peer = f.str("peer")
        return cls(flow, color, nbytes, box, axis, src, feeds, path, peer)

    def to_attrs(self) -> dict:
        out = {"flow": self.flow, "color": self.color, "bytes": self.bytes}
        if self.box is not None:
            out["box"] = list(self.box)
            out["axis"] = self.axis
            if self.src is not None:
                out["src"] = self.src
            if self.feeds is not None:
                out["feeds"] = list(self.feeds)
        if self.path is not None:
            out["path"] = [list(p) for p in self.path]
        if self.peer is not None:
            out["peer"] = self.peer
        return out

    def points(self) -> list[tuple[int, int]]:
        """The box's corners, or the path's points."""
        if self.box is not None:
            return [self.box[:2], self.box[2:]]
        return list(self.path or ())


def _bundle(f: _Fields, flow: str) -> tuple:
    """(box, axis, src, feeds) of a bundle of straight paths."""
    box = f.ints("box", 4)
    if box[0] > box[2] or box[1] > box[3]:
        raise f.fail("box", f"{flow} box {list(box)} is empty", "plan-route")
    axis = f.str("axis", ("x", "y"))
    lo, hi = (box[0], box[2]) if axis == "x" else (box[1], box[3])
    src = feeds = None
    if f.has("src"):
        src = f.int("src")
        if not lo <= src <= hi:
            raise f.fail("src", f"{flow} source {axis}={src} lies outside its box {list(box)}", "plan-route")
    if f.has("feeds"):
        feeds = f.ints("feeds", 2)
        if not box[0] <= feeds[0] <= feeds[1] <= box[2]:
            raise f.fail("feeds", f"{flow} feeds columns {list(feeds)} outside its box {list(box)}", "plan-route")
    return box, axis, src, feeds


def _path(f: _Fields, flow: str) -> tuple[tuple[int, int], ...]:
    """The corner points of a routed path, turning only at right angles."""
    pts = f.list("path")
    if not pts:
        raise f.fail("path", "expected at least one point, got []")
    path = tuple(_point(p, f) for p in pts)
    for (ax, ay), (bx, by) in zip(path, path[1:]):
        if ax != bx and ay != by:
            raise f.fail("path", f"{flow} path jumps from ({ax},{ay}) to ({bx},{by})", "plan-route")
    return path


def _point(p, f: _Fields) -> tuple[int, int]:
    if not isinstance(p, (list, tuple)) or len(p) != 2:
        raise f.fail("path", f"expected points [x, y], got {_show(p)}")
    return (_int(p[0], 0, f, "path"), _int(p[1], 0, f, "path"))


@dataclass(frozen=True)
class Links:
    """The busiest directed link: ``busiest = (x, y, dir)``, the bytes it carries, and in link cycles."""

    busiest: tuple[int, int, str]
    bytes: int
    cycles: float

    @classmethod
    def from_attrs(cls, f: _Fields) -> Links:
        v = f.raw("busiest")
        if not isinstance(v, (list, tuple)) or len(v) != 3 or v[2] not in DIRS:
            raise f.fail("busiest", f"expected [x, y, dir] with dir one of {', '.join(DIRS)}, got {_show(v)}")
        return cls((_int(v[0], 0, f, "busiest"), _int(v[1], 0, f, "busiest"), v[2]), f.int("bytes"), f.num("cycles"))

    def to_attrs(self) -> dict:
        return {"busiest": list(self.busiest), "bytes": self.bytes, "cycles": self.cycles}


@dataclass(frozen=True)
class MemEntry:
    buffer: str
    offset: int
    bytes: int

    def to_attrs(self) -> dict:
        return {"buffer": self.buffer, "offset": self.offset, "bytes": self.bytes}

    @property
    def end(self) -> int:
        return self.offset + self.bytes


class _Record:
    """A dict of named numbers (and a few enums) with a fixed key order: the cost terms and totals."""

    _ENUMS: dict[str, tuple[str, ...]] = {}
    _INTS: tuple[str, ...] = ()
    _BOOLS: tuple[str, ...] = ()
    _NESTED: tuple[str, ...] = ()

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The record's keys as plan.json writes them (a nested record's keys are not its own)."""
        return tuple(name for name in cls.__dataclass_fields__ if name not in cls._NESTED)

    @classmethod
    def from_attrs(cls, f: _Fields):
        kw = {}
        for name in cls.keys():
            if name in cls._ENUMS:
                kw[name] = f.str(name, cls._ENUMS[name])
            elif name in cls._INTS:
                kw[name] = f.int(name)
            elif name in cls._BOOLS:
                kw[name] = f.bool(name)
            else:
                kw[name] = f.num(name)
        return cls(**kw)

    def to_attrs(self) -> dict:
        return {name: getattr(self, name) for name in self.keys()}


@dataclass(frozen=True)
class Estimate(_Record):
    """The tile search's cost of the tiling alone, in cycles."""

    compute: float
    ingress: float
    broadcast: float
    reduce: float
    latency: float
    tail: float
    total: float
    bound: str
    roofline: float
    roofline_by: str
    utilization: float
    _ENUMS = {"bound": ("compute", "ingress", "broadcast", "reduce"), "roofline_by": ("compute", "ingress")}


@dataclass(frozen=True)
class Cost(_Record):
    """The layer's cycles with the routes known."""

    compute: float
    ingress: float
    fabric: float
    latency: float
    tail: float
    total: float
    bound: str
    roofline: float
    seconds: float
    utilization: float
    _ENUMS = {"bound": ("compute", "ingress", "fabric")}


@dataclass(frozen=True)
class Stream(_Record):
    """The layer's weight stream."""

    order: int
    bytes: int
    chunks: int
    chunk_bytes: int
    prefetch: bool
    _INTS = ("order", "bytes", "chunks", "chunk_bytes")
    _BOOLS = ("prefetch",)


@dataclass(frozen=True)
class TrainingTotals(_Record):
    """A training plan's step, in ``plan.totals`` beside the forward totals (wafercc/mapping/training.py):
    time per phase, gradient egress, the activations the backward pass needs, the optimizer in MemoryX."""

    forward_seconds: float
    backward_seconds: float
    gradient_bytes_streamed: int
    gradient_seconds: float
    activation_bytes_kept: int
    activation_bytes_spilled: int
    activation_bytes_recomputed: int
    spill_seconds: float
    recompute_seconds: float
    optimizer_seconds: float
    optimizer_exposed_seconds: float
    step_seconds: float
    batch: int
    samples_per_s: float
    _INTS = (
        "gradient_bytes_streamed",
        "activation_bytes_kept",
        "activation_bytes_spilled",
        "activation_bytes_recomputed",
        "batch",
    )


@dataclass(frozen=True)
class Totals(_Record):
    """The whole model's plan (``plan.totals``); ``training`` when the module was compiled with --train."""

    layers: int
    cycles: float
    seconds: float
    flops: int
    weight_bytes_streamed: int
    peak_bytes_per_pe: int
    utilization: float
    max_colors: int
    structures: int
    training: TrainingTotals | None = None
    _INTS = ("layers", "flops", "weight_bytes_streamed", "peak_bytes_per_pe", "max_colors", "structures")
    _NESTED = ("training",)

    @classmethod
    def from_attrs(cls, f: _Fields) -> Totals:
        """The totals; a training plan's keys come all together (one missing is named) or not at all."""
        totals = super().from_attrs(f)
        if any(f.has(k) for k in TrainingTotals.keys()):
            totals = replace(totals, training=TrainingTotals.from_attrs(f))
        return totals

    def to_attrs(self) -> dict:
        d = super().to_attrs()
        if self.training is not None:
            d.update(self.training.to_attrs())
        return d


# -- a layer -----------------------------------------------------------------------------------------

_STAGE_OF = {k: i for i, (_, keys) in enumerate(STAGES) for k in keys}
_KNOWN = set(_STAGE_OF) | {"anchor", "dims", "structure", "operand_dtype", "storage"}
# The module attribute naming the storage precision of a whole plan (``compile --train --precision bf16``).
STORAGE_ATTR = "storage"
# The operands of each product anchor (addmm's bias is added after the product, in fp32).
PRODUCT_OPERANDS = {"mm": (0, 1), "bmm": (0, 1), "addmm": (1, 2), "convolution": (0, 1)}
# Ops every element of whose results is an element of their data operands (operand 0; every operand of cat):
# values pass through them unchanged, whatever the layout.
_VALUE_PRESERVING = frozenset(
    {"view", "permute", "expand", "slice", "select", "unsqueeze", "squeeze", "split", "flip", "repeat"}
    | {"diagonal", "as_strided", "clone", "index_select", "gather", "index", "cat"}
)
_SIXTEEN_BIT = (DType.bf16, DType.f16)


@dataclass(frozen=True)
class LayerPlan:
    """One layer's plan; the fields of later stages are None until their pass has run."""

    name: str
    index: int
    kind: str
    ops: int
    dtype: DType
    flops: int
    weights: tuple[str, ...]  # symbol names, without the @
    weight_bytes: int
    tail_elements: int
    structure: str | None = None
    anchor: str | None = None  # "%addmm_2"
    operand_dtype: DType | None = None  # the product's operands stored in 16 bits (None: in ``dtype``)
    storage: DType | None = None  # the module's 16-bit storage: every tile and streamed parameter in 2 bytes
    dims: Dims | None = None
    tiling: Tiling | None = None
    memory: Memory | None = None
    estimate: Estimate | None = None
    rect: Rect | None = None
    step: int | None = None
    routes: tuple[Route, ...] | None = None
    colors: int | None = None
    links: Links | None = None
    memmap: tuple[MemEntry, ...] | None = None
    cost: Cost | None = None
    stream: Stream | None = None
    extra: tuple[tuple[str, object], ...] = ()  # attributes this module does not know, kept as written

    @property
    def operand_itemsize(self) -> int:
        """Bytes of one stored operand element of the product: ``operand_dtype``'s, else ``dtype``'s."""
        return (self.operand_dtype or self.storage or self.dtype).itemsize

    @property
    def matmul_dims(self) -> Dims:
        """The dims, or 1 x 1 x 1 x 1 for a layer without an anchor (as the tile pass sizes it)."""
        return self.dims or Dims(1, 1, 1, 1)

    def routes_of(self, flow: str) -> list[Route]:
        return [r for r in self.routes or () if r.flow == flow]

    @classmethod
    def from_attrs(cls, name: str, attrs: dict, mode: str = "stream", routes_memo: dict | None = None) -> LayerPlan:
        """Load and check one layer (``mode``: the module's, stream or pipeline; ``routes_memo``: see
        ``_later_stages``)."""
        f = _Fields(name, "", attrs)
        _check_stages(f)
        kind = f.str("kind", KINDS)
        dtype, weights = _dtype(f), _weights(f)
        anchor, dims = _anchor(f, kind)
        kw = dict(
            name=name,
            index=f.int("index"),
            kind=kind,
            ops=f.int("ops"),
            dtype=dtype,
            flops=f.int("flops"),
            weights=tuple(weights),
            weight_bytes=f.int("weight_bytes"),
            tail_elements=f.int("tail_elements"),
            structure=f.str("structure") if f.has("structure") else None,
            anchor=anchor,
            dims=dims,
            operand_dtype=_operand_dtype(f, kind, dtype),
            storage=_storage(f),
        )
        kw.update(_later_stages(f, mode, routes_memo))
        kw["extra"] = tuple((k, v) for k, v in attrs.items() if k not in _KNOWN)
        lp = cls(**kw)
        _check_layer(lp, f, mode)
        return lp

    def to_attrs(self) -> dict:
        """The WIR attributes (nested keys in the passes' order; the printer sorts the top level)."""
        out: dict = {
            "index": self.index,
            "kind": self.kind,
            "ops": self.ops,
            "flops": self.flops,
            "weights": [SymbolRef(w) for w in self.weights],
            "weight_bytes": self.weight_bytes,
            "dtype": self.dtype,
        }
        if self.dims is not None:
            out["dims"] = self.dims.to_attrs()
            out["anchor"] = self.anchor
        if self.operand_dtype is not None:
            out["operand_dtype"] = self.operand_dtype
        if self.storage is not None:
            out["storage"] = self.storage
        out["tail_elements"] = self.tail_elements
        if self.structure is not None:
            out["structure"] = self.structure
        if self.tiling is not None:
            out.update(tiling=self.tiling.to_attrs(), memory=self.memory.to_attrs(), estimate=self.estimate.to_attrs())
        if self.rect is not None:
            out.update(rect=self.rect.to_attrs(), step=self.step)
        if self.routes is not None:
            out.update(routes=[r.to_attrs() for r in self.routes], colors=self.colors, links=self.links.to_attrs())
        if self.memmap is not None:
            out["memmap"] = [e.to_attrs() for e in self.memmap]
        if self.cost is not None:
            out.update(cost=self.cost.to_attrs(), stream=self.stream.to_attrs())
        out.update(self.extra)
        return out

    def to_json(self) -> dict:
        """The layer as plan.json has it: its name, and the attributes as JSON values."""
        return {"name": self.name, **plain(self.to_attrs())}


def _dtype(f: _Fields) -> DType:
    v = f.raw("dtype")
    try:
        return v if isinstance(v, DType) else DType(v)
    except ValueError:
        raise f.fail("dtype", f"expected a dtype, got {_show(v)}") from None


def _operand_dtype(f: _Fields, kind: str, dtype: DType) -> DType | None:
    if not f.has("operand_dtype"):
        return None
    v = f.raw("operand_dtype")
    if (
        kind not in ("matmul", "attention", "conv")
        or dtype != DType.f32
        or not (v in _SIXTEEN_BIT or v in ("bf16", "f16"))
    ):
        raise f.fail(
            "operand_dtype",
            f"expected bf16 or f16 for the operands of an f32 product, got {_show(v)} "
            f"(a {kind} layer of dtype {dtype.value})",
        )
    return DType(v)


def _storage(f: _Fields) -> DType | None:
    if not f.has("storage"):
        return None
    v = f.raw("storage")
    if not (v in _SIXTEEN_BIT or v in ("bf16", "f16")):
        raise f.fail("storage", f"expected bf16 or f16 (the module's 16-bit storage), got {_show(v)}")
    return DType(v)


def _weights(f: _Fields) -> tuple[str, ...]:
    out = []
    for w in f.list("weights"):
        if isinstance(w, SymbolRef):
            out.append(w.name)
        elif isinstance(w, str) and w.startswith("@"):
            out.append(w[1:])
        else:
            raise f.fail("weights", f"expected weight symbols, got {_show(w)}")
    return tuple(out)


def _anchor(f: _Fields, kind: str) -> tuple[str | None, Dims | None]:
    if kind == "elementwise":
        for k in ("anchor", "dims"):
            if f.has(k):
                raise f.fail(k, "an elementwise layer has no anchor", "plan-anchor")
        return None, None
    anchor = f.str("anchor")
    if not anchor.startswith("%"):
        raise f.fail("anchor", f'expected a value name like "%addmm", got {_show(anchor)}')
    return anchor, Dims.from_attrs(f.sub("dims"))


def _later_stages(f: _Fields, mode: str, routes_memo: dict | None = None) -> dict:
    """The fields of the tile, place, route, memplan and cost stages that ran. ``routes_memo`` (one load of a
    module's plan) keeps each routes list read, by identity: the route pass gives identical layers the same
    list, read once (a route is a function of its attributes; the layer and index name only an error)."""
    kw: dict = {}
    if f.has("tiling"):
        kw.update(
            tiling=Tiling.from_attrs(f.sub("tiling"), mode),
            memory=Memory.from_attrs(f.sub("memory")),
            estimate=Estimate.from_attrs(f.sub("estimate")),
        )
    if f.has("rect"):
        kw.update(rect=Rect.from_attrs(f, "rect"), step=f.int("step"))
    if f.has("routes"):
        listed = f.raw("routes")
        seen = routes_memo.get(id(listed)) if routes_memo is not None else None
        if seen is not None and seen[0] is listed:
            routes = seen[1]
        else:
            routes = tuple(
                Route.from_attrs(_Fields(f.layer, f"routes[{i}]", r)) for i, r in enumerate(f.list("routes"))
            )
            if routes_memo is not None:
                routes_memo[id(listed)] = (listed, routes)  # the list itself is kept, so its id is not reused
        kw.update(routes=routes, colors=f.int("colors"), links=Links.from_attrs(f.sub("links")))
    if f.has("memmap"):
        kw["memmap"] = tuple(_mem_entry(_Fields(f.layer, f"memmap[{i}]", e)) for i, e in enumerate(f.list("memmap")))
    if f.has("cost"):
        kw.update(cost=Cost.from_attrs(f.sub("cost")), stream=Stream.from_attrs(f.sub("stream")))
    return kw


def _mem_entry(f: _Fields) -> MemEntry:
    return MemEntry(f.str("buffer"), f.int("offset"), f.int("bytes"))


def plain(v):
    """Attribute values as JSON values: symbols as "@name", dtypes as their names, tuples as lists."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, SymbolRef):
        return str(v)
    if isinstance(v, DType):
        return v.value
    return v


def _check_stages(f: _Fields) -> None:
    present = [i for i, (_, keys) in enumerate(STAGES) if any(k in f.d for k in keys)]
    last = max(present, default=-1)
    for i in range(last + 1):
        stage, keys = STAGES[i]
        for k in keys:
            if k not in f.d:
                later = next(k2 for k2 in STAGES[last][1] if k2 in f.d)
                raise f.fail(
                    k,
                    f"missing, but '{later}' is there: the '{stage}' pass runs before '{STAGES[last][0]}'",
                    "plan-stage",
                )


def _check_layer(lp: LayerPlan, f: _Fields, mode: str) -> None:
    t = lp.tiling
    if t is None:
        return
    _check_cover(lp, t, f)
    if t.causal is not None and (lp.kind != "attention" or mode != "stream"):
        what = f"a {lp.kind} layer" if lp.kind != "attention" else "pipeline mode"
        msg = f"causal skipping is planned for attention layers in stream mode, not {what}"
        raise f.fail("tiling.causal", msg, "plan-causal")
    _check_memory(lp, t, f, mode)
    if lp.rect is not None:
        r = lp.rect
        if r.w < t.size[0] or r.h < t.size[1]:
            raise f.fail(
                "rect", f"{r.to_attrs()} is smaller than its tiling's {t.size[0]}x{t.size[1]} PEs", "plan-rect"
            )
    if lp.routes is not None:
        _check_routes(lp, t, f, mode)
    if lp.memmap is not None:
        _check_memmap(lp, f)
    if lp.stream is not None:
        s = lp.stream
        if s.chunks != t.N.steps * t.passes:
            raise f.fail("stream.chunks", f"{s.chunks} is not N.steps x passes = {t.N.steps * t.passes}", "plan-stream")
        want = lp.weight_bytes * t.passes if mode == "stream" else 0
        if s.bytes != want:
            raise f.fail(
                "stream.bytes",
                f"{s.bytes:,} is not {'weight_bytes x passes' if mode == 'stream' else 0} = {want:,}",
                "plan-stream",
            )


def _check_cover(lp: LayerPlan, t: Tiling, f: _Fields) -> None:
    d = lp.matmul_dims
    if lp.kind == "elementwise":
        if t.passes != 1:
            raise f.fail("tiling.passes", f"an elementwise layer runs in one pass, got {t.passes}", "plan-cover")
        have = t.M.parts * t.M.tile * t.K.parts
        if have < lp.tail_elements:
            raise f.fail(
                "tiling.M",
                f"{t.K.parts}x{t.M.parts} PEs of {t.M.tile} elements cover {have:,} of the "
                f"{lp.tail_elements:,} tail elements",
                "plan-cover",
            )
    else:
        _cover_one(f, "tiling.K", t.K.parts, t.K.tile, d.K, "K")
        if d.M == 0:
            if t.M.parts != 1 or t.passes != 1:
                raise f.fail("tiling.M", "M = 0 takes one part in one pass", "plan-cover")
        else:
            per = t.M.tile * t.passes  # tokens of one row of PEs over all passes
            if t.M.parts * per < d.M:
                raise f.fail(
                    "tiling.M",
                    f"{t.M.parts} parts of {t.M.tile} in {t.passes} pass(es) cover {t.M.parts * per:,} of M = {d.M:,}",
                    "plan-cover",
                )
            if (t.M.parts - 1) * per >= d.M:
                raise f.fail(
                    "tiling.M",
                    f"{t.M.parts} parts of {t.M.tile} in {t.passes} pass(es): the last row "
                    f"of tiles holds none of M = {d.M:,}",
                    "plan-cover",
                )
            if (t.passes - 1) * t.M.parts * t.M.tile >= d.M:
                raise f.fail(
                    "tiling.passes",
                    f"{t.passes} passes of {t.M.parts} x {t.M.tile} tokens: the last pass holds none of M = {d.M:,}",
                    "plan-cover",
                )
    _check_n(t, d, f)
    _check_batch(lp, t, d, f)
    want = (t.K.parts * t.batch_groups, t.M.parts * t.N.groups)
    if t.size != want:
        what = "K.parts x B.parts" if t.B is not None else "K.parts"
        raise f.fail("tiling.size", f"{list(t.size)} is not [{what}, M.parts x N.groups] = {list(want)}", "plan-cover")
    if t.pes != want[0] * want[1]:
        raise f.fail("tiling.pes", f"{t.pes} is not size[0] x size[1] = {want[0] * want[1]}", "plan-cover")
    if t.size[0] > t.region[0] or t.size[1] > t.region[1]:
        raise f.fail("tiling.size", f"{list(t.size)} does not fit the region {list(t.region)}", "plan-cover")


def _check_batch(lp: LayerPlan, t: Tiling, d: Dims, f: _Fields) -> None:
    """Batch groups cover B exactly (each product in one group, no group empty); they sit side by side over
    the columns (``size``), so no two share a PE."""
    if t.B is None:
        return
    if lp.kind == "elementwise":
        raise f.fail("tiling.B", "an elementwise layer has no batch to split", "plan-cover")
    _cover_one(f, "tiling.B", t.B.parts, t.B.tile, d.B, "B")


def _check_n(t: Tiling, d: Dims, f: _Fields) -> None:
    n = t.N
    if d.N == 0:
        if n.groups != 1 or n.steps != 0:
            raise f.fail("tiling.N", "N = 0 takes one group and no steps", "plan-cover")
        return
    if n.groups > d.N:
        raise f.fail("tiling.N.groups", f"{n.groups} row groups for N = {d.N:,}", "plan-cover")
    nt = _cdiv(d.N, n.groups)
    if n.chunk > nt:
        raise f.fail("tiling.N.chunk", f"{n.chunk} is wider than a row group's {nt:,} columns", "plan-cover")
    if n.steps != _cdiv(nt, n.chunk):
        raise f.fail(
            "tiling.N.steps",
            f"{n.steps} steps of {n.chunk} columns; a row group's {nt:,} columns take {_cdiv(nt, n.chunk)}",
            "plan-cover",
        )


def _cover_one(f: _Fields, field: str, parts: int, tile: int, dim: int, name: str) -> None:
    if dim == 0:
        if parts != 1:
            raise f.fail(field + ".parts", f"{name} = 0 takes one part, got {parts}", "plan-cover")
        return
    if parts * tile < dim:
        raise f.fail(field, f"{parts} parts of {tile} cover {parts * tile:,} of {name} = {dim:,}", "plan-cover")
    if (parts - 1) * tile >= dim:
        raise f.fail(field, f"{parts} parts of {tile}: the last part holds none of {name} = {dim:,}", "plan-cover")


def _check_memory(lp: LayerPlan, t: Tiling, f: _Fields, mode: str) -> None:
    d = lp.matmul_dims
    if lp.kind == "elementwise" or 0 in (d.B, d.M, d.K, d.N):
        return
    e = (lp.storage or lp.dtype).itemsize
    eo = lp.operand_itemsize
    mt, kt, nc = t.M.tile, t.K.tile, t.N.chunk
    nt = _cdiv(d.N, t.N.groups)
    bt = t.batch_tile(d)  # a PE holds its batch group's products
    need = {
        "activation": mt * kt * eo * bt,
        "output": mt * _cdiv(nt, t.K.parts) * e * bt,
        "accumulator": 2 * mt * nc * ACC_BYTES,
        "weight": kt * _cdiv(nt, t.M.parts) * eo * bt if mode == "pipeline" else 2 * kt * nc * eo,
        "tail": _cdiv(lp.tail_elements, t.rows * t.columns * t.passes) * e,
    }
    have = dict(lp.memory.buffers)
    for b, n in need.items():
        if have.get(b, 0) != n:
            raise f.fail(
                f"memory.{b}", f"{have.get(b, 0):,} bytes, but the tiling's {b} buffer needs {n:,}", "plan-memory"
            )


def _check_memmap(lp: LayerPlan, f: _Fields) -> None:
    mm = lp.memmap
    if len(mm) < 2 or mm[0].buffer != "runtime" or mm[0].offset != 0 or mm[-1].buffer != "free":
        raise f.fail("memmap", "expected the runtime's share at offset 0 first and the free space last", "plan-memory")
    names = [e.buffer for e in mm[1:-1]]
    want = [b for b in BUFFERS if lp.memory.get(b)]  # memplan's order
    if names != want:
        raise f.fail("memmap", f"holds {names}, but the layer's non-empty buffers are {want}", "plan-memory")
    for i, e in enumerate(mm[1:-1], 1):
        if e.bytes != lp.memory.get(e.buffer):
            raise f.fail(
                f"memmap[{i}].bytes",
                f"{e.buffer} has {e.bytes:,} bytes, memory.{e.buffer} says {lp.memory.get(e.buffer):,}",
                "plan-memory",
            )
    for i, (a, b) in enumerate(zip(mm, mm[1:]), 1):
        if b.offset < a.end:
            raise f.fail(
                f"memmap[{i}].offset",
                f"{b.buffer} at {b.offset:,} overlaps {a.buffer} [{a.offset:,}, {a.end:,})",
                "plan-memory",
            )


def _check_routes(lp: LayerPlan, t: Tiling, f: _Fields, mode: str) -> None:
    _check_needed_routes(lp, t, f, mode)
    colors = len({r.color for r in lp.routes})
    if lp.colors != colors:
        raise f.fail("colors", f"{lp.colors}, but the routes use {colors} distinct colors", "plan-colors")


def _check_needed_routes(lp: LayerPlan, t: Tiling, f: _Fields, mode: str) -> None:
    r = lp.rect
    cols, rows = (r.x, r.x + t.columns - 1), (r.y, r.y + t.rows - 1)
    if mode == "stream" and lp.weight_bytes * t.passes:
        feeds = [(x.feeds[0], 0, x.feeds[1], 0) for x in lp.routes_of("ingress") if x.feeds is not None]
        _need(f, lp, "ingress", feeds, (cols[0], 0, cols[1], 0), "feeding every column of the tiling")
        _need_bundle(f, lp, "broadcast", "y", cols, rows)
    if mode == "pipeline":
        _need_bundle(f, lp, "broadcast", "y", cols, rows)
    if lp.kind == "elementwise":
        return
    if mode == "stream" and t.N.groups > 1:
        _need_bundle(f, lp, "replicate", "y", cols, rows)
    if t.K.parts > 1:
        _need_bundle(f, lp, "reduce", "x", cols, rows)
        _check_group_rings(f, lp, t, cols[0], rows)


def _check_group_rings(f, lp: LayerPlan, t: Tiling, x0: int, rows) -> None:
    """Each batch group's partial sums are reduced within its own columns (without batch groups, the one
    group is the tiling): its ring has a flow from its west column and one from its east column, and no
    reduce route over the tiling's rows reaches from one group's columns into another's (it would add one
    group's products to another's). The first group that breaks a rule is named, a crossing before a missing
    ring flow; in time linear in routes and groups (a 1T-model attention layer has 160 groups)."""
    cx, groups = t.K.parts, t.batch_groups
    ring = [x for x in lp.routes_of("reduce") if x.axis == "x" and x.box is not None]
    cross, crossing = groups, None  # the first group a route crosses out of, and that route
    west_mark, east_mark = [0] * (groups + 1), [0] * (groups + 1)  # difference arrays over the groups
    for x in ring:
        bx0, by0, bx1, _ = x.box[0], x.box[1], x.box[2], x.box[3]
        g0, g1 = (bx0 - x0) // cx, (bx1 - x0) // cx
        lo, hi = max(g0, 0), min(g1, groups - 1)
        if lo > hi:
            continue  # beside the tiling's columns
        if t.B is not None and g0 != g1 and lo < cross and by0 <= rows[1] and x.box[3] >= rows[0]:
            cross, crossing = lo, x
        s = x.src if x.src is not None else bx0
        w_lo = max(lo, -((x0 - s) // cx))  # groups whose west column x0 + g*cx is at or east of s
        if w_lo <= hi:
            west_mark[w_lo] += 1
            west_mark[hi + 1] -= 1
        e_hi = min(hi, (s - x0 - cx + 1) // cx)  # groups whose east column x0 + g*cx + cx - 1 is at or west of s
        if lo <= e_hi:
            east_mark[lo] += 1
            east_mark[e_hi + 1] -= 1
    missing, w, e = groups, 0, 0
    for g in range(groups):
        w, e = w + west_mark[g], e + east_mark[g]
        if not (w and e):
            missing = g
            break
    if crossing is not None and cross <= missing:
        west, east = (x0 + c for c in t.group_columns(cross))
        raise f.fail(
            "routes",
            f"reduce route {list(crossing.box)} crosses batch group {cross}'s columns {west}-{east}: a group's "
            "partial sums are reduced within its own columns",
            "plan-route",
        )
    if missing < groups:
        west, east = (x0 + c for c in t.group_columns(missing))
        where = f" of batch group {missing} (columns {west}-{east})" if t.B is not None else ""
        raise f.fail(
            "routes",
            f"the reduction ring{where} needs a reduce flow from its west column x={west} and one "
            f"from its east column x={east}",
            "plan-route",
        )


def _need_bundle(f, lp: LayerPlan, flow: str, axis: str, cols, rows) -> None:
    boxes = [x.box for x in lp.routes_of(flow) if x.box is not None and x.axis == axis]
    _need(f, lp, flow, boxes, (cols[0], rows[0], cols[1], rows[1]), f"along {axis} over every PE of the tiling")


def _need(f, lp: LayerPlan, flow: str, boxes: list, want: tuple, what: str) -> None:
    hole = _uncovered(boxes, want)
    if hole is not None:
        x0, y0, x1, y1 = want
        raise f.fail(
            "routes",
            f"no {flow} route {what} (columns {x0}-{x1}, rows {y0}-{y1}): ({hole[0]},{hole[1]}) is not reached",
            "plan-route",
        )


def _uncovered(boxes: list, want: tuple) -> tuple[int, int] | None:
    """A point of the box ``want`` that no box covers (boxes inclusive), or None: the first in x, then y
    order of the grid the boxes' edges cut ``want`` into. Each box adds 1 over the cells it covers in a 2-D
    difference array, whose running sums are the cover counts: O(boxes + cells) (scanning every box for
    every cell took a third of loading the 1T training plan, whose reduce and broadcast bundles are
    hundreds of one-column boxes)."""
    x0, y0, x1, y1 = want
    xs = sorted(
        {x0, x1 + 1} | {b[0] for b in boxes if x0 <= b[0] <= x1} | {b[2] + 1 for b in boxes if x0 <= b[2] + 1 <= x1}
    )
    ys = sorted(
        {y0, y1 + 1} | {b[1] for b in boxes if y0 <= b[1] <= y1} | {b[3] + 1 for b in boxes if y0 <= b[3] + 1 <= y1}
    )
    nx, ny = len(xs) - 1, len(ys) - 1  # cell (i, j) is the point (xs[i], ys[j])
    diff = [[0] * (ny + 1) for _ in range(nx + 1)]
    for b in boxes:
        i0, i1 = bisect_left(xs, b[0], 0, nx), bisect_right(xs, b[2], 0, nx)
        j0, j1 = bisect_left(ys, b[1], 0, ny), bisect_right(ys, b[3], 0, ny)
        if i0 < i1 and j0 < j1:
            diff[i0][j0] += 1
            diff[i0][j1] -= 1
            diff[i1][j0] -= 1
            diff[i1][j1] += 1
    column = [0] * ny  # column[j]: diff summed over the rows so far
    for i in range(nx):
        row, covered = diff[i], 0
        for j in range(ny):
            column[j] += row[j]
            covered += column[j]
            if not covered:
                return (xs[i], ys[j])
    return None


# -- the whole plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A module's plan: its mode, the target (the plan.json facts, or the WIR spec string), totals, layers
    in execution order."""

    model: str
    mode: str
    target: object  # the target spec (WIR) or plan.json's dict of its facts
    totals: Totals | None
    layers: tuple[LayerPlan, ...]

    def layer(self, name: str) -> LayerPlan:
        for lp in self.layers:
            if lp.name == name:
                return lp
        raise KeyError(name)

    def to_json(self) -> dict:
        """plan.json's dict (``target`` as given: the caller describes the Target)."""
        return {
            "format": PLAN_FORMAT,
            "model": self.model,
            "mode": self.mode,
            "target": self.target,
            "totals": self.totals.to_attrs() if self.totals is not None else {},
            "layers": [lp.to_json() for lp in self.layers],
        }

    @classmethod
    def from_json(cls, d: dict) -> Plan:
        """A loaded plan.json, checked (everything but the ops: plan.json has none)."""
        top = _Fields("", "", d)
        fmt = top.raw("format")
        if fmt != PLAN_FORMAT:
            raise top.fail("format", f"expected {PLAN_FORMAT!r}, got {_show(fmt)}")
        mode = top.str("mode", MODES)
        target = top.raw("target")
        if not isinstance(target, dict):
            raise top.fail("target", f"expected a dict, got {_show(target)}")
        layers = []
        for i, a in enumerate(top.list("layers")):
            lf = _Fields("", f"layers[{i}]", a)
            name = lf.str("name")
            layers.append(LayerPlan.from_attrs(name, {k: v for k, v in a.items() if k != "name"}, mode))
        totals = Totals.from_attrs(top.sub("totals")) if top.d.get("totals") else None
        plan = cls(top.str("model"), mode, target, totals, tuple(layers))
        _check_plan_layers(plan)
        return plan


def load_plan(m: Module) -> Plan | None:
    """The module's plan, checked against its ops; None when the module has no layers."""
    if not m.layers:
        return None
    mode = m.attrs.get("mode", "stream")
    if mode not in MODES:
        raise PlanFormatError("", "mode", f"expected one of {', '.join(MODES)}, got {_show(mode)}")
    routes_memo: dict = {}
    found = [LayerPlan.from_attrs(layer.name, layer.attrs, mode, routes_memo) for layer in m.layers.values()]
    totals = m.attrs.get("plan.totals")
    totals = Totals.from_attrs(_Fields("", "plan.totals", totals)) if totals is not None else None
    first = _execution_order(m)  # the layers in the order their ops run (then by index)
    found.sort(key=lambda lp: (first.get(lp.name, math.inf), lp.index))
    plan = Plan(m.name, mode, m.attrs.get("target"), totals, tuple(found))
    _check_plan_layers(plan)
    _check_ops(m, plan)
    return plan


def _execution_order(m: Module) -> dict[str, int]:
    """Each layer's first op that computes on run-time data (weight loads and their views run whenever
    the weights stream in), by position in @forward."""
    first: dict[str, int] = {}
    static: set[int] = set()
    for f in m.funcs:
        for i, op in enumerate(f.ops):
            if all(v.owner is not None and id(v.owner) in static for v in op.operands):
                static.add(id(op))
                continue
            ref = op.attrs.get(LAYER_ATTR)
            if isinstance(ref, SymbolRef):
                first.setdefault(ref.name, i)
    return first


def _check_plan_layers(plan: Plan) -> None:
    for i, lp in enumerate(plan.layers):
        if lp.index != i:
            raise PlanFormatError(
                lp.name,
                "index",
                f"{lp.index}, but it is layer {i} of {len(plan.layers)} in "
                "execution order (layers are numbered 0 to n-1 in the order they run)",
                "plan-index",
            )
    if plan.mode == "stream":
        for prev, lp in zip(plan.layers, plan.layers[1:]):
            if lp.routes is None or prev.tiling is None or lp.tiling.size == prev.tiling.size:
                continue
            if not lp.routes_of("relayout"):
                raise PlanFormatError(
                    lp.name,
                    "routes",
                    f"no relayout route: its tiling's size "
                    f"{list(lp.tiling.size)} differs from @{prev.name}'s {list(prev.tiling.size)}",
                    "plan-route",
                )
    tot = plan.totals
    if tot is None or not plan.layers or any(lp.cost is None for lp in plan.layers):
        return
    want = {
        "layers": len(plan.layers),
        "weight_bytes_streamed": sum(lp.stream.bytes for lp in plan.layers),
        "peak_bytes_per_pe": max(lp.memory.total for lp in plan.layers),
        "max_colors": max(lp.colors for lp in plan.layers),
    }
    for k, v in want.items():
        if getattr(tot, k) != v:
            raise PlanFormatError(
                "", f"plan.totals.{k}", f"{getattr(tot, k):,}, but the layers add up to {v:,}", "plan-totals"
            )


def _check_ops(m: Module, plan: Plan) -> None:
    try:
        func = m.func()
    except KeyError:
        raise PlanFormatError("", "@forward", "a planned module needs a @forward function", "plan-anchor") from None
    count: dict[str, int] = {}
    by_result: dict[str, Op] = {}
    causal_memo = None
    for op in func.ops:
        ref = op.attrs.get(LAYER_ATTR)
        if isinstance(ref, SymbolRef):
            count[ref.name] = count.get(ref.name, 0) + 1
        for r in op.results:
            by_result[r.name] = op
    for lp in plan.layers:
        if count.get(lp.name, 0) != lp.ops:
            raise PlanFormatError(
                lp.name, "ops", f"{lp.ops}, but {count.get(lp.name, 0)} ops of @forward name the layer", "plan-anchor"
            )
        storage = m.attrs.get(STORAGE_ATTR)
        if (lp.storage.value if lp.storage is not None else None) != storage:
            raise PlanFormatError(
                lp.name,
                "storage",
                f"{lp.storage.value if lp.storage is not None else 'absent'}, but the module's storage is "
                f"{storage or 'absent (each tensor in its own dtype)'}",
                "plan-anchor",
            )
        _check_weights(m, lp)
        if lp.anchor is not None:
            _check_anchor(lp, by_result.get(lp.anchor[1:]))
            if lp.tiling is not None and lp.tiling.causal is not None:
                if causal_memo is None:
                    causal_memo = (users(func), {})
                _check_causal(func, lp, by_result[lp.anchor[1:]], *causal_memo)


def _check_weights(m: Module, lp: LayerPlan) -> None:
    for w in lp.weights:
        if w not in m.weights:
            raise PlanFormatError(lp.name, "weights", f"@{w} is not a declared weight", "plan-anchor")
    nbytes = stored_weight_bytes(m, lp.weights)
    if lp.weight_bytes != nbytes:
        raise PlanFormatError(
            lp.name, "weight_bytes", f"{lp.weight_bytes:,}, but its weights hold {nbytes:,}", "plan-anchor"
        )


def _check_anchor(lp: LayerPlan, op: Op | None) -> None:
    ref = op.attrs.get(LAYER_ATTR) if op is not None else None
    if op is None or op.name not in ANCHOR_KINDS or not isinstance(ref, SymbolRef) or ref.name != lp.name:
        raise PlanFormatError(
            lp.name,
            "anchor",
            f"{lp.anchor} is not an anchor op (mm, addmm, bmm, convolution, embedding) of this layer",
            "plan-anchor",
        )
    if lp.kind not in ANCHOR_KINDS[op.name]:
        raise PlanFormatError(
            lp.name,
            "kind",
            f"{lp.kind!r}, but its anchor {lp.anchor} is {op.name}, whose layer is "
            f"{' or '.join(repr(k) for k in ANCHOR_KINDS[op.name])}",
            "plan-anchor",
        )
    dims = Dims(**matmul_dims(op))
    if lp.dims != dims:
        raise PlanFormatError(
            lp.name, "dims", f"{_dims(lp.dims)}, but its anchor {lp.anchor} is {_dims(dims)}", "plan-anchor"
        )
    if lp.dtype != op.results[0].type.dtype:
        raise PlanFormatError(
            lp.name,
            "dtype",
            f"{lp.dtype.value}, but its anchor {lp.anchor} gives {op.results[0].type.dtype.value}",
            "plan-anchor",
        )
    if lp.operand_dtype is not None and lp.operand_dtype not in (operand_storage_dtype(op), lp.storage):
        raise PlanFormatError(
            lp.name,
            "operand_dtype",
            f"{lp.operand_dtype.value}, but the operands of its anchor {lp.anchor} are not all exact "
            f"{lp.operand_dtype.value} values (converts of {lp.operand_dtype.value} through views)",
            "plan-anchor",
        )


def _check_causal(func, lp: LayerPlan, op: Op, uses: dict, memo: dict) -> None:
    """A layer that skips tiles above a causal diagonal must be one the graph justifies: its anchor's scores
    reach nothing but the add of a constant mask that masks every entry above that diagonal, or its P is the
    softmax of such a masked score (``wafercc.ir.causal``); a smaller offset than the mask's would skip tiles
    that hold real scores."""
    c = lp.tiling.causal
    use = analyze(func, op, uses, memo)
    if use is None:
        raise PlanFormatError(
            lp.name,
            "tiling.causal",
            f"{{on = {c.on}, offset = {c.offset}}}, but the graph does not justify it: the scores of {lp.anchor} "
            "are not masked by a constant causal mask before the softmax, nor is its first operand the softmax of "
            "such masked scores",
            "plan-causal",
        )
    if (use.on, use.offset) != (c.on, c.offset):
        raise PlanFormatError(
            lp.name,
            "tiling.causal",
            f"{{on = {c.on}, offset = {c.offset}}}, but the graph justifies {{on = {use.on}, offset = "
            f"{use.offset}}} for {lp.anchor}",
            "plan-causal",
        )


def _dims(d: Dims) -> str:
    return " ".join(f"{k}={v}" for k, v in d.to_attrs().items())


def stored_weight_bytes(m: Module, symbols) -> int:
    """Bytes the MemoryX store streams of these weights. With the module's 16-bit ``storage`` (compile
    --train --precision bf16) every f32 parameter the step trains (a gradient's target) streams in 2 bytes,
    beside its fp32 master; anything else (buffers, integer weights) as declared."""
    storage = m.attrs.get(STORAGE_ATTR)
    trained = _trained(m) if storage else frozenset()
    total = 0
    for s in symbols:
        t = m.weights[s].type
        total += t.numel * DType(storage).itemsize if s in trained and t.dtype == DType.f32 else t.nbytes
    return total


def _trained(m: Module) -> frozenset[str]:
    from .training import is_training, result_roles

    if not is_training(m):
        return frozenset()
    return frozenset(t for role, t in result_roles(m.func()) if role == "grad")


def operand_storage_dtype(op: Op) -> DType | None:
    """The 16-bit dtype a product anchor's operands can be stored in without changing a value, or None.

    An f32 product (mm, bmm, addmm, convolution) whose operands are all exact upcasts of one 16-bit float
    dtype (a ``convert`` from bf16 or f16, possibly through ops that only move values: views, permutes,
    expands, slices, cat, gathers) multiplies 16-bit values and accumulates in fp32, which is what the FMAC
    with fp32 accumulate does (``f16acc32``): its operands are stored and cross the fabric in 2 bytes, its
    result stays f32. The answer is structural: an operand computed in f32 (scaled, a softmax) is not assumed
    representable, whatever its values; a value of f64 or an accumulation in f64 is not narrowed either.
    """
    if op.name not in PRODUCT_OPERANDS or op.results[0].type.dtype != DType.f32:
        return None
    memo: dict[int, DType | None] = {}
    found = {_exact_16bit(op.operands[i], memo) for i in PRODUCT_OPERANDS[op.name] if i < len(op.operands)}
    return found.pop() if len(found) == 1 and None not in found else None


def _exact_16bit(v, memo: dict) -> DType | None:
    """The 16-bit float dtype every element of value v is exactly a value of, by construction, or None."""
    key = id(v)
    if key in memo:
        return memo[key]
    memo[key] = None  # a cycle (there is none in SSA) cannot make a value exact
    dt = v.type.dtype
    if dt in _SIXTEEN_BIT:
        out = dt
    elif dt not in (DType.f32, DType.f64) or v.owner is None:
        out = None
    elif v.owner.name == "convert":  # widening a 16-bit float is exact
        out = _exact_16bit(v.owner.operands[0], memo)
    elif v.owner.name in _VALUE_PRESERVING:
        data = v.owner.operands if v.owner.name == "cat" else v.owner.operands[:1]
        found = {_exact_16bit(d, memo) for d in data}
        out = found.pop() if len(found) == 1 and None not in found else None
    else:
        out = None
    memo[key] = out
    return out


def matmul_dims(op: Op) -> dict[str, int]:
    """M, K, N (and batch B) of an anchor viewed as a matrix product Y[M, N] = X[M, K] W[K, N].

    A convolution is its implicit GEMM: M = batch * output pixels, K = input channels per group * kernel
    taps, N = output channels, B = groups. An embedding is a product with one-hot rows: K = the vocabulary
    (split over columns like any K), N = the embedding width; it selects instead of multiplying.
    """
    t = [v.type for v in op.operands]
    out = op.results[0].type
    if op.name in ("mm", "addmm"):
        a, b = t[-2], t[-1]
        return {"B": 1, "M": a.shape[0], "K": a.shape[1], "N": b.shape[1]}
    if op.name == "bmm":
        a, b = t
        return {"B": a.shape[0], "M": a.shape[1], "K": a.shape[2], "N": b.shape[2]}
    if op.name == "convolution":
        x, w = t[0], t[1]
        g = op.attrs.get("groups", 1)
        taps = math.prod(w.shape[2:])
        if op.attrs.get("transposed"):  # every (input pixel, tap) product: K = channels in, N = channels out x taps
            return {"B": g, "M": math.prod(x.shape[2:]) * x.shape[0], "K": w.shape[0] // g, "N": w.shape[1] * taps}
        return {"B": g, "M": out.numel // out.shape[1], "K": w.shape[1] * taps, "N": w.shape[0] // g}
    if op.name == "embedding":
        w, idx = t
        return {"B": 1, "M": idx.numel, "K": w.shape[0], "N": w.shape[1]}
    raise ValueError(f"'{op.name}' is not an anchor")


__all__ = [
    "ANCHOR_KINDS",
    "BUFFERS",
    "Cost",
    "Dims",
    "Estimate",
    "FLOWS",
    "KINDS",
    "LayerPlan",
    "Links",
    "MODES",
    "MemEntry",
    "Memory",
    "NSplit",
    "PLAN_FORMAT",
    "Plan",
    "PlanFormatError",
    "Rect",
    "Route",
    "STAGES",
    "Split",
    "Stream",
    "Tiling",
    "Totals",
    "TrainingTotals",
    "load_plan",
    "matmul_dims",
    "operand_storage_dtype",
    "plain",
    "stored_weight_bytes",
]
