"""The `mcutext` command: click parsing and printing only; every command calls a public
function of the layers below. `main` is the console script's entry point."""

from .commands import main

__all__ = ["main"]
