"""`mcutext attack`: the adversarial attack suite on the command line (mcutext.attack).

Parsing and printing only; the work is in attack.run_attack. MCUTEXT_PORT gives the default
--port of the device runtime.
"""

from __future__ import annotations

from pathlib import Path

import click


def _budget(ctx, param, value: str):
    from .attack import BUDGET_RULE, check_budget
    from .errors import McutextError
    try:
        return check_budget(value)
    except McutextError:
        raise click.BadParameter(f"{value!r}: must be {BUDGET_RULE}") from None


def register(cli: click.Group) -> None:
    from .attack import ATTACK_ALIASES, ATTACKS, RUNTIMES

    names = list(ATTACK_ALIASES) + list(ATTACKS)

    @cli.command()
    @click.argument("bundle", type=click.Path(path_type=Path))
    @click.option("--attack", "attack_name", type=click.Choice(names), required=True,
                  help="char (= deepwordbug) / typo: character edits; word (= pwws): WordNet "
                       "synonyms; hotflip: white box on the float model, its texts judged on "
                       "the runtime. Definitions: docs/robustness.md.")
    @click.option("--runtime", type=click.Choice(RUNTIMES), default="tflm", show_default=True,
                  help="Where the model runs: float Keras, int8 in LiteRT or TFLite Micro, or "
                       "the firmware on a board over serial.")
    @click.option("--port", envvar="MCUTEXT_PORT", default=None, metavar="URL",
                  help="The board for --runtime device: serial port or pyserial URL, e.g. "
                       "socket://127.0.0.1:PORT from `mcutext run` (env MCUTEXT_PORT).")
    @click.option("--budget", default="2", show_default=True, callback=_budget,
                  metavar="WORDS|SHARE",
                  help="Words that may be edited per sentence; a value in (0, 1) is a share "
                       "of the sentence's words (at least one).")
    @click.option("--limit", "--n", "n", type=click.IntRange(1, None), default=None,
                  help="Attack N test examples: a fixed random sample, the same for every "
                       "attack, runtime and seed (default: the whole split).")
    @click.option("--seed", type=click.IntRange(0, None), default=0, show_default=True,
                  help="Seed of the attack's random choices (candidate edits).")
    @click.option("--split", default="test", show_default=True)
    @click.option("--out", type=click.Path(path_type=Path), default=None,
                  help="Write every example (<attack>-<runtime>.jsonl: original, perturbed, "
                       "labels, scores, queries) and the summary (.json) to this folder.")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    def attack(bundle: Path, attack_name: str, runtime: str, port: str | None, budget,
               n: int | None, seed: int, split: str, out: Path | None, as_json: bool) -> None:
        """Attack BUNDLE's classifier and report accuracy under attack."""
        from .attack import attack_cli
        attack_cli(bundle, attack_name, runtime=runtime, port=port, budget=budget, n=n,
                   seed=seed, as_json=as_json, out=out, split=split)
