"""`mcutext export`: the model as a C library for the user's own firmware (mcutext.firmware.export).

Parsing and printing only; the work is in export.export.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..common.outputs import FORCE_HELP


def register(cli: click.Group) -> None:
    from ..firmware.export import FORMATS

    @cli.command("export")
    @click.argument("bundle", type=click.Path(path_type=Path))
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="cmake",
                  show_default=True,
                  help="c: include/ + src/; cmake: + CMakeLists.txt, a toolchain file and an "
                       "example firmware; arduino: an Arduino library; zephyr: a Zephyr module.")
    @click.option("--out", type=click.Path(path_type=Path), default=None,
                  help="Output folder (default: beside the bundle, library-<format>/ for a "
                       "folder named bundle, else <bundle>-library-<format>/).")
    @click.option("--force", is_flag=True, help=FORCE_HELP)
    @click.option("--json", "as_json", is_flag=True)
    def export_cmd(bundle: Path, fmt: str, out: Path | None, force: bool,
                   as_json: bool) -> None:
        """Write the model as a self-contained C library (one header, the tokenizer, the
        kernels it needs, the weights, a README and a license notice) for your own
        firmware: no mcutext protocol, board layer or Python needed to use it."""
        import json

        from ..firmware.export import export
        res = export(bundle, fmt, out, force=force)
        if as_json:
            click.echo(json.dumps(res, indent=2))
            return
        click.echo(f"library:  {res['out']} ({fmt})")
        click.echo(f"model:    {res['model']}, {len(res['labels'])} labels; int8 weights "
                   f"{res['weights_bytes']} bytes, activation arena {res['arena_bytes']} bytes")
        click.echo(f"files:    {len(res['files'])} ({len(res['sources'])} in src/); "
                   "README.md says how to build it")
