"""`mcutext` command line. Parses and prints only; the work is in the importable modules.

Every McutextError (and pyserial's errors) becomes `error: <message>` (+ a hint line) and
exit code 2; `--verbose` shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import click

from ..common.version import __version__
from . import (
    attack as cli_attack, certify as cli_certify, explain as cli_explain, export as cli_export,
    report as cli_report)
from ..common.errors import McutextError, Terminated
from ..common.outputs import FORCE_HELP

RUNTIME_CHOICE = click.Choice(["keras", "litert", "tflm"])


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=float))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcutext")
@click.option("--verbose", is_flag=True,
              help="Show tracebacks on errors, and the libraries' warnings and log lines.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Robust, explainable text classifiers for Cortex-M microcontrollers."""
    ctx.obj = {"verbose": verbose}


@cli.command()
@click.argument("recipe")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Bundle directory (default: build/<recipe>/bundle).")
@click.option("--epochs", type=click.IntRange(1, 1000), default=None,
              help="Override the recipe's number of epochs.")
@click.option("--limit", type=click.IntRange(10, None), default=None,
              help="Train on a random subset of this many examples (quick runs; it keeps "
                   "every class).")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the bundle summary as JSON.")
def train(recipe: str, out: Path | None, epochs: int | None, limit: int | None,
          force: bool, as_json: bool) -> None:
    """Train RECIPE (a name under models/ or a .toml path) into a verified bundle.

    --out may name an earlier bundle (it is replaced when the new one is complete); a
    non-empty folder that is not a bundle, or a file, only with --force."""
    from ..int8.bundle import load_bundle
    from ..model.recipe import load_recipe
    from ..train.pipeline import train as run_train
    path = run_train(load_recipe(recipe), out=out, epochs=epochs, limit=limit, force=force)
    b = load_bundle(path)
    summary = {"bundle": str(path), **{k: b.manifest[k] for k in ("sizes", "training", "metrics")}}
    if as_json:
        _emit_json(summary)
        return
    m = b.manifest
    t = m["metrics"]["test"]
    click.echo(f"bundle: {path}")
    click.echo(f"trained {m['training']['examples']} examples, {m['training']['epochs']} epochs "
               f"in {m['training']['seconds']} s")
    click.echo(f"dev: {_dev_origin(m)}")
    click.echo(f"test accuracy: float {t['keras']['accuracy']:.4f}  "
               f"int8 (TFLite Micro) {t['tflm']['accuracy']:.4f}  "
               f"agreement {t['int8_float_agreement']:.4f}")
    click.echo(f"int8 weights: {m['sizes']['int8_weights_bytes']} bytes")


def _dev_origin(manifest: dict) -> str:
    """Where the dev examples (best-epoch choice) came from, in words."""
    from ..text.datasets import has_split
    n = manifest["training"]["dev_examples"]
    if has_split(manifest["dataset"], "dev"):
        return f"{n} examples of the dataset's dev split"
    share = manifest.get("recipe", {}).get("train", {}).get("dev_fraction")
    of = f" ({share:g} of it, train.dev_fraction)" if share else ""
    return (f"{n} examples held out from train{of}: the dataset has no dev split; "
            "they are not trained on")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def convert(bundle: Path, as_json: bool) -> None:
    """Re-quantize BUNDLE's Keras model to int8 and re-verify it in TFLite Micro."""
    from ..train.pipeline import reconvert
    int8 = reconvert(bundle)
    if as_json:
        _emit_json(int8)
        return
    click.echo(f"int8 model: {int8['file_bytes']} bytes ({int8['weights_bytes']} of weights), "
               f"ops: {', '.join(dict.fromkeys(int8['ops']))}; loads in TFLite Micro")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True)
@click.option("--runtime", type=RUNTIME_CHOICE, default="tflm", show_default=True)
@click.option("--limit", type=click.IntRange(1, None), default=None,
              help="Only the first N examples of the split.")
@click.option("--json", "as_json", is_flag=True)
def evaluate(bundle: Path, split: str, runtime: str, limit: int | None, as_json: bool) -> None:
    """Accuracy, macro-F1 and per-class figures of BUNDLE on a dataset split."""
    from rich.console import Console
    from rich.table import Table

    from ..int8.bundle import load_bundle
    from ..int8.evaluate import evaluate as run_eval
    rep = run_eval(load_bundle(bundle), split, runtime, limit=limit)
    if as_json:
        _emit_json(rep)
        return
    console = Console()
    console.print(f"[bold]{split}[/] ({rep['n']} examples, runtime {runtime}): accuracy "
                  f"{rep['accuracy']:.4f}, macro-F1 {rep['macro_f1']:.4f}")
    if "agreement_with_float" in rep:
        console.print(f"float accuracy {rep['float_accuracy']:.4f}; int8 vs float agreement "
                      f"{rep['agreement_with_float']:.4f}")
    for lab, ex in rep.get("excluded", {}).items():
        console.print(f"'{lab}' (left out of accuracy): {ex['n']} examples, recall "
                      f"{ex['recall']:.4f}")
    table = Table("label", "precision", "recall", "f1", "support")
    for lab, c in rep["per_class"].items():
        table.add_row(lab, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}",
                      str(c["support"]))
    if len(rep["per_class"]) <= 40:
        console.print(table)


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path), required=False)
@click.option("--port", default=None, help="Ask a device instead (pyserial URL; env MCUTEXT_PORT).")
@click.option("--log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append every exchange with the device to this file.")
@click.option("--json", "as_json", is_flag=True)
def info(bundle: Path | None, port: str | None, log: Path | None, as_json: bool) -> None:
    """Describe a BUNDLE, or the firmware on the device at --port."""
    if bundle is None:
        port = port or os.environ.get("MCUTEXT_PORT")
        if not port:
            raise McutextError("give a BUNDLE, or --port URL (or set MCUTEXT_PORT) for a device")
        from .device import device_info
        device_info(port, as_json, log=log)
        return
    from ..int8.bundle import load_bundle
    b = load_bundle(bundle)
    m = b.manifest
    if as_json:
        _emit_json({k: v for k, v in m.items() if k != "head"})
        return
    tok = m["tokenizer"]
    click.echo(f"{m['name']} (bundle format {m['format']}, dataset {m['dataset']})")
    click.echo(f"labels ({len(m['labels'])}): {', '.join(m['labels'][:12])}"
               f"{' ...' if len(m['labels']) > 12 else ''}")
    click.echo(f"tokenizer: {tok['buckets']} buckets, {tok['max_words']} words, "
               f"typo features {'on' if tok['typo_features'] else 'off'}, seed {tok['seed']}")
    click.echo(f"parameters: {m['sizes']['params']}; int8 weights "
               f"{m['sizes']['int8_weights_bytes']} bytes; ops {', '.join(dict.fromkeys(m['int8']['ops']))}")
    for split, rt in m.get("metrics", {}).items():
        for runtime, r in rt.items():
            if isinstance(r, dict):
                click.echo(f"{split} {runtime}: accuracy {r['accuracy']:.4f} (n={r['n']})")
    fp = m.get("fingerprint")
    if fp:  # bundles trained before it was recorded have none
        files = ", ".join(f"{d['file']} {d['sha256'][:12]}" for d in fp["data"].values())
        teacher = fp["teacher_sha256"][:12] if fp["teacher_sha256"] else "none"
        click.echo(f"fingerprint {fp['sha256'][:16]}: recipe {fp['recipe_sha256'][:12]}, "
                   f"{files}, teacher {teacher}")
        tools = ", ".join(f"{k} {v}" for k, v in m.get("tools", {}).items())
        click.echo(f"  made with {tools}; {fp['threads']['intra_op']} threads on {fp['cpu']}")


def _register_optional() -> None:
    """Device commands live in their own module (serial, QEMU, boards)."""
    try:
        from . import device as cli_device, personalize as cli_personalize, teacher as cli_teacher
    except ImportError:
        return
    cli_device.register(cli)
    cli_teacher.register(cli)
    cli_personalize.register(cli)


_register_optional()
cli_attack.register(cli)
cli_certify.register(cli)
cli_explain.register(cli)
cli_export.register(cli)
cli_report.register(cli)


# The signal that stops this run: the first one (a second Ctrl-C raises again, in case the
# first was swallowed, but the run still ends with the first's line and exit code).
_stopped_by: list[int] = []
_SIGNAL_NAMES = {signal.SIGINT: "aborted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)",
                 signal.SIGHUP: "terminated (SIGHUP)"}


def _on_signal(signum: int, frame) -> None:
    _redelivery.pending = False
    if not _stopped_by:
        _stopped_by.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


class _Redelivery:
    """A signal whose handler runs inside a `__del__` or a weakref callback raises where
    Python cannot propagate it: Python would print a traceback and run on as if nothing had
    happened (CI saw a training run to its last epoch that way). Such a signal is delivered
    again, to the main thread, every 50 ms until its handler has run once more; a handler
    whose exception is swallowed again arms the next round."""

    def __init__(self) -> None:
        self.pending = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, signum: int) -> None:
        with self._lock:
            self.pending = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, args=(signum,), daemon=True,
                                                name="mcutext-signal")
                self._thread.start()

    def _run(self, signum: int) -> None:
        # A signal that arrives just before the main thread enters a blocking call stays
        # pending until that call returns: hence again and again, not once.
        main = threading.main_thread().ident
        while True:
            time.sleep(0.05)
            with self._lock:
                if not self.pending:
                    self._thread = None
                    return
            signal.pthread_kill(main, signum)


_redelivery = _Redelivery()


def _on_unraisable(unraisable) -> None:
    if _stopped_by and isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
        _redelivery.arm(_stopped_by[0])     # say nothing: the run stops with its one line
        return
    _previous_unraisablehook(unraisable)


_previous_unraisablehook = sys.unraisablehook


def _install_signal_handlers() -> dict:
    """Ctrl-C, SIGTERM and SIGHUP raise an exception in the main thread, so that every
    `finally` runs (staging folders removed, QEMU stopped, journals kept) before the exit.
    Returns the handlers they replace (none when called from another thread)."""
    global _previous_unraisablehook
    _stopped_by.clear()
    _redelivery.pending = False
    if threading.current_thread() is not threading.main_thread():
        return {}
    if sys.unraisablehook is not _on_unraisable:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _on_unraisable
    return {sig: signal.signal(sig, _on_signal) for sig in _SIGNAL_NAMES}


def _signal_of(e: BaseException) -> int | None:
    """The signal behind `e`, if it stops the run. TensorFlow turns a KeyboardInterrupt
    raised inside a model's fit into a SystemError or RuntimeError: after a signal, whatever
    ends the run is its consequence."""
    if _stopped_by:
        return _stopped_by[0]
    if isinstance(e, (KeyboardInterrupt, click.exceptions.Abort)):
        return signal.SIGINT
    if isinstance(e, Terminated):
        return e.signum
    return None


def main(argv: list[str] | None = None) -> int:
    verbose = "--verbose" in (argv if argv is not None else sys.argv[1:])
    if not verbose:  # library warnings and log lines only with --verbose
        from ..common import quiet
        quiet.setup()
    previous = _install_signal_handlers()
    try:
        return _main(argv, verbose)
    finally:
        _redelivery.pending = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if previous and sys.unraisablehook is _on_unraisable:
            sys.unraisablehook = _previous_unraisablehook


def _main(argv: list[str] | None, verbose: bool) -> int:
    try:
        cli.main(args=argv, prog_name="mcutext", standalone_mode=False)
    except BaseException as e:
        signum = _signal_of(e)
        if signum is not None:   # first: what a signal caused is no error of its own
            click.echo(_SIGNAL_NAMES.get(signum, f"stopped by signal {signum}"), err=True)
            return 128 + signum
        if isinstance(e, click.ClickException):
            e.show()
            return 2
        if isinstance(e, McutextError) and not verbose:
            click.echo(f"error: {e}", err=True)
            if e.hint:
                click.echo(f"hint: {e.hint}", err=True)
            return 2
        import serial   # pyserial and OS errors reach the user as one line, too
        if verbose or not isinstance(e, (serial.SerialException, OSError)):
            raise
        click.echo(f"error: {e}", err=True)
        # only a port's error is about cables; a file's is about its path
        click.echo("hint: check the cable, the port name and that the board is powered"
                   if isinstance(e, serial.SerialException) else
                   "hint: check the path, that its folder exists and that you may write "
                   "there", err=True)
        return 2
    if _stopped_by:   # a signal that arrived while the output was being put in place
        click.echo(_SIGNAL_NAMES[_stopped_by[0]], err=True)
        return 128 + _stopped_by[0]
    return 0


if __name__ == "__main__":
    sys.exit(main())
