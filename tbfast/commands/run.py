"""``tbfast run``: the whole TimeBalance recipe end to end.

With no arguments: generates the built-in synthetic dataset, prepares it and runs every stage on
the CPU with the ``synthetic_quick`` preset (the baseline and students for 3 seeds: under 10 minutes
on 2 cores; ``--preset synthetic_tiny`` is the longer demo), then writes OUT/report.md and
OUT/results.json and prints a one-screen summary. Re-running with the same OUT reuses finished stages.
"""

from __future__ import annotations

import argparse
import json
import os

from tbfast.argtypes import positive_int


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from tbfast.engine.cli_args import OVERRIDES, add_no_progress, add_overrides
    from tbfast.engine.config import DEMO_PRESET, list_presets

    parser.epilog = (
        "examples: tbfast run                      (built-in synthetic data, CPU)\n"
        "          tbfast run --data prepared/ucf101 --preset ucf101_r3d18 --fraction 0.05 --out runs/ucf"
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="PREPARED",
        help="prepared dataset [default: generate and prepare the built-in synthetic data]",
    )
    parser.add_argument("--out", default="runs/recipe", metavar="OUT", help="folder for every stage's run directory")
    parser.add_argument(
        "--preset",
        default=None,
        help=f"{', '.join(list_presets())} or a YAML file "
        f"[default: {DEMO_PRESET} without --data, ucf101_r3d18 with it]",
    )
    parser.add_argument(
        "--fraction",
        type=float,
        default=None,
        help="labeled fraction of the train split [default: the preset's recipe.fraction]",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        metavar="N",
        help="train the supervised-only baseline and the three students for N seeds "
        "(train.seed, +1, ...); the verdict comes from their means and a bootstrap over "
        "seeds and test videos [default: the preset's recipe.seeds, 3]; --seeds 1 is "
        "quicker but one seed is not evidence",
    )
    parser.add_argument(
        "--set",
        dest="set_items",
        action="append",
        metavar="SECTION.KEY=VALUE",
        default=[],
        help="override a config value for every stage, e.g. --set train.device=cpu (repeatable)",
    )
    g = parser.add_argument_group("overrides for every stage")
    add_overrides(
        g, "run", {k: OVERRIDES[k] for k in ("--device", "--precision", "--threads", "--seed")}, preset=DEMO_PRESET
    )
    add_no_progress(g)


def main(args: argparse.Namespace) -> int:
    from tbfast.engine.cli_args import overrides
    from tbfast.engine.metrics import log_line
    from tbfast.engine.recipe import render_summary, run_recipe

    results = run_recipe(
        args.out,
        data=args.data,
        preset=args.preset,
        fraction=args.fraction,
        overrides=overrides(args),
        log=log_line,
        seeds=args.seeds,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 reports
        return 0
    print(render_summary(results, args.out))
    sd = results.get("seeds")
    print(
        json.dumps(
            {
                "top1": results["top1"],
                **({"top1_mean": sd["mean"], "top1_std": sd["std"], "verdict": sd["verdict"]} if sd else {}),
                "total_seconds": results["total_seconds"],
                "report": f"{args.out}/report.md",
            }
        )
    )
    return 0
