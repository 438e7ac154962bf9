"""`mcutext personalize`: teach the device its owner's labelled examples over serial.

    mcutext personalize --port URL DATA.tsv [--epochs N] [--new-labels] [--holdout 0.2]
                        [--lr X] [--momentum X] [--l2 X] [--reset] [--json]

    mcutext head state|reset|export FILE|import FILE --port URL

The examples are split (fixed seed) into a part the device learns from, one `learn` line
per example and epoch (an SGD step of the head on the device: docs/personalization.md), and a
held-out part the device classifies before and after, without learning. Parsing and printing
here; the work is `personalize_on_device`, which the tests call directly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import click

from .errors import McutextError


def split_holdout(n: int, holdout: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(learn, held-out) indices: a fixed shuffle, the last round(holdout * n) held out."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    k = int(round(holdout * n))
    if holdout > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    return idx[:n - k], idx[n - k:]


def _accuracy(dev, texts: list[str], labels: list[str]) -> float | None:
    if not texts:
        return None
    return sum(dev.classify(t)["label"] == y for t, y in zip(texts, labels)) / len(texts)


def personalize_on_device(dev, texts: list[str], labels: list[str], *, epochs: int = 1,
                          holdout: float = 0.2, new_labels: bool = False, reset: bool = False,
                          seed: int = 0, lr: float | None = None, momentum: float | None = None,
                          l2: float | None = None, echo=None) -> dict:
    """Runs the session on an open mcutext.device.Device; returns the report."""
    say = echo or (lambda _s: None)
    if len(texts) != len(labels) or not texts:
        raise McutextError("no examples to learn from")
    if reset:
        dev.reset_head()
    if lr is not None or momentum is not None or l2 is not None:
        dev.head_config(lr=lr, momentum=momentum, l2=l2)
    state = dev.head_state()
    known = {lab["name"] for lab in state["labels"]}
    missing = sorted(set(labels) - known)
    added = []
    if missing:
        if not new_labels:
            raise McutextError(f"labels not on the device: {', '.join(missing)}",
                               hint="pass --new-labels to add them in the reserved rows")
        room = state["new_labels"]["budget"] - state["new_labels"]["used"]
        if len(missing) > room:
            raise McutextError(f"{len(missing)} new labels, the device has room for {room}",
                               hint="remove added labels (`label remove`) or reset the head")
        for name in missing:
            dev.add_label(name)
            added.append(name)
    learn_idx, held_idx = split_holdout(len(texts), holdout, seed)
    held_t = [texts[i] for i in held_idx]
    held_y = [labels[i] for i in held_idx]
    before = _accuracy(dev, held_t, held_y)
    if before is not None:
        say(f"held-out ({len(held_idx)} examples) before: accuracy {before:.4f}")
    rng = random.Random(seed + 1)
    history = []
    step_counts = []
    from .progress import track
    for epoch in range(1, epochs + 1):
        order = list(learn_idx)
        rng.shuffle(order)
        losses, hits = [], 0
        for i in track(order, len(order), f"epoch {epoch}/{epochs}"):
            r = dev.learn(labels[i], texts[i])
            losses.append(r["loss"])
            hits += r["predicted"] == labels[i]
            unit = r.get("unit")
            if unit and "step" in r.get(unit, {}):
                step_counts.append(r[unit]["step"])
        rec = {"epoch": epoch, "loss": sum(losses) / len(losses),
               "online_accuracy": hits / len(order)}
        history.append(rec)
        say(f"epoch {epoch}: loss {rec['loss']:.4f}, accuracy {rec['online_accuracy']:.4f} "
            f"(each example predicted before its step)")
    after = _accuracy(dev, held_t, held_y)
    if after is not None:
        say(f"held-out ({len(held_idx)} examples) after:  accuracy {after:.4f} "
            f"({after - before:+.4f})")
    state = dev.head_state()
    return {"examples": len(texts), "learned": len(learn_idx), "held_out": len(held_idx),
            "added_labels": added, "epochs": history, "before": before, "after": after,
            "updates": state["updates"], "config": state.get("config"),
            "step_cost_median": (sorted(step_counts)[len(step_counts) // 2]
                                 if step_counts else None)}


def register(cli: click.Group) -> None:
    from .cli_device import PORT_OPTION, _need_port

    @cli.command()
    @click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--port", **PORT_OPTION)
    @click.option("--epochs", type=click.IntRange(1, 1000), default=1, show_default=True)
    @click.option("--holdout", type=click.FloatRange(0.0, 0.9), default=0.2, show_default=True,
                  help="Fraction of the examples kept aside for the before/after report.")
    @click.option("--new-labels", is_flag=True,
                  help="Add the data's labels the device does not have (reserved rows).")
    @click.option("--reset", is_flag=True, help="Start from the factory head.")
    @click.option("--lr", type=float, default=None, help="Learning rate (device default 0.05).")
    @click.option("--momentum", type=float, default=None, help="SGD momentum (default 0).")
    @click.option("--l2", type=float, default=None,
                  help="Pull toward the factory weights (default 0).")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--log", type=click.Path(path_type=Path), default=None,
                  help="Append every exchange with the device to this file.")
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    def personalize(data: Path, port: str | None, epochs: int, holdout: float,
                    new_labels: bool, reset: bool, lr: float | None, momentum: float | None,
                    l2: float | None, seed: int, log: Path | None, timeout: float,
                    as_json: bool) -> None:
        """Teach the device at --port the labelled examples of DATA (.tsv/.csv/.jsonl)."""
        from .data import load_file
        from .device import Device
        ds = load_file(data)
        with Device(_need_port(port), log=log, timeout=timeout) as dev:
            rep = personalize_on_device(dev, list(ds.texts), list(ds.labels), epochs=epochs,
                                        holdout=holdout, new_labels=new_labels, reset=reset,
                                        seed=seed, lr=lr, momentum=momentum, l2=l2,
                                        echo=None if as_json else click.echo)
        if as_json:
            click.echo(json.dumps(rep, indent=2))
        else:
            click.echo(f"{rep['updates']} updates on the device; the head is in RAM (not "
                       "saved: it returns to factory at reset)")

    @cli.group()
    def head() -> None:
        """The device's personalized head: state, reset, export to / import from a file."""

    def _dev(port, timeout):
        from .device import Device
        return Device(_need_port(port), timeout=timeout)

    @head.command("state")
    @click.option("--port", **PORT_OPTION)
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    def head_state(port: str | None, timeout: float, as_json: bool) -> None:
        """Labels, update count and config of the head at --port."""
        with _dev(port, timeout) as dev:
            st = dev.head_state()
        if as_json:
            click.echo(json.dumps(st, indent=2))
            return
        click.echo(f"updates {st['updates']} ({'personalized' if st['personalized'] else 'factory'}"
                   f" head answers classify); new labels {st['new_labels']['used']} of "
                   f"{st['new_labels']['budget']}; storage {st.get('storage')}")
        click.echo("config " + ", ".join(f"{k} {v:g}" for k, v in st["config"].items()))
        for lab in st["labels"]:
            click.echo(f"{lab['index']:>4}  {lab['name']}  ({lab['kind']})")

    @head.command("reset")
    @click.option("--port", **PORT_OPTION)
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    def head_reset(port: str | None, timeout: float) -> None:
        """Back to the factory head (added labels and updates gone)."""
        with _dev(port, timeout) as dev:
            dev.reset_head()
        click.echo("factory head restored")

    @head.command("export")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--port", **PORT_OPTION)
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    def head_export(file: Path, port: str | None, timeout: float) -> None:
        """Save the learned head of the device at --port to FILE (a CRC-checked blob)."""
        with _dev(port, timeout) as dev:
            blob = dev.export_head()
        file.write_bytes(blob)
        click.echo(f"{len(blob)} bytes to {file}")

    @head.command("import")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--port", **PORT_OPTION)
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    def head_import(file: Path, port: str | None, timeout: float) -> None:
        """Load a head exported by `mcutext head export` into the device at --port."""
        with _dev(port, timeout) as dev:
            updates = dev.import_head(file.read_bytes())
        click.echo(f"head loaded ({updates} updates)")
