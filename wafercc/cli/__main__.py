"""``python -m wafercc.cli``: the same as the ``wafercc`` console script."""

import sys

from wafercc.cli import main

sys.exit(main())
