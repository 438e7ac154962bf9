"""`mcutext certify`: certified accuracy under character edits (mcutext.attack.certify).

Parsing and printing only; the work is in certify.certify. MCUTEXT_PORT gives the default
--port of the device runtime.
"""

from __future__ import annotations

from pathlib import Path

import click


def register(cli: click.Group) -> None:
    from ..attack.certify import MAX_EVALS
    from ..attack.moves import THREATS

    @cli.command()
    @click.argument("bundle", type=click.Path(path_type=Path))
    @click.option("--edits", type=click.IntRange(1, None), default=2, show_default=True,
                  metavar="K", help="Words that may be edited per sentence (one character "
                                    "edit each, the char attacks' family).")
    @click.option("--runtime", type=click.Choice(["tflm", "device"]), default="tflm",
                  show_default=True,
                  help="tflm: the int8 model with TFLite Micro semantics. device: the same "
                       "certificate, and the board at --port must give TFLite Micro's int8 "
                       "scores on every clean text and witness.")
    @click.option("--port", envvar="MCUTEXT_PORT", default=None, metavar="URL",
                  help="The board for --runtime device (env MCUTEXT_PORT).")
    @click.option("-n", "--limit", "n", type=click.IntRange(1, None), default=500,
                  show_default=True,
                  help="Test examples: the attacks' fixed random sample of this size.")
    @click.option("--split", default="test", show_default=True)
    @click.option("--max-evals", type=click.IntRange(1, None), default=MAX_EVALS,
                  show_default=True,
                  help="A sentence with more edit combinations than this is reported 'too "
                       "many' (never certified).")
    @click.option("--engine", type=click.Choice(["auto", "c", "tflm"]), default="auto",
                  show_default=True,
                  help="c: the generated C compiled for the host (cross-checked against "
                       "TFLite Micro); tflm: the TFLite Micro interpreter; auto: c if it builds.")
    @click.option("--threat", type=click.Choice(list(THREATS)), default="family",
                  show_default=True,
                  help="Diagnostics, subsets of the family (bounds from above): real-words "
                       "allows only edits that make another real word (one the training split "
                       "has 3+ times); typos allows only internal typos (first and last "
                       "characters kept, keyboard-neighbour substitutions); robust encoding "
                       "only: no-injection never moves a discounted (fallback) word, deletion "
                       "also moves an informative word only to the fallback.")
    @click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Write the summary and every sentence's verdict (witness texts "
                       "included) to this JSON file.")
    @click.option("--force", is_flag=True, help="Replace an existing --out file.")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    def certify(bundle: Path, edits: int, runtime: str, port: str | None, n: int, split: str,
                max_evals: int, engine: str, threat: str, out: Path | None, force: bool,
                as_json: bool) -> None:
        """Certified accuracy of BUNDLE: the share of test sentences that no combination of
        at most K one-character word edits can misclassify, decided by enumeration."""
        from ..attack.certify import certify_cli
        certify_cli(bundle, as_json=as_json, edits=edits, runtime=runtime, port=port, n=n,
                    split=split, max_evals=max_evals, engine=engine, out=out, force=force,
                    threat=threat)
