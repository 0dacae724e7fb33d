"""Where a layer's weights enter the mesh: the I/O port layout, in one place.

Ports sit on the west and east edges, ``io_ports_per_edge`` rows each, spread evenly down the edge. A
layer's columns are fed from the nearer edge (the west ports feed the columns of the west half), each port
a contiguous run of columns (numpy's ``array_split``: the first runs one column longer), the west runs in
order from the edge, the east runs mirrored. ``route`` lays the ingress flows out from ``port_runs``; the
tiling search charges the busiest port-row link from the same runs (``busiest_port_run``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from wafercc.target import Target


class PortRun(NamedTuple):
    edge_x: int  # the column of the edge the port sits on
    port_y: int  # the port's row
    xs: int  # the first and last column the port feeds
    xe: int


def port_rows(t: Target) -> list[int]:
    n = max(1, min(t.io_ports_per_edge, t.height))
    return sorted({min(t.height - 1, int((i + 0.5) * t.height / n)) for i in range(n)})


def port_runs(t: Target, x0: int, x1: int) -> list[PortRun]:
    """The runs of columns x0..x1 each port feeds."""
    cols = np.arange(x0, x1 + 1)
    mid = t.width // 2
    rows = port_rows(t)
    out = []
    for edge_x, half in ((0, cols[cols < mid]), (t.width - 1, cols[cols >= mid])):
        if len(half) == 0:
            continue
        runs = [r for r in np.array_split(half, min(len(rows), len(half))) if len(r)]
        for port_y, run in zip(rows, runs if edge_x == 0 else runs[::-1]):
            out.append(PortRun(edge_x, port_y, int(run[0]), int(run[-1])))
    return out


def busiest_port_run(cx, t: Target, width: int | None = None):
    """Columns' worth of weights on the busiest link of a port row, for a layer of ``cx`` columns at the west
    edge of a mesh ``width`` wide (numpy arrays of cx broadcast). A run's data crosses links carrying all of
    its columns, except where the run starts at its edge column, whose first column is fed directly."""
    width = width or t.width
    cx = np.asarray(cx)
    flat = np.array([_busiest(int(c), t, width) for c in np.unique(cx)])
    return flat[np.searchsorted(np.unique(cx), cx)]


@lru_cache(maxsize=65536)
def _busiest(cx: int, t: Target, width: int) -> int:
    t = t if t.width == width else replace(t, width=width)
    return max((r.xe - r.xs + 1 - (r.edge_x in (r.xs, r.xe)) for r in port_runs(t, 0, cx - 1)), default=0)
