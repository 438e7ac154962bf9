"""`mcutext personalize`: teach the device its owner's labelled examples over serial.

    mcutext personalize --port URL DATA.tsv [--epochs N] [--new-labels] [--holdout 0.2]
                        [--lr X] [--momentum X] [--l2 X] [--reset] [--json]

    mcutext teach --port URL DATA.tsv [--epochs N] [--lr X] [--momentum X] [--l2 X] [--save]

    mcutext head state|reset|export FILE|import FILE --port URL

The examples are split (fixed seed) into a part the device learns from, one `learn` line
per example and epoch (an SGD step of the head on the device: docs/personalization.md), and a
held-out part the device classifies before and after, without learning. Parsing and printing
here; the work is `personalize_on_device`, which the tests call directly.

`mcutext teach` is for new labels from a few examples each: `keep` every example, `head
imprint` (each new label's row from the mean direction of its examples), `head train`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import click

from ..common import progress

from ..common.errors import McutextError
from ..common.outputs import FORCE_HELP


def split_holdout(n: int, holdout: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(learn, held-out) indices: a fixed shuffle, the last round(holdout * n) held out."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    k = int(round(holdout * n))
    if holdout > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    return idx[:n - k], idx[n - k:]


CHECKPOINT_EVERY = 20   # learning steps between two head checkpoints in the journal


def session_steps(learn_idx: list[int], epochs: int, seed: int = 0) -> list[tuple[int, int]]:
    """(epoch, example index) of every learning step: each epoch a fixed shuffle."""
    rng = random.Random(seed + 1)
    steps = []
    for epoch in range(1, epochs + 1):
        order = list(learn_idx)
        rng.shuffle(order)
        steps += [(epoch, i) for i in order]
    return steps


def default_journal(data: Path) -> Path:
    """build/journal/personalize-<data name>-<hash of its absolute path>.jsonl (cwd)."""
    from ..common.journal import digest
    return Path("build") / "journal" / (f"personalize-{data.stem}-"
                                         f"{digest(str(data.resolve()))}.jsonl")


def personalize_on_device(dev, texts: list[str], labels: list[str], *, epochs: int = 1,
                          holdout: float = 0.2, new_labels: bool = False, reset: bool = False,
                          seed: int = 0, lr: float | None = None, momentum: float | None = None,
                          l2: float | None = None, echo=None, journal: Path | None = None,
                          resume: bool = False,
                          checkpoint_every: int = CHECKPOINT_EVERY) -> dict:
    """Runs the session on an open mcutext.device.client.Device; returns the report.

    With `journal` (a path), every finished piece of work (held-out classifications, each
    learning step with its loss, and every `checkpoint_every` steps the device's head as a
    blob) is appended to that file as it is done. If the port vanishes or the device resets,
    the error says so and the journal stays; `resume=True` on a later call (the same data and
    options) imports the last checkpoint into the device, replays the steps after it
    (checking that each gives the journaled loss, bit for bit) and carries on: the report is
    the one an uninterrupted session gives. Momentum buffers are not part of a blob, so with
    momentum > 0 the replay starts from the session's first state."""
    from ..common.journal import Journal, digest
    say = echo or (lambda _s: None)
    if len(texts) != len(labels) or not texts:
        raise McutextError("no examples to learn from")
    info = dev.info()
    inputs = {"kind": "personalize", "examples": digest([texts, labels]), "n": len(texts),
              "epochs": epochs, "holdout": holdout, "new_labels": new_labels, "reset": reset,
              "seed": seed, "lr": lr, "momentum": momentum, "l2": l2,
              "device": {"model": info.get("model"), "labels": info.get("labels")}}
    jr = Journal(journal) if journal is not None else None
    if resume and (jr is None or not jr.exists()):
        raise McutextError(f"nothing to resume: no journal at {journal}",
                           hint="run without --resume to start a session")
    if jr is not None and jr.exists() and not resume:
        raise McutextError(f"{jr.path}: an interrupted session is kept there",
                           hint="pass --resume to continue it, or --restart to start over")
    entries: list[dict] = []
    if resume:
        jr.load()
        jr.check(inputs, hint="resume with the same data, options and device, or pass "
                              "--restart to start over")
        entries = list(jr.entries)
    learn_idx, held_idx = split_holdout(len(texts), holdout, seed)
    steps = session_steps(learn_idx, epochs, seed)
    try:
        return _session(dev, texts, labels, inputs, jr, entries, learn_idx, held_idx, steps,
                        new_labels, reset, lr, momentum, l2, say, checkpoint_every)
    except McutextError as e:
        if jr is None or not jr.exists():
            raise
        if not any(k in x for x in jr.entries for k in ("step", "before", "after")):
            jr.finish()      # nothing done yet (e.g. a label missing): nothing to resume
            raise
        done = sum(1 for x in jr.entries if "step" in x)
        raise McutextError(f"{e}; the work done is kept in {jr.path} ({done} of {len(steps)} "
                           "learning steps)",
                           hint=(e.hint + "; then " if e.hint else "")
                           + "run the same command with --resume to continue") from None
    finally:
        if jr is not None:
            jr.close()


def _session(dev, texts, labels, inputs, jr, entries, learn_idx, held_idx, steps,
             new_labels, reset, lr, momentum, l2, say, checkpoint_every) -> dict:
    def record(entry: dict) -> None:
        entries.append(entry)
        if jr is not None:
            jr.append(entry)

    start = next((e["start"] for e in entries if "start" in e), None)
    if start is None:
        if jr is not None:
            jr.start(inputs)
        start = _setup(dev, labels, jr is not None, new_labels, reset, lr, momentum, l2)
        record({"start": start})
        done = []
    else:
        done = [e for e in entries if "step" in e]
        _restore(dev, start, entries, done, steps, labels, texts, lr, momentum, l2, say)
    held_t = [texts[i] for i in held_idx]
    held_y = [labels[i] for i in held_idx]

    def accuracy(phase: str) -> float | None:
        have = {e[phase]: e["label"] for e in entries if phase in e}
        hits = 0
        for j, t in enumerate(held_t):
            if j not in have:
                have[j] = dev.classify(t)["label"]
                record({phase: j, "label": have[j]})
            hits += have[j] == held_y[j]
        return hits / len(held_t) if held_t else None

    before = accuracy("before")
    if before is not None:
        say(f"held-out ({len(held_idx)} examples) before: accuracy {before:.4f}")
    from ..common.progress import track
    epochs = steps[-1][0] if steps else 0
    per_epoch = len(learn_idx)
    snapshot = jr is not None and start["config"]["momentum"] == 0
    history: list[dict] = []

    def close_epoch(epoch: int) -> None:
        recs = done[(epoch - 1) * per_epoch: epoch * per_epoch]
        rec = {"epoch": epoch, "loss": sum(r["loss"] for r in recs) / len(recs),
               "online_accuracy": sum(r["hit"] for r in recs) / len(recs)}
        history.append(rec)
        say(f"epoch {epoch}: loss {rec['loss']:.4f}, accuracy {rec['online_accuracy']:.4f} "
            f"(each example predicted before its step)")

    for epoch in range(1, epochs + 1):
        first = (epoch - 1) * per_epoch
        todo = range(max(first, len(done)), first + per_epoch)
        for s in track(todo, len(todo), f"epoch {epoch}/{epochs}"):
            _epoch, i = steps[s]
            r = dev.learn(labels[i], texts[i])
            want = start["updates"] + s + 1
            if r["updates"] != want:
                raise McutextError(f"{dev.url}: the device counts {r['updates']} updates, the "
                                   f"session expects {want}: it restarted or another client "
                                   "taught it, so its head is not this session's")
            unit = r.get("unit")
            step = {"step": s, "loss": r["loss"], "hit": r["predicted"] == labels[i],
                    "cost": r.get(unit, {}).get("step") if unit else None}
            done.append(step)
            record(step)
            if snapshot and ((s + 1) % checkpoint_every == 0 or s + 1 == len(steps)):
                record({"checkpoint": s + 1, "blob": dev.export_head().hex()})
        close_epoch(epoch)
    after = accuracy("after")
    if after is not None:
        say(f"held-out ({len(held_idx)} examples) after:  accuracy {after:.4f} "
            f"({after - before:+.4f})")
    state = dev.head_state()
    costs = sorted(d["cost"] for d in done if d.get("cost") is not None)
    rep = {"examples": len(texts), "learned": len(learn_idx), "held_out": len(held_idx),
           "added_labels": start["added"], "epochs": history, "before": before,
           "after": after, "updates": state["updates"], "config": state.get("config"),
           "step_cost_median": costs[len(costs) // 2] if costs else None}
    if jr is not None:
        jr.finish()
    return rep


def check_new_labels(names: list[str], data: Path | None = None) -> None:
    """Labels the device is to add must follow its rule (1 to 23 bytes of printable ASCII,
    no space; the protocol counts bytes, so a 12-letter name in a non-Latin script is 24 or
    more): refused here, before anything is sent."""
    from ..device.personalize import NAME_BYTES, valid_label_name
    where = f"{data}: " if data else ""
    for name in names:
        if not valid_label_name(name):
            raise McutextError(f"{where}label {name!r} cannot be added on the device: a new "
                               f"label is 1 to {NAME_BYTES - 1} bytes of "
                               "printable ASCII without space "
                               f"({len(name.encode('utf-8', 'surrogateescape'))} bytes given)",
                               hint="rename the label in the data file")


def _setup(dev, labels, keep_blob, new_labels, reset, lr, momentum, l2) -> dict:
    """Reset, update rule, new labels; returns the session's starting point."""
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
        check_new_labels(missing)
        room = state["new_labels"]["budget"] - state["new_labels"]["used"]
        if len(missing) > room:
            raise McutextError(f"{len(missing)} new labels, the device has room for {room}",
                               hint="remove added labels (`label remove`) or reset the head")
        for name in missing:
            dev.add_label(name)
            added.append(name)
    start = {"updates": dev.head_state()["updates"] if added else state["updates"],
             "config": state["config"], "added": added}
    if keep_blob:
        blob = dev.export_head()
        if state["config"]["momentum"] > 0:
            dev.import_head(blob)   # momentum buffers at zero: a replay from here is exact
        start["blob"] = blob.hex()
    return start


def _restore(dev, start, entries, done, steps, labels, texts, lr, momentum, l2, say) -> None:
    """Puts the session's head back into the device: the last checkpoint, then the journaled
    steps after it, each checked against its journaled loss."""
    base, blob = 0, bytes.fromhex(start["blob"])
    if start["config"]["momentum"] == 0:
        for e in entries:
            if "checkpoint" in e and base < e["checkpoint"] <= len(done):
                base, blob = e["checkpoint"], bytes.fromhex(e["blob"])
    dev.import_head(blob)
    cfg = start["config"]
    if dev.head_state()["config"] != cfg:   # the device restarted: its defaults are back
        dev.head_config(lr=cfg["lr"] if lr is None else lr,
                        momentum=cfg["momentum"] if momentum is None else momentum,
                        l2=cfg["l2"] if l2 is None else l2)
    for s in range(base, len(done)):
        _epoch, i = steps[s]
        r = dev.learn(labels[i], texts[i])
        if r["loss"] != done[s]["loss"]:
            raise McutextError(f"{dev.url}: replaying step {s + 1} gives loss {r['loss']!r}, "
                               f"the journal says {done[s]['loss']!r}: the device's head is "
                               "not the session's", hint="pass --restart to start over")
    say(f"resumed: {len(done)} of {len(steps)} learning steps were done (head restored from "
        f"step {base}, {len(done) - base} replayed)")


def _check_journal(journal: Path, resume: bool, what: str) -> None:
    """--resume needs a journal; without it, an existing journal is not overwritten."""
    if resume and not journal.is_file():
        raise McutextError(f"nothing to resume: no journal at {journal}",
                           hint=f"run without --resume to start a {what}")
    if not resume and journal.is_file():
        raise McutextError(f"{journal}: an interrupted {what} is kept there",
                           hint="pass --resume to continue it, or --restart to start over")


def check_head_blob(data: bytes, path: Path, *, feature_dim: int | None = None,
                    classes: int | None = None, rows: int | None = None) -> dict:
    """Validates a head blob (docs/personalization.md) before it goes near a device: size,
    version, CRC-32, the dimensions the device has (feature_dim, factory classes, rows), the
    row flags, every float finite and the added labels' names. Returns its header fields;
    raises McutextError naming `path` and the first problem. (The factory fingerprint is the
    device's to check: it needs the factory weights.)"""
    import struct
    import zlib

    import numpy as np

    from ..device.personalize import (
        ACTIVE, BLOB_HEADER, BLOB_MAGIC, BLOB_VERSION, FRESH, NAME_BYTES)
    from ..device.personalize import valid_label_name

    def bad(what: str):
        return McutextError(f"{path}: {what}; nothing was sent to the device",
                            hint="use a file written by `mcutext head export` for this model")

    if len(data) < BLOB_HEADER.size + 4:
        raise bad(f"not a head blob: {len(data)} bytes, too short")
    (magic, version, hbytes, h, c0, nrows, name_bytes, _fcrc, updates, total,
     reserved) = BLOB_HEADER.unpack_from(data)
    if magic != BLOB_MAGIC or version != BLOB_VERSION or hbytes != BLOB_HEADER.size:
        raise bad("not a version-1 head blob (wrong magic, version or header size)")
    if total != len(data):
        raise bad(f"{len(data)} bytes, its header says {total} (truncated or padded)")
    if zlib.crc32(data[:-4]) != struct.unpack_from("<I", data, len(data) - 4)[0]:
        raise bad("CRC-32 mismatch (the file is damaged)")
    nn = nrows - c0
    want = (BLOB_HEADER.size + ((nrows + 3) & ~3) + 4 * (nrows * h + nrows) + 4 * nn * h
            + nn * NAME_BYTES + 4)
    if c0 == 0 or nn < 0 or name_bytes != NAME_BYTES or reserved != 0 or total != want:
        raise bad(f"inconsistent header (features {h}, classes {c0}, rows {nrows})")
    for name, got, dev in (("features per example", h, feature_dim),
                           ("factory labels", c0, classes), ("label rows", nrows, rows)):
        if dev is not None and got != dev:
            raise bad(f"{got} {name}, the device's model has {dev} (a head of another model)")
    pos = BLOB_HEADER.size
    flags = np.frombuffer(data, np.uint8, nrows, pos)
    if not (np.all(flags[:c0] == ACTIVE)
            and np.all(np.isin(flags[c0:], (0, ACTIVE, ACTIVE | FRESH)))):
        raise bad("invalid row flags")
    pos += (nrows + 3) & ~3
    floats = np.frombuffer(data, "<f4", nrows * h + nrows + nn * h, pos)
    if not np.all(np.isfinite(floats)):
        k = int(np.flatnonzero(~np.isfinite(floats))[0])
        raise bad(f"weight {k} is {floats[k]} (every weight and bias must be finite)")
    pos += 4 * floats.size
    seen = set()
    for j in range(nn):
        raw = data[pos + j * NAME_BYTES: pos + (j + 1) * NAME_BYTES]
        name = raw.rstrip(b"\0")
        if flags[c0 + j] & ACTIVE:
            text = name.decode("ascii", "replace")
            if b"\0" in name or not valid_label_name(text) or text in seen:
                raise bad(f"invalid added label name {name!r}")
            seen.add(text)
        elif name:
            raise bad(f"a free row has a name ({name!r})")
    return {"features": h, "classes": c0, "rows": nrows, "updates": updates,
            "added_labels": sorted(seen)}


def register(cli: click.Group) -> None:
    from .device import PORT_OPTION, _need_port

    LOG_OPTION = dict(type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="Append every exchange with the device to this file.")

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
    @click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Progress journal (default build/journal/personalize-<DATA>-<hash>.jsonl)"
                       "; kept when the session is interrupted, deleted when it ends.")
    @click.option("--resume", is_flag=True,
                  help="Continue an interrupted session from its journal (same DATA and "
                       "options): the device's head is restored, nothing is learned twice.")
    @click.option("--restart", is_flag=True,
                  help="Discard the journal of an interrupted session and start over.")
    @click.option("--log", **LOG_OPTION)
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    @click.option("--save", is_flag=True,
                  help="Then save the head to the device's storage (it loads it at boot).")
    @click.option("--json", "as_json", is_flag=True)
    def personalize(data: Path, port: str | None, epochs: int, holdout: float,
                    new_labels: bool, reset: bool, lr: float | None, momentum: float | None,
                    l2: float | None, seed: int, journal: Path | None, resume: bool,
                    restart: bool, log: Path | None, timeout: float, save: bool,
                    as_json: bool) -> None:
        """Teach the device at --port the labelled examples of DATA (.tsv/.csv/.jsonl).

        If the port vanishes or the device resets, the work done so far stays in the journal:
        run the same command with --resume to continue."""
        from ..text.datasets import load_file
        from ..device.client import Device
        if resume and restart:
            raise click.UsageError("--resume and --restart exclude each other")
        ds = load_file(data)
        journal = journal or default_journal(data)
        if restart:
            journal.unlink(missing_ok=True)
        _check_journal(journal, resume, "session")   # before the port is opened
        with Device(_need_port(port), log=log, timeout=timeout) as dev:
            rep = personalize_on_device(dev, list(ds.texts), list(ds.labels), epochs=epochs,
                                        holdout=holdout, new_labels=new_labels, reset=reset,
                                        seed=seed, lr=lr, momentum=momentum, l2=l2,
                                        echo=None if as_json else click.echo,
                                        journal=journal, resume=resume)
            rep["saved"] = dev.save_head() if save else None   # head save: atomic
        if as_json:
            click.echo(json.dumps(rep, indent=2))
        elif save:
            click.echo(f"{rep['updates']} updates on the device, saved to its storage (save "
                       f"{rep['saved']['seq']}, {rep['saved']['bytes']} bytes)")
        else:
            click.echo(f"{rep['updates']} updates on the device; the head is in RAM (not "
                       "saved: at reset it returns to its last save or factory; --save)")

    @cli.command()
    @click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--port", **PORT_OPTION)
    @click.option("--epochs", type=click.IntRange(0, 100), default=3, show_default=True,
                  help="head train epochs after the imprint (0: imprint only).")
    @click.option("--lr", type=float, default=0.02, show_default=True)
    @click.option("--momentum", type=float, default=0.9, show_default=True)
    @click.option("--l2", type=float, default=0.3, show_default=True,
                  help="Pull toward the factory weights and the imprints.")
    @click.option("--reset", is_flag=True, help="Start from the factory head.")
    @click.option("--log", **LOG_OPTION)
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    @click.option("--save", is_flag=True,
                  help="Then save the head to the device's storage (it loads it at boot).")
    @click.option("--json", "as_json", is_flag=True)
    def teach(data: Path, port: str | None, epochs: int, lr: float, momentum: float, l2: float,
              reset: bool, log: Path | None, timeout: float, save: bool,
              as_json: bool) -> None:
        """Teach the device at --port new labels from a few examples each (DATA: .tsv/.csv/
        .jsonl): labels it lacks are added, every example is kept (`keep`), each new label
        is imprinted from the mean direction of its examples (`head imprint`), then `head
        train` runs EPOCHS over them. Defaults: the settings the clinc150 scenario chose
        (docs/personalization.md). Interrupted: run it again with --reset."""
        from ..text.datasets import load_file
        from ..device.client import Device, DeviceError
        ds = load_file(data)
        texts, labels = list(ds.texts), list(ds.labels)
        say = (lambda m: None) if as_json else click.echo
        with Device(_need_port(port), log=log, timeout=timeout) as dev:
            if reset:
                dev.reset_head()
            st = dev.head_state()
            have = {lab["name"] for lab in st["labels"]}
            missing = sorted(set(labels) - have)
            check_new_labels(missing, data)
            room = st["new_labels"]["budget"] - st["new_labels"]["used"]
            if len(missing) > room:
                raise McutextError(f"{data}: {len(missing)} new labels, the device has room for "
                                   f"{room}", hint="remove labels or use fewer")
            budget = st.get("buffer", {}).get("budget")
            if budget is not None and len(texts) > budget:
                raise McutextError(f"{data}: {len(texts)} examples, the device keeps "
                                   f"{budget} for head imprint / head train",
                                   hint="send fewer examples per label")
            kept = 0
            try:
                for name in missing:
                    dev.add_label(name)
                say(f"added {len(missing)} labels: {', '.join(missing) or '-'}")
                for t, lab in progress.track(list(zip(texts, labels)), len(texts), "keep"):
                    dev.keep(lab, t)
                    kept += 1
                rep: dict = {"added": missing, "kept": kept, "imprinted": dev.imprint()}
                say("imprinted " + ", ".join(f"{k} ({v})" for k, v in
                                             rep["imprinted"]["imprinted"].items()))
                dev.head_config(lr=lr, momentum=momentum, l2=l2)
                if epochs:
                    t = dev.train_head(epochs, timeout=max(timeout, 600))
                    rep["epochs"] = t["epochs"]
                    for e in t["epochs"]:
                        say(f"epoch {e['epoch']}: loss {e['loss']:.4f}, {e['correct']} of "
                            f"{e['of']} right before their step")
                rep["updates"] = dev.head_state()["updates"]
                rep["saved"] = dev.save_head() if save else None
            except DeviceError:
                raise          # the device refused something: its own message says what
            except McutextError as e:
                # the port vanished or the device stopped answering part way: DATA is
                # untouched; the device may hold some of this session in RAM
                raise McutextError(f"{e} ({kept} of {len(texts)} examples kept)",
                                   hint="the device may hold part of this session (labels, "
                                        "kept examples): run the same command again with "
                                        "--reset") from None
        if as_json:
            click.echo(json.dumps(rep, indent=2))
        else:
            click.echo(f"{rep['updates']} updates on the device" + (
                f", saved to its storage (save {rep['saved']['seq']})" if save
                else "; the head is in RAM (not saved: --save)"))

    @cli.group()
    def head() -> None:
        """The device's personalized head: state, reset, export to / import from a file."""

    def _dev(port, timeout, log=None):
        from ..device.client import Device
        return Device(_need_port(port), timeout=timeout, log=log)

    @head.command("state")
    @click.option("--port", **PORT_OPTION)
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    @click.option("--log", **LOG_OPTION)
    @click.option("--json", "as_json", is_flag=True)
    def head_state(port: str | None, timeout: float, log: Path | None, as_json: bool) -> None:
        """Labels, update count and config of the head at --port."""
        with _dev(port, timeout, log) as dev:
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
    @click.option("--log", **LOG_OPTION)
    def head_reset(port: str | None, timeout: float, log: Path | None) -> None:
        """Back to the factory head (added labels and updates gone)."""
        with _dev(port, timeout, log) as dev:
            dev.reset_head()
        click.echo("factory head restored")

    @head.command("save")
    @click.option("--port", **PORT_OPTION)
    @click.option("--timeout", type=float, default=30.0, show_default=True)
    @click.option("--log", **LOG_OPTION)
    def head_save(port: str | None, timeout: float, log: Path | None) -> None:
        """Write the head to the device's storage, atomically (the device loads it at boot)."""
        with _dev(port, timeout, log) as dev:
            r = dev.save_head()
        click.echo(f"saved (save {r['seq']}, {r['bytes']} bytes)")

    @head.command("export")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--port", **PORT_OPTION)
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    @click.option("--log", **LOG_OPTION)
    @click.option("--force", is_flag=True, help=FORCE_HELP)
    def head_export(file: Path, port: str | None, timeout: float, log: Path | None,
                    force: bool) -> None:
        """Save the learned head of the device at --port to FILE (a CRC-checked blob).

        FILE may be an earlier head export (it is replaced); another file only with --force."""
        from ..common.outputs import check_out, write_file
        from ..device import personalize  # noqa: F401  (declares the "head" kind)
        check_out(file, "head", force)   # before the device is asked
        with _dev(port, timeout, log) as dev:
            blob = dev.export_head()
        write_file(file, blob, kind="head", force=force)   # a complete file or none
        click.echo(f"{len(blob)} bytes to {file}")

    @head.command("import")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--port", **PORT_OPTION)
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    @click.option("--log", **LOG_OPTION)
    def head_import(file: Path, port: str | None, timeout: float, log: Path | None) -> None:
        """Load a head exported by `mcutext head export` into the device at --port.

        The file is checked first (size, CRC, dimensions against the device's model, finite
        weights, label names); the device checks it again and keeps its head if it refuses."""
        blob = file.read_bytes()
        check_head_blob(blob, file)    # a broken file is reported before opening the port
        with _dev(port, timeout, log) as dev:
            info = dev.info()
            rows = dev.head_state()["rows"]
            check_head_blob(blob, file, feature_dim=info.get("feature_dim"),
                            classes=info.get("classes"), rows=rows)
            updates = dev.import_head(blob)
        click.echo(f"head loaded ({updates} updates)")
