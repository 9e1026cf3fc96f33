"""`tbfast bench all`: the loader, losses and step benchmarks and the `tbfast run` recipe in one go.

Each part runs as its own `tbfast` process (so one part's threads, memory or failure cannot
disturb another's figures); their JSON files are gathered into OUT/results.json, OUT/RESULTS.md
(tables: clips/s per stage and configuration, speed-ups, the recipe's four accuracies, the
machine) and OUT/speedups.png. A part that fails is reported as failed, the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tbfast_benchmarks.common import machine_info, write_json

PARTS = ("loader", "losses", "step", "shared", "recipe")


def add_arguments(p: argparse.ArgumentParser, command: str = "bench all") -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="folder for every part's JSON and the summary")
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes everywhere (checks that every part runs; figures mean little)"
    )
    p.add_argument("--skip", nargs="+", choices=PARTS, default=[], help="parts to leave out")
    p.add_argument(
        "--data",
        default=None,
        metavar="PREPARED",
        help="prepared dataset for the loader benchmark (default: a synthetic one at 128 px, made in DIR)",
    )
    p.add_argument(
        "--step-backbone",
        choices=["tiny", "r3d18", "r50"],
        default="r3d18",
        help="backbone of the step benchmark (quick: tiny)",
    )
    p.add_argument("--recipe-args", default="", help='extra arguments for `tbfast run`, e.g. "--set train.epochs=1"')


def _tbfast(args: list[str], log: Path) -> tuple[int, float]:
    """Run `python -m tbfast ARGS`, echo and log its output; returns (exit status, seconds)."""
    cmd = [sys.executable, "-m", "tbfast", *args]
    print("$ tbfast " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write("$ tbfast " + " ".join(args) + "\n")
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            fh.write(line)
        rc = proc.wait()
    return rc, time.perf_counter() - t0


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bench_all.log"
    log.write_text("")
    status: dict[str, Any] = {}
    res: dict[str, Any] = {
        "benchmark": "all",
        "quick": args.quick,
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "status": status,
    }

    if "loader" not in args.skip:
        data = args.data
        ok = True
        if data is None:
            src, data = out / "loader_src", out / "loader_prepared"
            # full: 170x128 (UCF101's 320x240 at short side 128) and 150-230 frames, around UCF101's
            # mean length (7.2 s at 25 fps = 180 frames): how long a video is decides what the
            # reference-style loader, which decodes all of it, pays
            size, n, lengths = ("64x48", "2", ("80", "120")) if args.quick else ("170x128", "6", ("150", "230"))
            rc1, _ = _tbfast(
                [
                    "data",
                    "synth",
                    str(src),
                    "--classes",
                    "4",
                    "--videos-per-class",
                    n,
                    "--size",
                    size,
                    "--frames",
                    *lengths,
                    "--force",
                ],
                log,
            )
            rc2, _ = _tbfast(
                [
                    "data",
                    "prep",
                    str(src),
                    str(data),
                    "--format",
                    "ucf101",
                    "--short-side",
                    "48" if args.quick else "128",
                    "--no-progress",
                ],
                log,
            )
            ok = rc1 == 0 and rc2 == 0
            res["loader_data"] = (
                f"24 synthetic videos (`tbfast data synth`, 4 classes x 6) of {size} px and "
                f"{lengths[0]}-{lengths[1]} frames, prepared as VP9 (GOP 16) by `tbfast data prep`"
                if not args.quick
                else "quick: 8 tiny synthetic videos"
            )
        else:
            res["loader_data"] = f"`{data}`"
        if ok:
            res["loader"] = {}
            modes = ["ssl"] if args.quick else ["ssl", "train"]
            for mode in modes:
                extra = ["--videos", "8", "--batch-size", "2", "--size", "32"] if args.quick else ["--videos", "96"]
                f = out / f"loader_{mode}.json"
                peers = (
                    [
                        "--loaders",
                        "dali,host-torchcodec,host-torchcodec-crop,host-torchcodec-uint8,host-torchcodec-decode,"
                        "host-pyav,graph-torchcodec,decode,perclip,reference,torchcodec,torchcodec-tv,torchcodec-crop,"
                        "torchcodec-uint8,torchcodec-decode,decord,decord-tv,decord-decode",
                    ]
                    if not args.quick
                    else []
                )
                rc, sec = _tbfast(["bench", "loader", str(data), "--mode", mode, *extra, *peers, "--json", str(f)], log)
                status[f"loader_{mode}"] = {"rc": rc, "seconds": round(sec, 1)}
                res["loader"][mode] = _read(f)
        else:
            status["loader"] = {"rc": 1, "error": "could not make the loader benchmark's dataset (see bench_all.log)"}

    if "losses" not in args.skip:
        f = out / "losses.json"
        rc, sec = _tbfast(["bench", "losses", *(["--quick"] if args.quick else []), "--json", str(f)], log)
        status["losses"] = {"rc": rc, "seconds": round(sec, 1)}
        res["losses"] = _read(f)

    if "step" not in args.skip:
        res["step"] = {}
        backbones = ["tiny"] if args.quick else sorted({args.step_backbone, "tiny"}, key=["tiny", "r3d18", "r50"].index)
        for bb in backbones:
            f = out / f"step_{bb}.json"
            extra = ["--quick", "--configs", "fp32", "bf16+cl+guard"] if args.quick else []
            rc, sec = _tbfast(["bench", "step", "--backbone", bb, *extra, "--json", str(f)], log)
            status[f"step_{bb}"] = {"rc": rc, "seconds": round(sec, 1)}
            res["step"][bb] = _read(f)

    if "shared" not in args.skip:
        f = out / "shared.json"
        rc, sec = _tbfast(
            [
                "bench",
                "shared",
                "--work",
                str(out / "shared"),
                "--json",
                str(f),
                *(["--steps", "2", "--repeats", "1"] if args.quick else []),
            ],
            log,
        )
        status["shared"] = {"rc": rc, "seconds": round(sec, 1)}
        res["shared"] = _read(f)

    if "recipe" not in args.skip:
        run_dir = out / "recipe"
        extra = args.recipe_args.split() if args.recipe_args else []
        if args.quick and not extra:
            extra = ["--set", "train.max_steps=2"]
        rc, sec = _tbfast(["run", "--out", str(run_dir), "--no-progress", *extra], log)
        status["recipe"] = {"rc": rc, "seconds": round(sec, 1)}
        res["recipe"] = _read(run_dir / "results.json")

    write_json(out / "results.json", res)
    (out / "RESULTS.md").write_text(render_markdown(res))
    chart(res, out / "speedups.png")
    return res


# --------------------------------------------------------------------------- report


def _f(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "**NO**"
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        return f"{v:.{nd}f}" if 0.01 <= abs(v) < 1e5 or v == 0 else f"{v:.1e}"
    return str(v)


def render_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# tbfast benchmark results",
        "",
        f"Made by `tbfast bench all{' --quick' if res.get('quick') else ''}` on {res['date']}.",
        "",
        f"**Machine**: {m.get('cpu')}, {m.get('cores')} cores"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
        + f"; Python {m.get('python')}, torch {m.get('torch')}, DALI {m.get('dali')}, PyAV {m.get('pyav')}, Triton {m.get('triton')}.",
        "",
    ]
    for name, st in res["status"].items():
        if st.get("rc"):
            lines += [f"> part `{name}` FAILED (exit {st.get('rc')}): {st.get('error', 'see bench_all.log')}", ""]

    if res.get("loader"):
        lines += [
            f"Loader data: {res.get('loader_data', '?')}. Same plans (frames, crops, flips, colour, erase) in all loaders.",
            "",
        ]
    for mode, r in (res.get("loader") or {}).items():
        if not r:
            continue
        from tbfast_benchmarks.loader import WORK_LABELS, work_of
        from tbfast_benchmarks.loader import labels as loader_labels

        labels = loader_labels()
        lines += [
            f"## Data loading, mode `{mode}` ({r['device']}, {r['workers']} workers/threads, "
            f"{r['size']} px, batch {r['batch_size']}, {r['videos_timed']} videos, "
            f"{r['planned_frames_per_video']} decoded frames per video)",
            "",
            "| loader | work | videos/s | clips/s | frames/s | CPU ms/video |",
            "|---|---|---|---|---|---|",
        ]
        for name, x in r["results"].items():
            lines.append(
                f"| {labels.get(name, name)} | {work_of(name)} | {_f(x['videos_per_s'])} "
                f"| {_f(x['clips_per_s'], 1) if x['clips_per_s'] else '-'} | {_f(x['frames_per_s'], 0)} "
                f"| {_f(x['cpu_ms_per_video'], 1)} |"
            )
        if r.get("by_work"):
            lines += [
                "",
                "| work | tbfast (best) | best peer | × videos/s | × CPU ms/video |",
                "|---|---|---|---|---|",
            ]
            for work, c in r["by_work"].items():
                lines.append(
                    f"| {WORK_LABELS[work]} | {labels.get(c['tbfast'], c['tbfast'])} | {labels.get(c['peer'], c['peer'])} "
                    f"| {_f(c['videos_per_s_ratio'])} | {_f(c['cpu_ratio'])} |"
                )
        if r.get("floor"):
            f = r["floor"]
            lines += [
                "",
                f"Floor: the full plan ({labels.get(f['full'], f['full'])}) costs {_f(f['ratio'])}× the CPU time "
                f"per video of the fastest decode only ({labels.get(f['decode'], f['decode'])}).",
            ]
        for name, why in (r.get("skipped") or {}).items():
            lines.append(f"- skipped {name}: {why}")
        lines.append("")

    losses = res.get("losses")
    if losses:
        lines += [
            f"## Losses ({losses['device']}, forward + backward, median of {losses['iters']} calls, d={losses['dim']})",
            "",
            "| loss | B | implementation | ms | peak MiB | speed-up vs reference |",
            "|---|---|---|---|---|---|",
        ]
        for r in losses["results"]:
            lines.append(
                f"| {r['loss']} | {r['batch']} | {r['impl']} | {_f(r['ms_median'])} | {_f(r.get('peak_mib'), 1)} | {_f(r.get('speedup'))} |"
            )
        lines.append("")

    for bb, r in (res.get("step") or {}).items():
        if not r:
            continue
        shape = "x".join(map(str, r["clip_shape"][1:]))
        variant = f" ({r['variant']})" if r.get("variant") else ""
        lines += [
            f"## Training step: {bb}{variant}, clips {shape}, batch {r['batch']}, {r['device']}",
            "",
            "| configuration | clips/s | speed-up vs fp32 | peak MiB | gradients match fp32 | max rel. error |",
            "|---|---|---|---|---|---|",
        ]
        for c in r["configs"]:
            sp = c["counted_speedup"]
            lines.append(
                f"| {c['config']} | {_f(c['clips_per_s'])} | {_f(sp) + 'x' if sp else '- (wrong gradients)' if not c['grad_ok'] else '-'} "
                f"| {_f(c['peak_mem_mb'], 0)} | {_f(c['grad_ok'])} | {_f(c['grad_rel_err'])} |"
            )
        if r.get("best_correct"):
            lines += [
                "",
                f"Fastest configuration with correct gradients: **{r['best_correct']}**, "
                f"{_f(r['best_correct_speedup'])}x fp32 contiguous.",
            ]
        st = r.get("student")
        if st:
            lines += [
                "",
                f"Student step ({st['labeled']} labeled + {st['unlabeled']} unlabeled clips of {st['frames']} frames, "
                "two frozen teachers):",
                "",
                "| teachers | clips/s | teachers' share of step time |",
                "|---|---|---|",
            ]
            for k, v in st.items():
                if k.startswith("teachers_"):
                    lines.append(
                        f"| {k.split('_', 1)[1]} inference | {_f(v['clips_per_s'])} | {100 * v['teacher_share']:.0f}% |"
                    )
        lines.append("")

    sh = (res.get("shared") or {}).get("results")
    if sh:
        steps = next(iter(sh.values()))["steps_per_model"]
        lines += [
            f"## One data pass for several models (`tbfast bench shared`, synthetic_tiny, {steps} steps per model)",
            "",
            "| group | separate s | one pass s | speed-up | videos decoded | teacher forwards | "
            "decode share | if compute 10x faster* | decode-bound* |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for g, r in sh.items():
            tf = r.get("teacher_forwards")
            forwards = f"{tf['separate']} -> {tf['shared']}" if tf else "-"
            gpu = r["computed_speedup_if_compute_faster"]
            lines.append(
                f"| {g} ({', '.join(r['models'])}) | {_f(r['separate_seconds'], 1)} | "
                f"{_f(r['shared_seconds'], 1)} | {r['speedup']:.2f}x | {r['videos_decoded']['separate']} -> "
                f"{r['videos_decoded']['shared']} | {forwards} | {100 * r['decode_share_separate']:.0f}% | "
                f"{gpu['10x']:.2f}x | {gpu['decode-bound']:.2f}x |"
            )
        lines += ["", "\\* computed from the measured decode time (not measured on a GPU).", ""]

    rec = res.get("recipe")
    if rec:
        lines += [
            f"## The recipe (`tbfast run`, preset {rec.get('preset')}, {rec.get('fraction')} labeled, "
            f"{rec.get('test_videos')} test videos)",
            "",
        ]
        if res.get("recipe_note"):  # set by hand when the recipe part comes from a later run
            lines += [res["recipe_note"], ""]
        ci = rec.get("top1_ci95") or {}
        lines += ["| model | video top-1 % | 95 % interval (test videos) |", "|---|---|---|"]
        for k, v in (rec.get("top1_all") or rec.get("top1", {})).items():
            iv = f"{ci[k][0]:.1f}–{ci[k][1]:.1f}" if k in ci else "-"
            lines.append(f"| {k} | {_f(v)} | {iv} |")
        pw = rec.get("timebalance_paired") or {}
        if pw:
            lines += [
                "",
                "TimeBalance against each model on the same test videos (exact McNemar): "
                + "; ".join(
                    f"{k} {v['only_timebalance']} vs {v['only_other']} videos, p = {v['p']:.3f} ({v['verdict']})"
                    for k, v in pw.items()
                )
                + ".",
            ]
        sd = rec.get("seeds")
        if sd:
            lines += [
                "",
                f"Over {len(sd['seeds'])} seeds, mean ± std: "
                + "; ".join(f"{k} {sd['mean'][k]:.2f} ± {sd['std'][k]:.2f}" for k in sd["mean"])
                + ".",
            ]
            if sd.get("verdict"):
                lines += ["", f"**Verdict.** {sd['verdict']}"]
        checks = rec.get("checks") or {}
        if checks:
            lines.append("")
        for k, v in checks.items():
            lines.append(f"- {k.replace('_', ' ')}: **{v}**")
        seconds = rec.get("seconds") or {}
        cps = rec.get("clips_per_s") or {}
        if seconds or cps:
            lines += ["", "| stage | wall s | clips/s |", "|---|---|---|"]
            for k in dict.fromkeys([*seconds, *cps]):
                lines.append(f"| {k} | {_f(seconds.get(k), 1)} | {_f(cps.get(k), 1)} |")
        if rec.get("total_seconds") is not None:
            lines += ["", f"Total wall time: {rec['total_seconds']:.0f} s."]
        lines.append("")
    return "\n".join(lines) + "\n"


def chart(res: dict[str, Any], path: Path) -> None:
    """Bar chart of the headline speed-ups (only configurations with correct gradients count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars: list[tuple[str, float]] = []
    for mode, r in (res.get("loader") or {}).items():
        for other in ("reference", "perclip"):
            v = (r or {}).get("ratios", {}).get(f"dali_over_{other}")
            if v:
                bars.append((f"loader {mode}:\nDALI / {other}", v))
        full = ((r or {}).get("by_work") or {}).get("full")
        if full:
            bars.append((f"loader {mode}:\nhost path /\nbest peer", full["videos_per_s_ratio"]))
    for r in (res.get("losses") or {}).get("results", []):
        if r["loss"] == "ssl" and r["impl"] != "reference" and r.get("speedup"):
            bars.append((f"SSL loss B={r['batch']}:\n{r['impl']} / ref", r["speedup"]))
    for bb, r in (res.get("step") or {}).items():
        if r and r.get("best_correct_speedup"):
            config = r["best_correct"].replace("+compile", "\n+compile")
            bars.append((f"{bb} step:\n{config}\n/ fp32", r["best_correct_speedup"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(bars)), 4.2))
    if bars:
        names, vals = zip(*bars)
        ax.bar(range(len(vals)), vals, color="tab:blue")
        ax.set_xticks(range(len(vals)), names, fontsize=7)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.1f}x", ha="center", va="bottom", fontsize=8)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("speed-up (x)")
    m = res["machine"]
    ax.set_title(f"tbfast speed-ups on {m.get('gpu') or m.get('cpu')} ({m.get('cores')} cores)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    res = run(args)
    print(f"wrote {Path(args.out) / 'RESULTS.md'}, results.json, speedups.png")
    failed = [k for k, v in res["status"].items() if v.get("rc")]
    if failed:
        print("failed parts: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0
