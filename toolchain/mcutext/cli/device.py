"""Device commands of the `mcutext` CLI: boards, build, run, flash, classify (and `info --port`).

Parsing and printing only; the work is in boards.py, firmware.py, qemu.py, device.py and
flash.py. MCUTEXT_PORT and MCUTEXT_BOARD give the default --port and --board.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from ..common.errors import McutextError
from ..common.outputs import FORCE_HELP

PORT_OPTION = dict(envvar="MCUTEXT_PORT", default=None, metavar="URL", show_envvar=True,
                   help="Serial port or pyserial URL, e.g. /dev/ttyACM0 or "
                        "socket://127.0.0.1:PORT (env MCUTEXT_PORT).")
BOARD_OPTION = dict(envvar="MCUTEXT_BOARD", default=None, show_envvar=True,
                    help="Board name, see `mcutext boards` (env MCUTEXT_BOARD).")


def _json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _pct(used: int, budget: int) -> str:
    return f"{used} / {budget} bytes ({100.0 * used / budget:.1f} %)" if budget else f"{used} bytes"


def _print_build(res: dict) -> None:
    click.echo(f"firmware: {res['elf']}"
               + (" (up to date: same bundle, board, sources and options; not rebuilt)"
                  if res.get("reused") else ""))
    click.echo(f"board:    {res['board']} ({res['cpu']})")
    click.echo(f"flash:    {_pct(res['flash_bytes'], res['flash_budget'])}")
    click.echo(f"RAM:      {_pct(res['ram_bytes'], res['ram_budget'])} "
               f"(incl. {res['stack_reserve']} bytes of stack)")
    if res.get("stack_worst_case") is not None:
        click.echo(f"stack:    worst case {res['stack_worst_case']} of {res['stack_reserve']} "
                   "bytes (call graph, checked at build)")
    model = []
    if res.get("weights_bytes") is not None:
        model.append(f"int8 weights {res['weights_bytes']} bytes")
    if res.get("encoding_bytes"):
        model.append(f"encoding table {res['encoding_bytes']} bytes")
    if res.get("arena_bytes") is not None:
        model.append(f"activation arena {res['arena_bytes']} bytes")
    if res.get("macs") is not None:
        model.append(f"{res['macs']} MACs per inference")
    if model:
        click.echo("model:    " + ", ".join(model))
    if res.get("runtime_flash_bytes") is not None:
        table = ", the encoding table" if res.get("encoding_bytes") else ""
        click.echo(f"runtime:  {res['runtime_flash_bytes']} bytes of flash besides the weights"
                   f"{table} and the protocol's text (kernels: {res.get('kernels', 'default')})")
    if res.get("personalization_flash_bytes"):
        click.echo(f"personalization: {res['personalization_flash_bytes']} bytes of flash "
                   "(on-device learning of the head)")
    for w in res.get("warnings") or []:
        click.echo(f"warning: {w}", err=True)


def decided_by(r: dict) -> tuple[str, str]:
    """(what decided the label, its scores as text): the personalized float head once it has
    learned (its `head` line: one score per row, '-' for a row not scored), else the int8
    model (its `scores`)."""
    if r.get("head") is not None:
        return "head", " ".join("-" if v is None else f"{v:.3f}" for v in r["head"])
    return "int8", " ".join(map(str, r["scores"]))


def _print_result(text: str, r: dict) -> None:
    unit = r.get("unit", "instructions")
    cost = r.get(unit, {})
    by, scores = decided_by(r)
    head_cost = f", head {cost['head']}" if "head" in cost else ""
    click.echo(f"{r['label']}\t{by} scores {scores}\t"
               f"{unit}: tokenizer {cost.get('tokenizer', '?')}, model {cost.get('model', '?')}"
               f"{head_cost}\t{text}")
    for a in r.get("attribution", []):
        click.echo(f"    {a['weight']:6.3f}  {a['word']}")


def _need_port(port: str | None) -> str:
    if not port:
        raise McutextError("no port given",
                           hint="pass --port URL (a serial device such as /dev/ttyACM0, or the "
                                "socket://127.0.0.1:PORT that `mcutext run` prints) or set "
                                "MCUTEXT_PORT")
    return port


def device_info(port: str, as_json: bool = False, log: Path | None = None) -> None:
    """`mcutext info --port URL`: what the firmware on the device reports."""
    from ..device.client import Device
    with Device(_need_port(port), log=log) as dev:
        info = dev.info()
    if as_json:
        _json(info)
        return
    click.echo(f"{info.get('model')} on {info.get('board')} ({info.get('cpu')}), firmware "
               f"{info.get('firmware')}, protocol {info.get('protocol')}")
    labels = info.get("labels", [])
    click.echo(f"labels ({len(labels)}): {', '.join(labels[:12])}"
               f"{' ...' if len(labels) > 12 else ''}")
    tok = info.get("tokenizer", {})
    click.echo(f"tokenizer: {tok.get('buckets')} buckets, {tok.get('max_words')} words x "
               f"{tok.get('features_per_word')} features, seed {tok.get('seed')}")
    for key in ("flash", "ram", "stack"):
        if key in info:
            click.echo(f"{key}: {_pct(info[key]['used'], info[key]['budget'])}")
    click.echo(f"arena {info.get('arena')} bytes, weights {info.get('weights')} bytes, "
               f"{info.get('macs')} MACs; counter: {info.get('counter')}; "
               f"line max {info.get('line_max')} bytes")


def _texts_from_file(path: Path) -> list[str]:
    if path.suffix.lower() in (".tsv", ".csv", ".jsonl"):
        from ..text.datasets import load_file
        return load_file(path).texts
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise McutextError(f"{path}: invalid UTF-8 ({e})") from None
    return [line for line in lines if line.strip()]


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--json", "as_json", is_flag=True)
    def boards(as_json: bool) -> None:
        """List the boards (boards/*/board.toml)."""
        from ..firmware.boards import list_boards
        bs = [b.summary() for b in list_boards()]
        if as_json:
            _json(bs)
            return
        for b in bs:
            where = f"QEMU {b['qemu_machine']}" if b["qemu_machine"] else "hardware only"
            flash = f"pyOCD {b['pyocd_target']}" if b["pyocd_target"] else "no pyOCD target"
            click.echo(f"{b['name']:<16} {b['cpu']:<10} flash {b['flash_bytes'] // 1024:>5} KB  "
                       f"RAM {b['ram_bytes'] // 1024:>5} KB  {where}; {flash}")

    @cli.command()
    @click.argument("bundle", type=click.Path(path_type=Path))
    @click.option("--board", **BOARD_OPTION)
    @click.option("--out", type=click.Path(path_type=Path), default=None,
                  help="Output folder (default: beside the bundle, <bundle>/../<board>/ "
                       "for a folder named bundle, else <bundle>-<board>/).")
    @click.option("--portable", is_flag=True,
                  help="Portable C kernels even on a core with the DSP extension.")
    @click.option("--profile", is_flag=True,
                  help="Count every kernel call of the model (`classify` adds an `ops` line).")
    @click.option("--no-personalize", "no_personalize", is_flag=True,
                  help="Leave on-device learning out (classification-only firmware).")
    @click.option("--force", is_flag=True, help=FORCE_HELP)
    @click.option("--json", "as_json", is_flag=True)
    def build(bundle: Path, board: str, out: Path | None, portable: bool, profile: bool,
              no_personalize: bool, force: bool, as_json: bool) -> None:
        """Generate the model's C and build the firmware ELF for BOARD.

        Refuses, with the overshoot in bytes, a model that does not fit the board. --out may
        name an earlier firmware folder (replaced when the build succeeds); another non-empty
        folder, or a file, only with --force."""
        from ..firmware.build import build as run_build
        res = run_build(bundle, board, out, portable=portable, profile=profile,
                        personalize=not no_personalize, force=force)
        if as_json:
            _json(res)
        else:
            _print_build(res)

    @cli.command()
    @click.argument("target", metavar="BUNDLE_OR_ELF", type=click.Path(path_type=Path))
    @click.option("--board", **BOARD_OPTION)
    @click.option("--storage", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Host file of the board's storage (`head save` survives a restart); "
                       "created blank if missing. Default: no storage.")
    @click.option("--out", type=click.Path(path_type=Path), default=None,
                  help="Firmware folder for a BUNDLE (default: as `mcutext build`).")
    def run(target: Path, board: str, storage: Path | None, out: Path | None) -> None:
        """Boot firmware in QEMU with the UART on a local TCP port (Ctrl-C stops it).

        Given a bundle folder, builds the firmware first, unless the ELF in the output
        folder was built from the same bundle, board, sources and options."""
        from ..device.qemu import Qemu
        if target.is_dir():
            from ..firmware.build import build as run_build
            res = run_build(target, board, out, reuse=True)
            _print_build(res)
            target = Path(res["elf"])
        vm = Qemu(target, board, storage=storage)

        def _stop(signum, frame):
            raise KeyboardInterrupt

        # SIGTERM / SIGHUP (and SIGINT even where a shell made it ignored) stop QEMU cleanly.
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, _stop)
        try:
            url = vm.start()
            click.echo(f"QEMU ({vm.board.qemu_machine}) is running {target}")
            click.echo(f"serial: {url}")
            click.echo(f"  mcutext classify --port {url} \"some text\"")
            click.echo(f"  or a terminal: nc 127.0.0.1 {vm.port}   (Ctrl-C stops QEMU)")
            sys.stdout.flush()
            code = vm.wait()
            raise McutextError(f"QEMU exited with code {code}", hint=f"see {vm.log_path}")
        except KeyboardInterrupt:
            click.echo("stopping QEMU", err=True)
        finally:
            vm.stop()

    @cli.command()
    @click.argument("elf", type=click.Path(path_type=Path))
    @click.option("--board", **BOARD_OPTION)
    @click.option("--probe", default=None, help="Debug probe unique id (see `pyocd list`).")
    def flash(elf: Path, board: str, probe: str | None) -> None:
        """Flash ELF onto a real board with pyOCD."""
        from ..device.flash import flash as run_flash
        res = run_flash(elf, board, probe)
        click.echo(f"flashed {res['elf']} to {res['board']} (pyOCD target {res['target']})")

    @cli.command()
    @click.argument("texts", nargs=-1)
    @click.option("--port", **PORT_OPTION)
    @click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Texts to classify: one per line, or a .tsv/.csv/.jsonl dataset.")
    @click.option("--explain", is_flag=True, help="Also show each word's attention weight.")
    @click.option("--log", type=click.Path(path_type=Path), default=None,
                  help="Append every exchange with the device to this file.")
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    def classify(texts: tuple[str, ...], port: str, file: Path | None, explain: bool,
                 log: Path | None, timeout: float, as_json: bool) -> None:
        """Classify TEXTS on the device at --port; without texts, an interactive console."""
        from ..device.client import Device, DeviceError
        items = list(texts) + (_texts_from_file(file) if file else [])
        with Device(_need_port(port), log=log, timeout=timeout) as dev:
            run_one = dev.explain if explain else dev.classify
            if items:
                from ..common.progress import track
                results = []
                for text in track(items, len(items), "classifying on the device"):
                    r = run_one(text)
                    results.append({"text": text, **r})
                    if not as_json:
                        _print_result(text, r)
                if as_json:
                    _json(results)
                return
            info = dev.info()
            click.echo(f"{info.get('model')} on {info.get('board')}: type a text, Enter to "
                       "classify; Ctrl-D to end", err=True)
            while True:
                try:
                    line = input("> " if sys.stdin.isatty() else "")
                except (EOFError, KeyboardInterrupt):
                    break
                if not line.strip():
                    continue
                try:
                    r = run_one(line)
                except DeviceError as e:  # e.g. text that is not UTF-8: say so, keep going
                    click.echo(f"error: {e}", err=True)
                    continue
                if as_json:
                    click.echo(json.dumps({"text": line, **r}, default=str))
                else:
                    _print_result(line, r)
