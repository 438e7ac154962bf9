"""`python -m mcutext.cli`: the `mcutext` command."""

import sys

from .commands import main

sys.exit(main())
