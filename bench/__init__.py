"""`make bench`: the long measurements (not part of the installed package). Tables (markdown +
JSON) go under build/bench/; docs/results.md summarizes them. Run from the repository root:

    python -m bench [--out build/bench] [--only SECTION,...]
"""
