"""Building C for a target: the boards (boards/<name>/board.toml), the firmware ELF for a board
(cross compiler, memory budget, stack check), the generated model compiled for the host
(equivalence tests, certification), and the self-contained C library export.
"""
