"""The frontend: capture a torch model and import it as graph-level WIR. The only place (with the CLI's
model loading) where the compiler imports torch."""

from .capture import Captured, WeightSource, capture
from .importer import ImportBug, ImportResult, import_graph, unsupported_ops
from .loader import load_model_file

__all__ = [
    "Captured",
    "ImportBug",
    "ImportResult",
    "WeightSource",
    "capture",
    "import_graph",
    "load_model_file",
    "unsupported_ops",
]
