"""`python -m bench`: every section of the benchmarks (bench/run.py)."""

import sys

from .run import main

sys.exit(main())
