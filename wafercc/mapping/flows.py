"""Flows on the mesh: the data movements of a layer, as bundles of straight paths, and their link loads.

Coordinates: x is the column (0 at the west edge), y the row (0 at the north edge). A flow is a *bundle*:
``box = [x0, y0, x1, y1]`` (inclusive) with ``axis``: ``"x"`` means every row of the box carries a path
running along x, ``"y"`` every column a path along y. ``src`` is where the paths start on that axis (a
multicast from the middle runs both ways). ``bytes`` is what one path carries. An ingress path feeds a run
of columns (``feeds = [xs, xe]``) and carries ``bytes`` for each: a link carries the share of every fed
column beyond it, so the load tapers off along the run. A routed point-to-point
flow has ``path``: the corner points of a rectilinear path.

Link loads are kept per direction in four (height, width) arrays: ``E[y, x]`` is the link from (x, y) to
(x + 1, y); likewise W, S (to y + 1) and N (to y - 1). Bundles add their loads with slicing, so a layer
costs O(flows) numpy operations whatever the mesh size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DIRS = ("E", "W", "S", "N")


@dataclass
class Flow:
    kind: str
    layer: str
    box: tuple[int, int, int, int] | None = None
    axis: str = "x"
    src: int | None = None  # start coordinate along the axis (None: x0 / y0, running + only)
    nbytes: float = 0.0
    feeds: tuple[int, int] | None = None
    path: list[tuple[int, int]] = field(default_factory=list)
    color: int = -1
    peer: str = ""  # for transfers: the other layer

    def attrs(self) -> dict:
        out = {"flow": self.kind, "color": self.color, "bytes": int(round(self.nbytes))}
        if self.box is not None:
            out["box"] = list(self.box)
            out["axis"] = self.axis
            if self.src is not None:
                out["src"] = self.src
            if self.feeds is not None:
                out["feeds"] = list(self.feeds)
        if self.path:
            out["path"] = [list(p) for p in self.path]
        if self.peer:
            out["peer"] = self.peer
        return out

    def routers(self) -> list[tuple[slice, slice]]:
        """The routers the flow passes, as (row slice, column slice) rectangles."""
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            return [(slice(y0, y1 + 1), slice(x0, x1 + 1))]
        rects = []
        for (ax, ay), (bx, by) in zip(self.path, self.path[1:]):
            rects.append((slice(min(ay, by), max(ay, by) + 1), slice(min(ax, bx), max(ax, bx) + 1)))
        return rects


class LinkLoad:
    """Bytes per directed link over one time step of the mesh."""

    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.load = {d: np.zeros((height, width)) for d in DIRS}

    def add(self, f: Flow) -> None:
        if f.box is not None:
            self._add_bundle(f)
        for a, b in zip(f.path, f.path[1:]):
            self._add_segment(a, b, f.nbytes)

    def _add_bundle(self, f: Flow) -> None:
        x0, y0, x1, y1 = f.box
        if f.axis == "x":
            rows = slice(y0, y1 + 1)
            src = x0 if f.src is None else f.src
            if f.feeds is not None:  # ingress: a link carries the share of every fed column beyond it
                xs, xe = f.feeds
                n = xe - xs + 1
                if src <= xs:  # from the west edge, eastward
                    xr = np.arange(src, xe)
                    self.load["E"][rows, src:xe] += f.nbytes * np.minimum(n, xe - xr)[None, :]
                else:  # from the east edge, westward: link x -> x-1 for x in (xs, src]
                    xr = np.arange(xs + 1, src + 1)
                    self.load["W"][rows, xs + 1 : src + 1] += f.nbytes * np.minimum(n, xr - xs)[None, :]
                return
            self.load["E"][rows, src:x1] += f.nbytes
            self.load["W"][rows, x0 + 1 : src + 1] += f.nbytes
        else:
            cols = slice(x0, x1 + 1)
            src = y0 if f.src is None else f.src
            self.load["S"][src:y1, cols] += f.nbytes
            self.load["N"][y0 + 1 : src + 1, cols] += f.nbytes

    def _add_segment(self, a: tuple[int, int], b: tuple[int, int], nbytes: float) -> None:
        (ax, ay), (bx, by) = a, b
        if ay == by:
            if bx > ax:
                self.load["E"][ay, ax:bx] += nbytes
            else:
                self.load["W"][ay, bx + 1 : ax + 1] += nbytes
        else:
            if by > ay:
                self.load["S"][ay:by, ax] += nbytes
            else:
                self.load["N"][by + 1 : ay + 1, ax] += nbytes

    def busiest(self) -> tuple[float, tuple[int, int, str]]:
        best, where = 0.0, (0, 0, "E")
        for d in DIRS:
            a = self.load[d]
            if a.size and a.max() > best:
                y, x = np.unravel_index(int(np.argmax(a)), a.shape)
                best, where = float(a[y, x]), (int(x), int(y), d)
        return best, where

    def total(self) -> np.ndarray:
        return sum(self.load.values())


def busiest_router(flows: list[Flow]) -> tuple[int, int, int]:
    """(most distinct colors at any router, x, y)."""
    most, x, y, _ = router_colors(flows)
    return most, x, y


def router_colors(flows: list[Flow]) -> tuple[int, int, int, tuple[int, int, int] | None]:
    """(most distinct colors at any router, x, y, clash), in time independent of the mesh size: the flows'
    router rectangles cut the mesh into a compressed grid of cells, and every router of a cell sees the same
    flows. ``clash`` is (color, x, y) where two flows of one color cross one router, or None."""
    rects = [(r, c, f.color, i) for i, f in enumerate(flows) for r, c in f.routers()]
    if not rects:
        return 0, 0, 0, None
    xs = np.unique([v for r, c, _, _ in rects for v in (c.start, c.stop)])
    ys = np.unique([v for r, c, _, _ in rects for v in (r.start, r.stop)])
    colors = sorted({k for _, _, k, _ in rects})
    index = {k: i for i, k in enumerate(colors)}
    cover = np.zeros((len(colors), len(ys), len(xs)), dtype=np.int32)  # flows of each color per cell
    # A path's segments share their corner routers: count each flow once per cell with its own array.
    by_flow: dict[int, list] = {}
    for r, c, k, i in rects:
        by_flow.setdefault(i, []).append((r, c, k))
    for parts in by_flow.values():
        mine = np.zeros((len(ys), len(xs)), dtype=np.int32)
        for r, c, _ in parts:  # a 2-D difference array on the compressed grid
            y0, y1 = np.searchsorted(ys, [r.start, r.stop])
            x0, x1 = np.searchsorted(xs, [c.start, c.stop])
            mine[y0, x0] += 1
            mine[y0, x1] -= 1
            mine[y1, x0] -= 1
            mine[y1, x1] += 1
        cover[index[parts[0][2]]] += mine.cumsum(axis=0).cumsum(axis=1) > 0
    count = (cover > 0).sum(axis=0)
    y, x = np.unravel_index(int(np.argmax(count)), count.shape)
    clash = None
    if cover.size and cover.max() > 1:
        k, cy, cx = np.unravel_index(int(np.argmax(cover)), cover.shape)
        clash = (colors[k], int(xs[cx]), int(ys[cy]))
    return int(count[y, x]), int(xs[x]), int(ys[y]), clash


def color_usage(flows: list[Flow], width: int, height: int, colors: int) -> np.ndarray:
    """Per router, how many distinct colors the flows use: an (height, width) array."""
    used = np.zeros((colors, height, width), dtype=bool)
    for f in flows:
        for rows, cols in f.routers():
            used[f.color, rows, cols] = True
    return used.sum(axis=0)
