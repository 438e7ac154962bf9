"""`make bench`: the long measurements. Tables (markdown + JSON) go under build/bench/;
docs/results.md summarizes them.

    python -m bench [--out build/bench]
                            [--only pipeline,device,library,robustness,robust,baselines,personalize,teach]
                            [--recipes sst2,sms_spam,ag_news,clinc150] [--reuse]
                            [--personalize-bundle build/sst2/bundle]
                            [--teach-bundle build/clinc140/bundle]

`--only ablation` (not in the default run) runs `mcutext ablate` for the recipes of
ABLATION_RECIPES among --recipes: four students each (and the recipe's teacher first if it is
not cached under build/teachers/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mcutext.common import progress
from mcutext.common.errors import McutextError
from mcutext.common.outputs import write_file

from .tables import write_table

RECIPES = ("sst2", "sms_spam", "ag_news", "clinc150")
SECTIONS = ("pipeline", "device", "library", "robustness", "robust", "baselines", "personalize",
            "teach")
OPT_IN = ("ablation",)          # run only when named in --only (trains 4 students per recipe)
ABLATION_RECIPES = ("sst2", "sms_spam", "ag_news")


def bench_pipeline(out: Path, recipes: list[str]) -> dict[str, Path]:
    """Train every recipe with its default objective; int8 accuracy in TFLite Micro."""
    from mcutext.int8.bundle import load_bundle
    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    rows, bundles = [], {}
    for name in recipes:
        t0 = time.time()
        path = train(load_recipe(name), out=out / "bundles" / name)
        wall = time.time() - t0
        m = load_bundle(path).manifest
        t = m["metrics"]["test"]
        row = {
            "recipe": name, "params": m["sizes"]["params"],
            "int8_weights_bytes": m["sizes"]["int8_weights_bytes"],
            "train_seconds": m["training"]["seconds"], "total_seconds": round(wall, 1),
            "test_n": t["tflm"]["n"], "float_accuracy": t["keras"]["accuracy"],
            "int8_tflm_accuracy": t["tflm"]["accuracy"], "int8_macro_f1": t["tflm"]["macro_f1"],
            "int8_float_agreement": t["int8_float_agreement"],
        }
        for lab, ex in t["tflm"].get("excluded", {}).items():
            row["excluded"] = f"{lab}: recall {ex['recall']:.3f} (n={ex['n']})"
        rows.append(row)
        bundles[name] = path
        progress.log(f"{name}: int8 {row['int8_tflm_accuracy']:.4f} in {wall:.0f} s")
    write_table(out, "pipeline", rows, [
        ("recipe", "recipe"), ("params", "parameters"), ("int8_weights_bytes", "int8 weights (B)"),
        ("train_seconds", "training (s)"), ("total_seconds", "train+convert+verify (s)"),
        ("test_n", "test n"), ("float_accuracy", "float acc."),
        ("int8_tflm_accuracy", "int8 acc. (TFLM)"), ("int8_macro_f1", "int8 macro-F1"),
        ("int8_float_agreement", "int8/float agreement"), ("excluded", "left out of accuracy")],
        "Host pipeline: accuracy on the test split, 2 CPU cores",
        "Produced by `make bench` (python -m bench --only pipeline).")
    return bundles


def bench_ablation(out: Path, recipes: list[str]) -> list[dict]:
    """`mcutext ablate` per recipe (tables and bundles under out/ablation/<recipe>/), and the
    rows of all of them in out/ablation.md and .json."""
    from mcutext.studies.ablation import ablate
    return write_ablation(out, {name: ablate(name, out=out / "ablation" / name)["rows"]
                                for name in recipes})


def write_ablation(out: Path, rows_by_recipe: dict[str, list[dict]]) -> list[dict]:
    from mcutext.studies.ablation import COLUMNS, _cells, _finite
    rows = [{"recipe": name, **_finite(r)} for name, rs in rows_by_recipe.items() for r in rs]
    cells = [{"recipe": r["recipe"], **_cells(r)} for r in rows]
    write_table(out, "ablation", cells, [("recipe", "recipe")] + COLUMNS,
                "Ablation of the three-part objective (int8, TFLite Micro)",
                "Per recipe: CE only, + distillation, + attention mapping, + adversarial term "
                "(same seeds and budget). Details and definitions: ablation/<recipe>/"
                "ablation.md. Produced by `python -m bench --only ablation`.")
    write_file(out / "ablation.json", json.dumps(rows, indent=2, default=float) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--reuse", action="store_true",
                    help="baselines, robust: reuse the bundles already trained under "
                         "OUT/bundles instead of training them again")
    ap.add_argument("--personalize-bundle", type=Path, default=None,
                    help="sst2 bundle of the personalization section (default: the pipeline's, "
                         "else build/sst2/bundle)")
    ap.add_argument("--teach-bundle", type=Path, default=None,
                    help="clinc140 bundle of the 'teach new commands' section (default: "
                         "OUT/bundles/clinc140, trained first if missing)")
    ap.add_argument("--verbose", action="store_true",
                    help="Show the libraries' warnings and log lines.")
    args = ap.parse_args(argv)
    if not args.verbose:
        from mcutext.common import quiet
        quiet.setup()
    sections = [s for s in args.only.split(",") if s]
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = set(sections) - set(SECTIONS) - set(OPT_IN)
    if unknown:
        print(f"error: unknown section(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    from mcutext.common.determinism import configure_tensorflow
    configure_tensorflow()
    try:
        bundles: dict[str, Path] = {}
        if "pipeline" in sections:
            bundles = bench_pipeline(args.out, recipes)
        else:
            bundles = {r: args.out / "bundles" / r for r in recipes
                       if (args.out / "bundles" / r / "manifest.json").is_file()}
        if "device" in sections:
            from .device import bench_device
            bench_device(args.out, bundles)
        if "library" in sections:   # the exported C library per core (docs/library.md)
            from .library import bench_library
            bench_library(args.out, bundles.get("sst2") or Path("build/sst2/bundle"))
        if "robustness" in sections:
            from .attack import robustness_bench
            robustness_bench(bundles, args.out)
        if "robust" in sections:   # the *_robust recipes (docs/robustness.md)
            from .robust import bench_robust
            bench_robust(args.out, recipes, reuse=args.reuse)
        if "baselines" in sections:
            from .baselines import bench_baselines, bench_baselines_device
            bench_baselines(args.out, recipes, students=bundles, reuse=args.reuse)
            bench_baselines_device(args.out, recipes, students=bundles)
        if "ablation" in sections:
            bench_ablation(args.out, [r for r in recipes if r in ABLATION_RECIPES])
        if "personalize" in sections:
            from .personalize import bench_personalize
            bench_personalize(args.out, args.personalize_bundle or bundles.get("sst2"))
        if "teach" in sections:
            from .teach import bench_teach
            path = args.teach_bundle or args.out / "bundles" / "clinc140"
            if not (path / "manifest.json").is_file():
                from mcutext.model.recipe import load_recipe
                from mcutext.train.pipeline import train
                progress.log(f"teach: training clinc140 into {path}")
                train(load_recipe("clinc140"), out=path)
            bench_teach(args.out, path)
    except McutextError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"results under {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
