"""The decomposition table AOTAutograd lowers with. It lives in the frontend
(``wafercc.frontend.autograd_decompositions``), where training's joint capture uses the same table."""

from wafercc.frontend.autograd_decompositions import decompositions

__all__ = ["decompositions"]
