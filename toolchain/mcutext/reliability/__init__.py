"""Tools that attack mcutext itself (docs/reliability.md): libFuzzer harnesses around the
firmware core (`python -m mcutext.reliability.fuzz`), and the host probe that drives the
real CLI with hostile inputs and a fake device (`python -m mcutext.reliability.hostprobe`).
"""
