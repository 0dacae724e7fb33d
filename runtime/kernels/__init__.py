"""One kernel per WIR op, registered by name in ``KERNELS``. Importing this package fills the table.

Family files mirror wafercc/ops: elementwise, reduce, nn (+ conv, pool, sample), shape, create.
"""

from . import conv, create, elementwise, nn, pool, reduce, sample, shape  # noqa: F401  (registration side effects)
from .base import KERNELS, NP_DTYPE, attr, kernel, np_dtype

__all__ = ["KERNELS", "NP_DTYPE", "attr", "kernel", "np_dtype"]
