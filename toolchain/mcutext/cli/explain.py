"""`mcutext explain` and `mcutext ablate`: explanations in the terminal and the objective's
ablation. Parsing and printing only; the work is in mcutext.explain and mcutext.studies.ablation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..common.errors import McutextError
from ..common.outputs import FORCE_HELP

EXPLAIN_RUNTIMES = ("keras", "litert", "tflm")
RUNTIME_NAMES = {"keras": "float (Keras)", "litert": "int8 (LiteRT)",
                 "tflm": "int8 (TFLite Micro)", "device": "int8 on the device"}


def _json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=float))


def colour(share: float, top: float) -> str:
    """Background for a word: white (no weight) to deep orange (the sentence's top word)."""
    t = 0.0 if top <= 0 else max(0.0, min(1.0, share / top))
    g, b = int(round(255 - t * (255 - 110))), int(round(255 - t * 255))
    return f"black on rgb(255,{g},{b})"


def render(e) -> "object":
    """The explanation as rich renderables: a header line and the coloured words."""
    from rich.text import Text
    head = Text()
    head.append(f"{RUNTIME_NAMES.get(e.runtime, e.runtime)}: ", style="bold")
    head.append(e.label, style="bold green")
    probs = sorted(zip(e.labels, e.probabilities), key=lambda p: -p[1])[:5]
    head.append("   " + "  ".join(f"{lab} {p:.3f}" for lab, p in probs), style="dim")
    body = Text()
    share = e.share
    top = float(share.max()) if len(share) else 0.0
    for i, (w, s) in enumerate(zip(e.words, share)):
        if i:
            body.append(" ")
        body.append(w, style=colour(float(s), top))
    if not e.words:
        body.append("(no words)", style="dim")
    order = sorted(range(len(share)), key=lambda i: -share[i])[:5]
    tops = Text("top words: " + "  ".join(f"'{e.words[i]}' {share[i]:.2f}" for i in order),
                style="dim")
    return (head, body, tops) if e.words else (head, body)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("args", nargs=-1, required=True, metavar="[BUNDLE] TEXT...")
    @click.option("--runtime", "runtimes", type=click.Choice(EXPLAIN_RUNTIMES), multiple=True,
                  help="Where the model runs (repeatable; default: keras and tflm, the float "
                       "and the int8 model).")
    @click.option("--port", default=None, metavar="URL",
                  help="Ask the device at this serial port / pyserial URL (protocol "
                       "`explain`) instead of a bundle; then every argument is a text "
                       "(env MCUTEXT_PORT when the first argument is not a bundle).")
    @click.option("--json", "as_json", is_flag=True, help="Print the explanations as JSON.")
    def explain(args: tuple[str, ...], runtimes: tuple[str, ...], port: str | None,
                as_json: bool) -> None:
        """Show TEXT's words coloured by the model's attribution (its attention pooling), with
        the label and the class probabilities, for the float and the int8 model of BUNDLE or
        for the device at --port."""
        from rich.console import Console

        from ..explain import attribution as ex
        first = Path(args[0])
        is_bundle = (first / "manifest.json").is_file()
        if port is None and not is_bundle:
            port = os.environ.get("MCUTEXT_PORT")
            if port is None:
                raise McutextError(f"{args[0]}: not a bundle (no manifest.json)",
                                   hint="mcutext explain BUNDLE \"text\", or mcutext explain "
                                        "--port URL \"text\" for a device")
        if port is not None:
            if runtimes:
                raise McutextError("--runtime is for a bundle; --port asks the device")
            from ..device.client import Device
            texts = list(args)
            with Device(port) as dev:
                results = [ex.explain_on_device(dev, t) for t in texts]
        else:
            from ..int8.bundle import load_bundle
            texts = list(args[1:])
            if not texts:
                raise McutextError("no text to explain", hint=f"mcutext explain {args[0]} "
                                                              "\"some text\"")
            b = load_bundle(first)
            results = []
            for rt in runtimes or ("keras", "tflm"):
                results += ex.explain(b, texts, rt)
        if as_json:
            _json([r.to_dict() for r in results])
            return
        console = Console(highlight=False)
        by_text: dict[str, list] = {}
        for r in results:
            by_text.setdefault(r.text, []).append(r)
        for k, (text, rs) in enumerate(by_text.items()):
            if k:
                console.print()
            if len(by_text) > 1:
                console.print(text, style="bold", markup=False)
            for r in rs:
                for part in render(r):
                    console.print(part)

    @cli.command()
    @click.argument("recipe")
    @click.option("--out", type=click.Path(path_type=Path), default=None,
                  help="Folder for the table and the four bundles "
                       "(default: build/ablation/<recipe>).")
    @click.option("--limit", type=click.IntRange(10, None), default=None,
                  help="Train every arm on a random subset of this many examples.")
    @click.option("--epochs", type=click.IntRange(1, 1000), default=None,
                  help="Override the recipe's epochs (all arms alike).")
    @click.option("--n-eval", type=click.IntRange(1, None), default=500, show_default=True,
                  help="Test sentences attacked and explained (a fixed seeded sample).")
    @click.option("--adv-weight", type=click.FloatRange(0, 100, min_open=True), default=None,
                  help="Weight c of the adversarial term in the last arm (default: the "
                       "recipe's, or 1.0 when the recipe has none).")
    @click.option("--test-limit", type=click.IntRange(1, None), default=None, hidden=True,
                  help="Clean accuracy on the first N test examples only (quick runs).")
    @click.option("--force", is_flag=True, help=FORCE_HELP)
    @click.option("--json", "as_json", is_flag=True, help="Print the table's rows as JSON.")
    def ablate(recipe: str, out: Path | None, limit: int | None, epochs: int | None,
               n_eval: int, adv_weight: float | None, test_limit: int | None,
               force: bool, as_json: bool) -> None:
        """Train RECIPE four times -- CE only, + distillation, + attention mapping,
        + adversarial -- and tabulate int8 accuracy, robust accuracy (and the share of
        the CE arm's attack errors each arm removes), certified accuracy at 1 and 2 edits,
        explanation faithfulness and teacher agreement, size and training time."""
        from ..studies.ablation import _finite, ablate as run, default_out
        from ..model.recipe import load_recipe
        r = load_recipe(recipe)
        out = out or default_out(r)
        res = run(r, out=out, limit=limit, epochs=epochs, n_eval=n_eval,
                  test_limit=test_limit, force=force,
                  weights={"adv_weight": adv_weight} if adv_weight else None)
        if as_json:
            _json(_finite(res["rows"]))
            return
        from rich.console import Console
        from rich.table import Table
        t = Table("objective", "a/b/c", "int8 acc.", "char", "word", "char err. removed",
                  "word err. removed", "cert. 1", "cert. 2", "compr. (rand.)",
                  "suff. (rand.)", "AOPC (rand.)", "Spearman", "top-3 (rand.)", "weights (B)",
                  "train (s)", title=f"ablation: {res['recipe']}")
        from ..studies.ablation import COLUMNS, _cells
        for row in res["rows"]:
            c = _cells(row)
            t.add_row(*[str(c.get(k, "-")) for k, _ in COLUMNS])
        Console().print(t)
        click.echo(f"table: {out / 'ablation.md'} and {out / 'ablation.json'}")
