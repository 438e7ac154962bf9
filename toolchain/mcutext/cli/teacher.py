"""`mcutext teacher ...`: train and inspect the recipes' teachers (mcutext.train.teacher)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..common.outputs import FORCE_HELP


def _json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=float))


def _summary(path: Path) -> dict:
    meta = json.loads((path / "teacher.json").read_text(encoding="utf-8"))
    tr = meta["training"]
    return {"teacher": str(path), "labels": meta["labels"], "test": meta["metrics"]["test"],
            "dev": meta["metrics"]["dev"], "params": meta["params"],
            "kind": meta["config"].get("kind", "transformer"),
            "tune_layers": meta["config"]["tune_layers"],
            "rnn_units": meta["config"].get("rnn_units"), "epochs": tr["epochs"],
            "examples": tr["examples"], "seconds": tr["total_seconds"],
            "exclude_labels": meta["eval"]["exclude_labels"]}


def _print(s: dict) -> None:
    t = s["test"]
    note = f" (excluding {', '.join(s['exclude_labels'])})" if s["exclude_labels"] else ""
    excl = "".join(f"  {lab} recall {v['recall']:.4f} (n={v['n']})"
                   for lab, v in t.get("excluded", {}).items())
    click.echo(f"teacher: {s['teacher']}")
    click.echo(f"test accuracy{note}: {t['accuracy']:.4f} (n={t['n']}), macro-F1 "
               f"{t['macro_f1']:.4f}{excl}")
    what = (f"a BiLSTM ({s['rnn_units']} per direction) + head over frozen pretrained "
            "embeddings" if s["kind"] == "bilstm" else
            f"top {s['tune_layers']} encoder layers + head")
    click.echo(f"parameters: {s['params']['total']:,} ({s['params']['trained']:,} trained: "
               f"{what})")
    click.echo(f"training: {s['examples']:,} examples, {s['epochs']} epochs, "
               f"{s['seconds'] / 60:.1f} min on 2 threads")


def register(cli: click.Group) -> None:
    @cli.group()
    def teacher() -> None:
        """The teacher: MiniLM-L6 fine-tuned per recipe, cached under build/teachers/."""

    @teacher.command("train")
    @click.argument("recipe")
    @click.option("--out", type=click.Path(path_type=Path), default=None,
                  help="Teacher folder (default: build/teachers/<recipe>, where `mcutext "
                       "train` looks for it).")
    @click.option("--epochs", type=click.IntRange(1, 100), default=None,
                  help="Override the recipe's [teacher] epochs.")
    @click.option("--limit", type=click.IntRange(10, None), default=None,
                  help="Train on a random subset of this many examples (quick runs; such a "
                       "teacher is not used by `mcutext train`).")
    @click.option("--force", is_flag=True, help=FORCE_HELP)
    @click.option("--json", "as_json", is_flag=True)
    def train_cmd(recipe: str, out: Path | None, epochs: int | None, limit: int | None,
                  force: bool, as_json: bool) -> None:
        """Fine-tune RECIPE's teacher and report its test accuracy."""
        from ..model.recipe import load_recipe
        from ..train.teacher.fit import train_teacher
        from ..train.pipeline import teacher_path
        r = load_recipe(recipe)
        path = train_teacher(r, out=out or teacher_path(r), epochs=epochs, limit=limit,
                             force=force)
        s = _summary(path)
        if as_json:
            _json(s)
        else:
            _print(s)

    @teacher.command("info")
    @click.argument("recipe")
    @click.option("--json", "as_json", is_flag=True)
    def info_cmd(recipe: str, as_json: bool) -> None:
        """Show RECIPE's cached teacher (or a teacher folder)."""
        from ..common.errors import McutextError
        from ..model.recipe import load_recipe
        from ..train.pipeline import teacher_path
        p = Path(recipe)
        if not (p / "teacher.json").is_file():
            p = teacher_path(load_recipe(recipe))
        if not (p / "teacher.json").is_file():
            raise McutextError(f"{p}: no teacher here",
                               hint=f"train it: mcutext teacher train {recipe}")
        s = _summary(p)
        if as_json:
            _json(s)
        else:
            _print(s)
