"""`tbfast bench machines`: what is bit-identical across CPU kinds and thread counts, and what is not.

Trains the same short stage (the supervised-only baseline of the built-in demo, ``--steps`` steps
from scratch, fp32 on the CPU) and evaluates it on the test videos once per "kind" of machine, each
in its own process, and compares every kind with the first ("native"):

- ``native`` / ``native-again``: this CPU, ``--threads`` threads, twice (expected: identical bytes);
- ``1-thread``: this CPU with one torch thread (``OMP_NUM_THREADS=1``; oneDNN and ATen may split
  their reductions differently);
- ``avx2``: the kernels limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``), a
  different kind only where this CPU has AVX-512;
- ``avx``: the kernels limited to AVX without AVX2/FMA (``ONEDNN_MAX_CPU_ISA=AVX
  ATEN_CPU_CAPABILITY=default``), an older CPU kind.

Per kind: the instruction set torch reports, whether the checkpoint's weights are bit-identical
to native's, the largest weight difference, the first step whose loss differs and the largest
loss difference, the test top-1 and how many test videos' predictions differ. This is the
evidence behind the README's statement of what `tbfast run` reproduces exactly (same CPU kind and
thread count) and what only statistically (everything else).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tbfast.argtypes import output_file, positive_int
from tbfast_benchmarks.common import machine_info, print_table, write_json

KINDS: dict[str, tuple[dict[str, str], int | None, str]] = {  # name: (environment, threads or None, what)
    "native": ({}, None, "this CPU"),
    "native-again": ({}, None, "this CPU, a second process"),
    "1-thread": ({}, 1, "this CPU, one thread"),
    "avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}, None, "kernels limited to AVX2"),
    "avx": (
        {"ONEDNN_MAX_CPU_ISA": "AVX", "ATEN_CPU_CAPABILITY": "default"},
        None,
        "kernels limited to AVX (no AVX2/FMA)",
    ),
}


def add_arguments(p: argparse.ArgumentParser, command: str = "bench machines") -> None:
    p.add_argument(
        "--data",
        default=None,
        metavar="PREPARED",
        help="prepared dataset with the demo's labeled split [default: the built-in demo's data, generated in --work]",
    )
    p.add_argument("--work", default=None, metavar="DIR", help="folder for the runs [default: a temporary one]")
    p.add_argument("--steps", type=positive_int, default=40, help="training steps of the baseline per kind")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=2,
        help="torch (OpenMP) threads of every kind but 1-thread (OMP_NUM_THREADS)",
    )
    p.add_argument("--size", type=positive_int, default=None, help="crop side in pixels [default: the preset's]")
    p.add_argument("--batch-size", type=positive_int, default=None, help="videos per step [default: the preset's]")
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=list(KINDS),
        default=list(KINDS),
        help="kinds to run; the first is the one the others are compared with",
    )
    p.add_argument("--json", default=None, type=output_file, help="write the results here")


def _run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        rc = subprocess.run(
            cmd, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, stdout=fh, stderr=subprocess.STDOUT
        ).returncode
    if rc:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}); see {log}")


def _losses(run_dir: Path) -> list[float]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "step":
            out.append(float(rec["loss"]))
    return out


def _weights(run_dir: Path) -> dict[str, Any]:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")["model"]


def _digest(state: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tbfast_machines_"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "machines.log"
    if args.data:
        prepared = Path(args.data)
    else:
        from tbfast_benchmarks.shared import demo_data

        prepared = demo_data(work / "demo")
    from tbfast.engine.config import resolve

    from tbfast.data.splits import split_names

    base = resolve("run", "synthetic_tiny", {})
    labeled = split_names(base.recipe.fraction, base.recipe.split_seed)[0]
    if not (prepared / "splits" / labeled).is_file():
        raise SystemExit(
            f"{prepared}/splits/{labeled} is missing: make it with "
            f"`tbfast data splits {prepared} --fraction {base.recipe.fraction}`"
        )
    res: dict[str, Any] = {
        "benchmark": "machines",
        "machine": machine_info(),
        "steps": args.steps,
        "threads": args.threads,
        "kinds": {},
    }
    ref: dict[str, Any] = {}
    for name in args.kinds:
        env, threads, what = KINDS[name]
        threads = threads or args.threads
        env = {**env, "OMP_NUM_THREADS": str(threads)}  # torch's intra-op threads, read at start-up
        d = work / name
        t0 = time.perf_counter()
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import torch; print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())",
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        cap, torch_threads = probe.stdout.split()
        common = [
            "--preset",
            "synthetic_tiny",
            "--device",
            "cpu",
            "--threads",
            str(threads),
            "--no-progress",
            *(["--set", f"data.size={args.size}"] if args.size else []),
            *(["--set", f"data.batch_size={args.batch_size}"] if args.batch_size else []),
        ]
        _run(
            [
                sys.executable,
                "-m",
                "tbfast",
                "train",
                "supervised",
                "--data",
                str(prepared),
                "--labeled",
                labeled,
                "--out",
                str(d),
                "--max-steps",
                str(args.steps),
                "--overwrite",
                "--set",
                "train.log_every=1",
                *common,
            ],
            env,
            log,
        )
        _run(
            [
                sys.executable,
                "-m",
                "tbfast",
                "eval",
                "--checkpoint",
                str(d / "checkpoints" / "last.pt"),
                "--data",
                str(prepared),
                "--json",
                str(d / "eval.json"),
                *common,
            ],
            env,
            log,
        )
        ev = json.loads((d / "eval.json").read_text())
        w, losses = _weights(d), _losses(d)
        preds = {int(i): int(p) for i, _, p in ev["predictions"]}
        row = {
            "what": what,
            "env": env,
            "threads_used": int(torch_threads),
            "cpu_capability": cap,
            "weights": _digest(w),
            "final_loss": losses[-1],
            "video_top1": round(100 * ev["video_top1"], 2),
            "videos": ev["videos"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if not ref:
            ref = {"name": name, "w": w, "losses": losses, "preds": preds}
        else:
            diff = max(float((w[k].float() - ref["w"][k].float()).abs().max()) for k in w)
            first = next((i + 1 for i, (a, b) in enumerate(zip(losses, ref["losses"])) if a != b), None)
            row.update(
                identical=row["weights"] == _digest(ref["w"]),
                max_weight_diff=diff,
                first_step_loss_differs=first,
                max_loss_diff=max(abs(a - b) for a, b in zip(losses, ref["losses"])),
                predictions_differ=sum(preds[i] != ref["preds"].get(i) for i in preds),
            )
        res["kinds"][name] = row
        print(f"{name}: {cap}, weights {row['weights']}, top-1 {row['video_top1']}", flush=True)
    res["reference"] = ref.get("name")
    res["torch"] = torch.__version__
    return res


def render(res: dict[str, Any]) -> str:
    ref = res["reference"]
    lines = [
        f"Supervised-only baseline of the demo, {res['steps']} steps from scratch, fp32, then evaluated on "
        f"the test videos; each kind compared with `{ref}`:",
        "",
        "| kind | instruction set | threads | weights identical | largest weight difference | "
        "first step whose loss differs | largest loss difference | test top-1 % | test predictions that differ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["kinds"].items():
        if name == ref:
            lines.append(
                f"| {name} | {r['cpu_capability']} | {r['threads_used']} | (reference) | - | - | - | "
                f"{r['video_top1']:.2f} | - |"
            )
            continue
        lines.append(
            f"| {name} | {r['cpu_capability']} | {r['threads_used']} | {'yes' if r['identical'] else 'no'} | "
            f"{r['max_weight_diff']:.2e} | {r['first_step_loss_differs'] or '-'} | {r['max_loss_diff']:.2e} | "
            f"{r['video_top1']:.2f} | {r['predictions_differ']} of {r['videos']} |"
        )
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    res = run(args)
    print_table(
        "bench machines",
        ["kind", "ISA", "threads", "identical", "max |dw|", "top-1", "preds differ"],
        [
            [
                n,
                r["cpu_capability"],
                r["threads_used"],
                r.get("identical", "ref"),
                f"{r.get('max_weight_diff', 0):.1e}",
                r["video_top1"],
                r.get("predictions_differ", "-"),
            ]
            for n, r in res["kinds"].items()
        ],
    )
    print(render(res))
    write_json(args.json, res)
    return 0
