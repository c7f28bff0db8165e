"""``python -m curvax``: the command line."""

import sys

from curvax.cli import main

sys.exit(main())
