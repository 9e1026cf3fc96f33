"""`tbfast bench teachers`: can TimeBalance gain on this data? The teachers' side of the question.

A student distilled with the similarity score s can only beat the single-teacher students where
its target, the teachers' mixture s·p_I + (1 − s)·p_D, beats the better teacher. That needs no
student training: from a finished `tbfast run` directory (its self-supervised models, prepared data
and similarity scores), this fine-tunes both teachers at each ``--fractions`` label fraction (one
data pass per fraction, ``--epochs`` epochs), evaluates them on the test videos with their
probabilities, and reports the recipe's mechanism figures (tbfast/engine/analysis.py): the teachers'
top-1, per-class T_I − T_D against the class's mean s and their correlation, and the mixture's top-1
with w = s, 1 − s, 0.5, 1, 0 and s shuffled over the videos (with the permutation p-value).

Used to calibrate the built-in demo (docs/TRAINING.md): a setting worth a full `tbfast run --seeds 3`
is one where the mixture by s clearly beats both teachers and s shuffled.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

from tbfast.argtypes import output_file, positive_int
from tbfast_benchmarks.common import machine_info, print_table, write_json


def add_arguments(p: argparse.ArgumentParser, command: str = "bench teachers") -> None:
    p.add_argument(
        "--run",
        required=True,
        metavar="RUN",
        help="a `tbfast run` output folder (invariant/, distinctive/, similarity.csv; its data)",
    )
    p.add_argument("--data", default=None, metavar="PREPARED", help="prepared dataset [default: RUN/data/prepared]")
    p.add_argument(
        "--preset",
        default=None,
        help="preset of the fine-tuning and evaluation settings [default: the run's, from RUN/results.json]",
    )
    p.add_argument("--fractions", nargs="+", type=float, default=[0.5], help="labeled fractions to try")
    p.add_argument("--epochs", type=positive_int, default=None, help="fine-tuning epochs [default: the preset's]")
    p.add_argument("--batch-size", type=positive_int, default=None, help="videos per step [default: the preset's]")
    p.add_argument(
        "--work", default=None, metavar="DIR", help="folder for the fine-tuned teachers [default: RUN/teachers]"
    )
    p.add_argument("--json", default=None, type=output_file, help="write the results here")


def _scores(run: Path, prepared: Path, preset: str, dist) -> dict[int, float]:
    """s of the test videos, normalised with the training set's range (made once, as `tbfast run` does)."""
    from tbfast.engine import stages
    from tbfast.engine.config import resolve

    test = run / "similarity_test.csv"
    if not test.is_file():
        cfg = resolve("similarity", preset, {"train": {"progress": False}})
        stages.compute_similarity(
            cfg,
            prepared,
            test,
            invariant=run / "invariant" / "checkpoints" / "last.pt",
            distinctive=run / "distinctive" / "checkpoints" / "last.pt",
            dist=dist,
            split="test",
            reference=run / "similarity.csv",
            log=lambda line: None,
        )
    with open(test, newline="") as f:
        return {int(r["index"]): float(r["score"]) for r in csv.DictReader(f)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from tbfast.data.splits import write_label_split
    from tbfast.engine import analysis, stages
    from tbfast.engine.config import resolve
    from tbfast.engine.distributed import Dist
    from tbfast.errors import UserError

    rd = Path(args.run)
    prepared = Path(args.data) if args.data else rd / "data" / "prepared"
    for need in (
        rd / "invariant" / "checkpoints" / "last.pt",
        rd / "distinctive" / "checkpoints" / "last.pt",
        rd / "similarity.csv",
        prepared / "manifest.jsonl",
    ):
        if not need.is_file():
            raise UserError(f"{need} is missing: --run takes a finished `tbfast run` folder (and --data its data)")
    if args.preset is None:  # the run's own preset (its SSL models' width and size)
        try:
            args.preset = json.loads((rd / "results.json").read_text())["preset"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{rd / 'results.json'} has no preset: give --preset (the one the run used)") from None
    work = Path(args.work) if args.work else rd / "teachers"
    dist = Dist(device=torch.device("cpu"))
    scores = _scores(rd, prepared, args.preset, dist)
    res: dict[str, Any] = {"benchmark": "teachers", "machine": machine_info(), "run": str(rd), "fractions": {}}

    def cfg(stage: str):
        ov: dict = {"train": {"progress": False, "device": "cpu"}}
        if args.epochs:
            ov["train"]["epochs"] = args.epochs
        if args.batch_size:
            ov["data"] = {"batch_size": args.batch_size}
        return resolve(stage, args.preset, ov)

    for frac in args.fractions:
        lab, _unl, _digest = write_label_split(prepared, frac, cfg("finetune").recipe.split_seed)
        out = work / f"fraction_{frac:g}"
        t0 = time.perf_counter()
        stages.train_pass(
            [
                lambda pool, _t, kind=kind, out=out, lab=lab: stages.classifier_member(
                    cfg("finetune"),
                    prepared,
                    out / kind,
                    dist=dist,
                    labeled=lab,
                    init=rd / kind / "checkpoints" / "last.pt",
                    resume="auto",
                    log=lambda line: None,
                    pool=pool,
                    name=kind,
                )
                for kind in ("invariant", "distinctive")
            ],
            log=lambda line: None,
        )
        seconds = time.perf_counter() - t0
        ev = {}
        for kind in ("invariant", "distinctive"):
            ecfg = cfg("eval")
            ev[kind] = stages.evaluate_checkpoint(
                ecfg,
                prepared,
                out / kind / "checkpoints" / "last.pt",
                dist=dist,
                keep_probs=True,
                log=lambda line: None,
            )
        m = analysis.mechanism(scores, ev["invariant"], ev["distinctive"])
        res["fractions"][f"{frac:g}"] = {
            "labeled_videos": sum(1 for line in Path(lab).read_text().splitlines() if line.strip()),
            "finetune_seconds": round(seconds, 1),
            "epochs": cfg("finetune").train.epochs,
            "teacher_invariant": round(100 * ev["invariant"]["video_top1"], 2),
            "teacher_distinctive": round(100 * ev["distinctive"]["video_top1"], 2),
            "mechanism": m,
        }
        print(
            f"fraction {frac:g}: T_I {res['fractions'][f'{frac:g}']['teacher_invariant']}, "
            f"T_D {res['fractions'][f'{frac:g}']['teacher_distinctive']}, mixture by s "
            f"{m.get('mixture_top1', {}).get('s')}",
            flush=True,
        )
    return res


def render(res: dict[str, Any]) -> str:
    lines = [
        "| labeled | T_I | T_D | class corr. (mean s, T_I − T_D) | mixture w = s | w = 0.5 | s shuffled | routing p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for frac, r in res["fractions"].items():
        m = r["mechanism"]
        mt = m.get("mixture_top1") or {}
        cc = m["class_corr_s_vs_TI_minus_TD"]["pearson"]
        lines.append(
            f"| {frac} ({r['labeled_videos']} videos) | {r['teacher_invariant']:.2f} | "
            f"{r['teacher_distinctive']:.2f} | {'-' if cc is None else f'{cc:+.2f}'} | "
            f"{mt.get('s', float('nan')):.2f} | {mt.get('0.5', float('nan')):.2f} | "
            f"{mt.get('s shuffled (mean)', float('nan')):.2f} | {m.get('mixture_permutation_p', '-')} |"
        )
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    res = run(args)
    print_table(
        "bench teachers",
        ["labeled", "T_I", "T_D", "mixture by s", "s shuffled", "routing p"],
        [
            [
                k,
                r["teacher_invariant"],
                r["teacher_distinctive"],
                (r["mechanism"].get("mixture_top1") or {}).get("s"),
                (r["mechanism"].get("mixture_top1") or {}).get("s shuffled (mean)"),
                r["mechanism"].get("mixture_permutation_p"),
            ]
            for k, r in res["fractions"].items()
        ],
    )
    print(render(res))
    write_json(args.json, res)
    print(
        json.dumps(
            {k: {"T_I": r["teacher_invariant"], "T_D": r["teacher_distinctive"]} for k, r in res["fractions"].items()}
        )
    )
    return 0
