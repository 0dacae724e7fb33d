"""The tiling search's estimate of the busiest I/O port-row link equals what the routes put on it."""

from __future__ import annotations

import numpy as np
import pytest

from wafercc.mapping.flows import LinkLoad
from wafercc.mapping.route import _ingress_and_broadcast
from wafercc.target import parse_target
from wafercc.mapping.ports import busiest_port_run


@pytest.mark.parametrize("spec", ["mesh4", "mesh8", "mesh32", "mesh:40x8", "mesh:100x64", "mesh:33x200", "wse2"])
def test_port_row_estimate_matches_the_routes(spec):
    t = parse_target(spec)
    for cx in range(1, t.width + 1, max(1, t.width // 60)):
        load = LinkLoad(t.width, t.height)
        for f in _ingress_and_broadcast("L", t, 0, cx - 1, 0, t.height - 1, 1.0):
            if f.kind == "ingress":
                load.add(f)
        routed = max(load.load["E"].max(), load.load["W"].max())
        assert routed == int(busiest_port_run(np.array(cx), t)), (spec, cx)
