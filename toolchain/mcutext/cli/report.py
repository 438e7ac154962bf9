"""`mcutext report`: the bundle's figures as one self-contained HTML page (mcutext.studies.report).

Parsing and printing only; the work is in report.write_report.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def _budgets(ctx, param, value: str):
    from ..attack.catalog import BUDGET_RULE, check_budget
    from ..common.errors import McutextError
    try:
        return tuple(check_budget(v.strip()) for v in value.split(",") if v.strip())
    except McutextError:
        raise click.BadParameter(f"{value!r}: a comma-separated list, each {BUDGET_RULE}") \
            from None


def register(cli: click.Group) -> None:
    from ..attack.catalog import ATTACK_ALIASES, ATTACKS

    @cli.command()
    @click.argument("bundle", type=click.Path(path_type=Path))
    @click.option("--board", "boards", multiple=True, metavar="BOARD",
                  help="Add flash and RAM against this board's budget and, under QEMU, the "
                       "instructions per classification and per operator (repeatable; "
                       "builds beside the bundle as `mcutext build` does, reusing an "
                       "up-to-date build).")
    @click.option("--attack", "attack_name", type=click.Choice(list(ATTACK_ALIASES)
                                                               + list(ATTACKS)),
                  default=None, help="Add accuracy under this attack per budget, adversarial "
                                     "examples and (char-edit attacks) certified accuracy.")
    @click.option("--budgets", default="1,2,3", show_default=True, callback=_budgets,
                  metavar="B,B,...",
                  help="The attack's budgets (words edited per sentence), comma-separated.")
    @click.option("--attack-limit", type=click.IntRange(1, None), default=100,
                  show_default=True,
                  help="Examples attacked (and certified): the attacks' fixed random sample.")
    @click.option("--certify", "certify_edits", type=click.IntRange(0, 3), default=1,
                  show_default=True,
                  help="Certified accuracy at 1..K edited words with a char-edit attack (0: "
                       "none; K=2 enumerates far more texts).")
    @click.option("--split", default="test", show_default=True)
    @click.option("--limit", type=click.IntRange(1, None), default=None,
                  help="Evaluate the first N examples of the split only (as `mcutext "
                       "evaluate --limit`).")
    @click.option("--examples", type=click.IntRange(0, 200), default=12, show_default=True,
                  help="Test sentences shown with their words shaded by attribution.")
    @click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="The HTML file (default: beside the bundle, build/<name>/report.html "
                       "for build/<name>/bundle). An earlier report there is replaced; "
                       "another file only with --force.")
    @click.option("--force", is_flag=True,
                  help="Replace the --out file even if it is not a report mcutext wrote.")
    @click.option("--json", "as_json", is_flag=True,
                  help="Also print the page's data (every figure on it) as JSON.")
    def report(bundle: Path, boards: tuple[str, ...], attack_name: str | None, budgets,
               attack_limit: int, certify_edits: int, split: str, limit: int | None,
               examples: int, out: Path | None, force: bool, as_json: bool) -> None:
        """Write BUNDLE's report: one HTML page that needs no network, with accuracy, the
        confusion matrix, per-class scores, explained test sentences, and with --board /
        --attack the device's memory and instructions and the accuracy under attack."""
        from ..studies.report import Options, write_report
        opts = Options(boards=boards, attack=attack_name, split=split, limit=limit,
                       examples=examples, attack_limit=attack_limit, budgets=budgets,
                       certify=certify_edits)
        path, data = write_report(bundle, out, force=force, opts=opts)
        if as_json:
            click.echo(json.dumps(data, indent=2, default=float))
            return
        a = data["accuracy"]
        click.echo(f"report: {path} ({path.stat().st_size:,} bytes, made in "
                   f"{data['seconds']} s)")
        click.echo(f"  accuracy {a['accuracy']:.4f}, macro-F1 {a['macro_f1']:.4f} on "
                   f"{a['n']} {split} examples (int8, TFLite Micro)")
        for b in data["boards"]:
            if "error" in b:
                click.echo(f"  {b['board']}: {b['error']}")
                continue
            bd = b["build"]
            line = (f"  {b['board']}: flash {bd['flash_bytes']:,} of {bd['flash_budget']:,}, "
                    f"RAM {bd['ram_bytes']:,} of {bd['ram_budget']:,} bytes")
            if "device" in b:
                d = b["device"]
                line += f"; {d['total']:,} {d['unit']} per classification"
            click.echo(line)
        rob = data.get("robustness")
        if rob:
            curve = ", ".join(f"{r['budget']}: {r['accuracy_under_attack']:.3f}"
                              for r in rob["budgets"])
            click.echo(f"  {rob['attack']}: accuracy under attack per budget {curve}")
