"""Mapping a partitioned module onto the PE mesh: one pass per stage, in pipeline order

    partition  streamed layers (anchor, dims, weights)      tile     each layer's tiling under the SRAM budget
    place      each layer's rectangle on the mesh            route    routes and router colors
    memplan    each PE's memory map                          cost     cycles, the bound, the stream schedule

and what reads their result: the plan checker (verify.py), plan.json and report.txt (report.py), pictures
(viz.py). docs/plan.md describes every attribute the passes write.
"""
