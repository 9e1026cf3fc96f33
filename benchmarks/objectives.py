"""`tbfast bench objectives`: the recipe under each self-supervised objective variant.

Runs `tbfast run` four times, once per combination of the loss reduction (``reference``: the
public code's sums; ``mean``) and the BatchNorm statistics (per clip group as the reference's
separate calls; one set over the whole step, "mixed"), each in OUT/<reduction>_<bn>/ (a folder
that already holds a finished run is reused, an interrupted one resumed). Writes OUT/objectives.md
(the four models' video top-1 per variant, the teachers', wall time), OUT/objectives.json and
OUT/ssl_curves.png (the self-supervised losses per epoch: L_I of the invariant teacher, L_D1 and
L_D2 of the distinctive one, each in its reduction's own units).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from tbfast_benchmarks.all import _read, _tbfast
from tbfast_benchmarks.common import machine_info, write_json

VARIANTS = {  # name: (loss.reduction, model.group_bn)
    "reference_grouped": ("reference", True),
    "reference_mixed": ("reference", False),
    "mean_grouped": ("mean", True),
    "mean_mixed": ("mean", False),
}
MODELS = (
    "supervised",
    "student_invariant",
    "student_distinctive",
    "timebalance",
    "teacher_invariant",
    "teacher_distinctive",
)


def add_arguments(p: argparse.ArgumentParser, command: str = "bench objectives") -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the four runs and the summary")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="variants to run")
    p.add_argument("--recipe-args", default="", help='extra arguments for every `tbfast run`, e.g. "--seed 1"')
    p.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: gather the finished runs already in DIR/<variant>/ (e.g. made by "
        "`tbfast run --out DIR/<variant> --set ...` by hand) into the table and the plot",
    )


def _epochs(run_dir: Path, terms: tuple[str, ...]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {t: [] for t in terms}
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "epoch":
            for t in terms:
                if t in rec:
                    out[t].append(rec[t])
    return out


def _read_yaml(path: Path) -> dict | None:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, ValueError):
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "objectives.log"
    res: dict[str, Any] = {"benchmark": "objectives", "machine": machine_info(), "variants": {}}
    for name in args.variants:
        reduction, grouped = VARIANTS[name]
        run_dir = out / name
        if args.collect:
            rc, sec = (0 if (run_dir / "results.json").is_file() else 1), 0.0
        else:
            rc, sec = _tbfast(
                [
                    "run",
                    "--out",
                    str(run_dir),
                    "--no-progress",
                    "--set",
                    f"loss.reduction={reduction}",
                    "--set",
                    f"model.group_bn={str(grouped).lower()}",
                    *shlex.split(args.recipe_args),
                ],
                log,
            )
        r = _read(run_dir / "results.json") or {}
        cfg = _read_yaml(run_dir / "invariant" / "config.yaml")
        if cfg and ((cfg.get("loss") or {}).get("reduction"), (cfg.get("model") or {}).get("group_bn")) != (
            reduction,
            grouped,
        ):
            raise SystemExit(
                f"{run_dir} was not trained as {name} (its invariant stage has loss.reduction="
                f"{cfg['loss'].get('reduction')}, model.group_bn={cfg['model'].get('group_bn')})"
            )
        res["variants"][name] = {
            "reduction": reduction,
            "group_bn": grouped,
            "rc": rc,
            "seconds": r.get("total_seconds", sec),
            "top1": {k: r.get("top1_all", {}).get(k) for k in MODELS},
            "test_videos": r.get("test_videos"),
            "checks": r.get("checks"),
            "ssl_batch": (cfg or {}).get("data", {}).get("batch_size"),
            "curves": {
                "invariant": _epochs(run_dir / "invariant", ("loss", "L_I")),
                "distinctive": _epochs(run_dir / "distinctive", ("loss", "L_D1", "L_D2")),
            },
        }
    write_json(out / "objectives.json", res)
    (out / "objectives.md").write_text(render(res))
    try:
        plot(res, out / "ssl_curves.png")
    except Exception as exc:  # a plot is a convenience
        print(f"(plot skipped: {exc})")
    return res


LABELS = {
    "supervised": "supervised",
    "student_invariant": "s=1",
    "student_distinctive": "s=0",
    "timebalance": "TimeBalance",
    "teacher_invariant": "T_I",
    "teacher_distinctive": "T_D",
}


def render(res: dict[str, Any]) -> str:
    lines = [
        "| reduction | BatchNorm statistics | " + " | ".join(LABELS.values()) + " | wall s |",
        "|---|---|" + "---|" * (len(LABELS) + 1),
    ]
    for v in res["variants"].values():
        cells = [f"{v['top1'][k]:.2f}" if v["top1"].get(k) is not None else "-" for k in LABELS]
        bn = "per clip group" if v["group_bn"] else "one set (mixed)"
        lines.append(f"| {v['reduction']} | {bn} | " + " | ".join(cells) + f" | {v['seconds']:.0f} |")
    videos = next((v["test_videos"] for v in res["variants"].values() if v.get("test_videos")), None)
    if videos:
        lines += ["", f"Video top-1 % on {videos} test videos (one video = {100 / videos:.2f} points)."]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("invariant", "L_I", "invariant teacher: L_I"),
        ("distinctive", "L_D1", "distinctive teacher: L_D1"),
        ("distinctive", "L_D2", "distinctive teacher: L_D2"),
    ]
    reductions = [r for r in ("reference", "mean") if any(v["reduction"] == r for v in res["variants"].values())]
    fig, axes = plt.subplots(len(reductions), 3, figsize=(12, 3.4 * len(reductions)), squeeze=False)
    for row, red in enumerate(reductions):
        for col, (stage, term, title) in enumerate(panels):
            ax = axes[row][col]
            for v in res["variants"].values():
                if v["reduction"] != red:
                    continue
                ys = v["curves"][stage].get(term) or []
                label = "per clip group" if v["group_bn"] else "one set (mixed)"
                ax.plot(range(1, len(ys) + 1), ys, marker="o", ms=3, label=label, ls="-" if v["group_bn"] else "--")
            b = next((v.get("ssl_batch") for v in res["variants"].values() if v["reduction"] == red), None)
            if b:  # the value of the term when every candidate is equally likely
                ax.axhline(_chance(term, red, int(b)), color="grey", ls=":", lw=1, label=f"chance (B={b})")
            ax.set_title(f"{title} ({red} reduction)", fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel("epoch mean of the term")
            ax.legend(title="BatchNorm statistics", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _chance(term: str, reduction: str, b: int) -> float:
    import math

    from tbfast.losses import reduction_scales

    s_short, s_ll, s_gl = reduction_scales(reduction, b)
    if term == "L_I":  # NT-Xent of B pairs: 2B-1 candidates per anchor, global pair + local part
        return math.log(2 * b - 1) * (1 + s_short)
    if term == "L_D1":  # per video, 4 pairs: 7 candidates
        return math.log(7) * s_ll
    return 2 * math.log(4) * s_gl  # rows and columns of 4x4 matrices


def report(res: dict[str, Any]) -> None:
    print(render(res))


def main(args: argparse.Namespace) -> int:
    res = run(args)
    report(res)
    return 0 if all(v["rc"] == 0 for v in res["variants"].values()) else 1
