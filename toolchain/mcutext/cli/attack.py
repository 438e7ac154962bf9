"""`mcutext attack`: the adversarial attack suite on the command line (mcutext.attack).

Parsing and printing only; the work is in attack.run_attack. MCUTEXT_PORT gives the default
--port of the device runtime.
"""

from __future__ import annotations

from pathlib import Path

import click


def _budget(ctx, param, value: str):
    from ..attack.catalog import BUDGET_RULE, check_budget
    from ..common.errors import McutextError
    try:
        return check_budget(value)
    except McutextError:
        raise click.BadParameter(f"{value!r}: must be {BUDGET_RULE}") from None


def register(cli: click.Group) -> None:
    from ..attack.catalog import ATTACK_ALIASES, ATTACKS, RUNTIMES

    names = list(ATTACK_ALIASES) + list(ATTACKS)

    @cli.command()
    @click.argument("bundle", type=click.Path(path_type=Path))
    @click.option("--attack", "attack_name", type=click.Choice(names), required=True,
                  help="char: per sentence the stronger of deepwordbug and adaptive (which "
                       "searches the encodings a word's edits reach); typo: internal "
                       "character edits; word (= pwws): WordNet synonyms; hotflip: white box "
                       "on the float model, its texts judged on the runtime. Definitions: "
                       "docs/robustness.md.")
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
    @click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Progress journal of --runtime device (default: <out>/<attack>-device."
                       "journal.jsonl, or build/journal/attack-...jsonl without --out); kept "
                       "when the run is interrupted, deleted when it ends.")
    @click.option("--resume", is_flag=True,
                  help="Continue an interrupted device run from its journal (same arguments).")
    @click.option("--restart", is_flag=True,
                  help="Discard the journal of an interrupted run and start over.")
    @click.option("--log", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Append every exchange with the device to this file (default with "
                       "--out: <out>/<attack>-device-serial.log).")
    @click.option("--force", is_flag=True,
                  help="Write into --out even if it holds files that are not attack results.")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
    def attack(bundle: Path, attack_name: str, runtime: str, port: str | None, budget,
               n: int | None, seed: int, split: str, out: Path | None, journal: Path | None,
               resume: bool, restart: bool, log: Path | None, force: bool,
               as_json: bool) -> None:
        """Attack BUNDLE's classifier and report accuracy under attack.

        On the device runtime, if the port vanishes or the board stops answering, the
        examples done so far stay in the journal: run the same command with --resume."""
        from ..attack.run import attack_cli
        if resume and restart:
            raise click.UsageError("--resume and --restart exclude each other")
        if out is not None:   # before anything (a journal, a log) is written into it
            from ..common.outputs import check_out
            check_out(out, "attack", force)
        if runtime == "device" or journal is not None:
            journal = journal or default_journal(bundle, attack_name, budget, n, seed, split,
                                                 out)
            if restart:
                journal.unlink(missing_ok=True)
            from .personalize import _check_journal
            _check_journal(journal, resume, "attack")   # before the port is opened
        elif resume:
            raise click.UsageError("--resume needs --runtime device or --journal FILE")
        attack_cli(bundle, attack_name, runtime=runtime, port=port, budget=budget, n=n,
                   seed=seed, as_json=as_json, out=out, split=split, journal=journal,
                   resume=resume, log=log)


def default_journal(bundle: Path, attack: str, budget, n, seed: int, split: str,
                    out: Path | None) -> Path:
    """<out>/<attack>-device.journal.jsonl; without --out, one file per bundle and arguments
    under build/journal/ (relative to the current folder)."""
    from ..attack.catalog import resolve_attack
    from ..common.journal import digest
    attack = resolve_attack(attack)
    if out is not None:
        return Path(out) / f"{attack}-device.journal.jsonl"
    key = digest([str(Path(bundle).resolve()), attack, budget, n, seed, split])
    return Path("build") / "journal" / f"attack-{Path(bundle).name}-{attack}-{key}.jsonl"
