"""`tbfast bench step`: training-step throughput per precision and memory layout, each next to
whether its weight gradients match fp32, plus the student step with its two frozen teachers and
the self-supervised step in its three BatchNorm modes (one set of statistics over the step,
per-clip-group statistics as 10 calls, or as one pass; METHOD.md §4).

Every configuration runs in a fresh process (so peak memory is its own) on synthetic tensors of
the preset's clip shape. A configuration whose gradients do not match fp32 (see ``tbfast.amp``:
CPU bf16 Conv3d on temporal depth 2) is reported as wrong and never counted as a speed-up.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any

from tbfast.argtypes import nonneg_int, output_file, positive_int
from tbfast_benchmarks.common import machine_info, median, print_table, time_calls, write_json

# backbone: (frames, size, cpu batch, cuda batch)
SHAPES = {
    "tiny": (16, 32, 16, 64),
    "r3d18": (16, 112, 4, 32),
    "r50": (8, 224, 2, 16),
}
NUM_CLASSES = 101
# self-supervised step: backbone -> (size, cpu batches, cuda batches); 10 clips of 16 frames per video
SSL_SHAPES = {
    "tiny": (32, (8, 40), (40, 128)),
    "r3d18": (64, (2, 4), (16, 40)),
    "r50": (64, (1, 2), (8, 16)),
}
SSL_MODES = ("mixed", "calls", "pass")

# name: (autocast dtype or None, channels_last, guard shallow convs)
CONFIGS: dict[str, tuple[str | None, bool, bool]] = {
    "fp32": (None, False, False),
    "fp32+cl": (None, True, False),
    "bf16": ("bfloat16", False, False),
    "bf16+cl": ("bfloat16", True, False),
    "bf16+cl+guard": ("bfloat16", True, True),  # CPU only: shallow convs in fp32 (tbfast.amp)
}


def add_arguments(p: argparse.ArgumentParser, command: str = "bench step") -> None:
    p.add_argument("--backbone", choices=sorted(SHAPES), default="r3d18")
    p.add_argument(
        "--variant",
        choices=["plain", "tclr"],
        default="plain",
        help="r3d18 layer4: torchvision's (temporal stride 2) or TCLR's (stride 1, dilation 2)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    p.add_argument(
        "--batch-size",
        dest="batch",
        type=positive_int,
        default=None,
        help="clips per step (default per backbone and device)",
    )
    p.add_argument(
        "--batch", dest="batch", type=positive_int, help=argparse.SUPPRESS
    )  # the old spelling, for a release
    p.add_argument("--frames", type=positive_int, default=None, help="clip length (default per backbone)")
    p.add_argument("--size", type=positive_int, default=None, help="crop size (default per backbone)")
    p.add_argument("--steps", type=positive_int, default=3, help="timed steps per configuration")
    p.add_argument("--warmup", type=nonneg_int, default=1, help="untimed steps per configuration")
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=None, help="default: all for the device")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile configuration")
    p.add_argument("--no-student", action="store_true", help="skip the student-step measurement")
    p.add_argument("--student-frames", type=positive_int, default=8, help="clip length of the student step")
    p.add_argument("--no-ssl", action="store_true", help="skip the self-supervised step (BatchNorm modes)")
    p.add_argument(
        "--ssl-batches",
        type=positive_int,
        nargs="+",
        default=None,
        help="videos per self-supervised step (10 clips each); default per backbone and device",
    )
    p.add_argument("--ssl-size", type=positive_int, default=None, help="crop size of the self-supervised step")
    p.add_argument("--quick", action="store_true", help="tiny shapes, one timed step: checks that it runs")
    p.add_argument("--json", default=None, type=output_file, help="write the results here")


def _build(backbone: str, variant: str, num_classes: int):
    import torch
    from torch import nn

    from tbfast.models import Classifier, build_backbone, pool_time

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            kwargs = {"tclr": variant == "tclr"} if backbone == "r3d18" else {}
            self.backbone = build_backbone(backbone, **kwargs)
            self.head = Classifier(self.backbone.feature_dim, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(pool_time(self.backbone(x)))

    return Net()


def _measure_config(job: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: one configuration's speed, peak memory and gradient check."""
    import resource

    import torch

    from tbfast.amp import BF16_GRAD_TOLERANCE, gradient_check, guard_cpu_bf16

    torch.manual_seed(0)
    dev = job["device"]
    dtype_name, cl, guard = CONFIGS[job["config"]]
    dtype = getattr(torch, dtype_name) if dtype_name else None
    model = _build(job["backbone"], job["variant"], NUM_CLASSES)
    if guard:
        guard_cpu_bf16(model)

    # gradient check first, on the real clip shape (small batch), against fp32 contiguous
    shape = (min(job["batch"], 2), 3, job["frames"], job["size"], job["size"])
    tol = BF16_GRAD_TOLERANCE if dtype is not None else 1e-3
    check = gradient_check(model, shape, device=dev, dtype=dtype, channels_last=cl, tolerance=tol)

    model = model.to(dev).train()
    if cl:
        model = model.to(memory_format=torch.channels_last_3d)
    x = torch.rand(job["batch"], 3, job["frames"], job["size"], job["size"], device=dev)
    if cl:
        x = x.to(memory_format=torch.channels_last_3d)
    y = torch.randint(0, NUM_CLASSES, (job["batch"],), device=dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=dev == "cuda")
    fwd = model
    compile_s = None
    if job.get("compile"):
        t0 = time.perf_counter()
        fwd = torch.compile(model)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(fwd(x).float(), y)
        loss.backward()
        opt.step()

    if job.get("compile"):
        step()  # compilation happens here
        compile_s = time.perf_counter() - t0
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = time_calls(step, device=dev, warmup=job["warmup"], iters=job["steps"])
    t = median(times)
    out = {
        "config": job["config"] + ("+compile" if job.get("compile") else ""),
        "step_s": t,
        "clips_per_s": job["batch"] / t,
        "grad_ok": check.ok,
        "grad_rel_err": check.max_rel_err,
        "grad_worst_param": check.worst,
        "compile_s": compile_s,
    }
    if dev == "cuda":
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS
    return out


def _measure_student(job: dict[str, Any]) -> dict[str, Any]:
    """Student step (labeled + unlabeled clips) with two frozen teachers; teachers' share of the step."""
    import torch

    torch.manual_seed(0)
    dev = job["device"]
    student = _build(job["backbone"], job["variant"], NUM_CLASSES).to(dev).train()
    teachers = [
        _build(job["backbone"], job["variant"], NUM_CLASSES).to(dev).eval().requires_grad_(False) for _ in range(2)
    ]
    student = student.to(memory_format=torch.channels_last_3d)
    teachers = [t.to(memory_format=torch.channels_last_3d) for t in teachers]
    b = job["batch"]
    x = torch.rand(2 * b, 3, job["student_frames"], job["size"], job["size"], device=dev).to(
        memory_format=torch.channels_last_3d
    )
    y = torch.randint(0, NUM_CLASSES, (b,), device=dev)
    s = torch.rand(2 * b, 1, device=dev)
    opt = torch.optim.Adam(student.parameters(), lr=1e-4, fused=dev == "cuda")
    student_dtype = torch.bfloat16 if dev == "cuda" else None  # fp32 is the correct CPU default
    results = {}
    for teacher_mode in ("fp32", "bf16"):
        tdtype = torch.bfloat16 if teacher_mode == "bf16" else None
        clock = {"teacher": 0.0}

        def step(tdtype=tdtype, clock=clock) -> None:
            from tbfast_benchmarks.common import sync

            t0 = time.perf_counter()
            with torch.no_grad(), torch.autocast(dev, dtype=tdtype or torch.float32, enabled=tdtype is not None):
                p_i = teachers[0](x).float().softmax(-1)
                p_d = teachers[1](x).float().softmax(-1)
            p_t = s * p_i + (1 - s) * p_d
            sync(dev)
            clock["teacher"] += time.perf_counter() - t0
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev, dtype=student_dtype or torch.float32, enabled=student_dtype is not None):
                logits = student(x).float()
            loss = torch.nn.functional.cross_entropy(logits[:b], y) + 50 * (logits.softmax(-1) - p_t).square().mean()
            loss.backward()
            opt.step()

        for _ in range(job["warmup"]):
            step()
        clock["teacher"] = 0.0
        times = time_calls(step, device=dev, warmup=0, iters=job["steps"])
        total = sum(times)
        results[f"teachers_{teacher_mode}"] = {
            "step_s": total / len(times),
            "clips_per_s": 2 * b / (total / len(times)),
            "teacher_share": clock["teacher"] / total,
        }
    return {"frames": job["student_frames"], "labeled": b, "unlabeled": b, **results}


def _measure_ssl(job: dict[str, Any]) -> dict[str, Any]:
    """Self-supervised step (combined objective, reference reductions, fused kernel) of B videos
    = 10B clips of 16 frames in each BatchNorm mode; ``calls`` and ``pass`` must give the same
    gradients (they compute the same numbers), ``mixed`` is the one-statistics pass."""
    import copy

    import torch

    from tbfast.engine.config import ModelConfig
    from tbfast.engine.nets import SSLNet
    from tbfast.kernels import fused_ssl_objective

    torch.manual_seed(0)
    dev, b, size = job["device"], job["batch"], job["size"]
    dtype = torch.bfloat16 if dev == "cuda" else None
    base = SSLNet(ModelConfig(backbone=job["backbone"])).to(dev).train().to(memory_format=torch.channels_last_3d)
    cl = torch.channels_last_3d
    long = torch.rand(2 * b, 3, 16, size, size, device=dev).to(memory_format=cl)
    short = torch.rand(8 * b, 3, 16, size, size, device=dev).to(memory_format=cl)
    nets = {m: copy.deepcopy(base) for m in SSL_MODES}
    opts = {m: torch.optim.Adam(nets[m].parameters(), lr=1e-4, fused=dev == "cuda") for m in SSL_MODES}

    def loss_of(mode: str):
        with torch.autocast(dev, dtype=dtype or torch.float32, enabled=dtype is not None):
            z_long, z_short, z_slices = nets[mode](long, short, slices=True, bn=mode)
        return fused_ssl_objective(z_long.float(), z_slices.float(), z_short.float(), reduction="reference")["loss"]

    def step(mode: str) -> None:
        opts[mode].zero_grad(set_to_none=True)
        loss_of(mode).backward()
        opts[mode].step()

    # same weights, same clips: gradients of the two grouped executions
    grads = {}
    for mode in ("calls", "pass"):
        net = copy.deepcopy(base)
        with torch.autocast(dev, dtype=dtype or torch.float32, enabled=dtype is not None):
            z_long, z_short, z_slices = net(long, short, slices=True, bn=mode)
        fused_ssl_objective(z_long.float(), z_slices.float(), z_short.float(), reduction="reference")["loss"].backward()
        grads[mode] = torch.cat([p.grad.double().flatten() for p in net.parameters()])
    grad_err = ((grads["pass"] - grads["calls"]).norm() / grads["calls"].norm()).item()
    times: dict[str, list[float]] = {m: [] for m in SSL_MODES}
    for _ in range(job["warmup"]):
        for m in SSL_MODES:
            step(m)
    for _ in range(job["steps"]):  # interleaved, so load changes hit every mode alike
        for m in SSL_MODES:
            times[m] += time_calls(lambda m=m: step(m), device=dev, warmup=0, iters=1)
    rows = {m: {"step_s": median(times[m]), "clips_per_s": 10 * b / median(times[m])} for m in SSL_MODES}
    fastest = max(("calls", "pass"), key=lambda m: rows[m]["clips_per_s"])
    return {
        "backbone": job["backbone"],
        "batch": b,
        "clips": 10 * b,
        "size": size,
        "precision": "bf16" if dtype else "fp32",
        "modes": rows,
        "grouped_grad_rel_err": grad_err,
        "grouped_grads_match": grad_err <= (1e-5 if dtype is None else 1e-2),
        "fastest_grouped": fastest,
    }


def _in_fresh_process(fn, job: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, (job,))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from tbfast.errors import UserError

        raise UserError("--device cuda asked for, but PyTorch sees no CUDA device; use --device cpu")
    frames, size, bcpu, bcuda = SHAPES[args.backbone]
    if args.quick:
        frames, size, bcpu, bcuda = 8, 32, 2, 4
    frames = args.frames or frames
    size = args.size or size
    batch = args.batch or (bcuda if device == "cuda" else bcpu)
    steps = 1 if args.quick else args.steps
    warmup = 1 if args.quick else args.warmup
    names = args.configs or [n for n in CONFIGS if device == "cpu" or not CONFIGS[n][2]]
    base = {
        "device": device,
        "backbone": args.backbone,
        "variant": args.variant,
        "frames": frames,
        "size": size,
        "batch": batch,
        "steps": steps,
        "warmup": warmup,
    }
    rows = []
    for name in names:
        print(f"[bench step] {args.backbone} {name} ...", flush=True)
        rows.append(_in_fresh_process(_measure_config, {**base, "config": name}))
    ref = next((r for r in rows if r["config"] == "fp32"), None)
    correct = [r for r in rows if r["grad_ok"]]
    best = max(correct, key=lambda r: r["clips_per_s"]) if correct else None
    if best is not None and not args.no_compile and not args.quick:
        print(f"[bench step] {args.backbone} {best['config']}+compile ...", flush=True)
        rows.append(_in_fresh_process(_measure_config, {**base, "config": best["config"], "compile": True}))
        if rows[-1]["grad_ok"] and rows[-1]["clips_per_s"] > best["clips_per_s"]:
            best = rows[-1]
    for r in rows:
        r["speedup_vs_fp32"] = (r["clips_per_s"] / ref["clips_per_s"]) if ref else None
        # a configuration with wrong gradients is no speed-up
        r["counted_speedup"] = r["speedup_vs_fp32"] if r["grad_ok"] else None
    student = None
    if not args.no_student:
        print(f"[bench step] {args.backbone} student step with two frozen teachers ...", flush=True)
        student = _in_fresh_process(
            _measure_student, {**base, "student_frames": args.student_frames, "batch": max(1, batch // 2)}
        )
    ssl = []
    if not args.no_ssl:
        ssize, cpu_b, cuda_b = SSL_SHAPES[args.backbone]
        if args.quick:
            ssize, cpu_b, cuda_b = 16, (2, 3), (2, 4)  # grouped BatchNorm needs 2 rows per head group
        for b in args.ssl_batches or (cuda_b if device == "cuda" else cpu_b):
            print(
                f"[bench step] {args.backbone} self-supervised step, {b} videos x 10 clips, BatchNorm modes ...",
                flush=True,
            )
            ssl.append(_in_fresh_process(_measure_ssl, {**base, "batch": b, "size": args.ssl_size or ssize}))
    return {
        "benchmark": "step",
        "machine": machine_info(),
        "backbone": args.backbone,
        "variant": args.variant if args.backbone == "r3d18" else None,
        "device": device,
        "clip_shape": [3, frames, size, size],
        "batch": batch,
        "steps": steps,
        "configs": rows,
        "best_correct": best["config"] if best else None,
        "best_correct_speedup": best["speedup_vs_fp32"] if best else None,
        "student": student,
        "ssl": ssl,
    }


def report(res: dict[str, Any]) -> None:
    print_table(
        f"training step: {res['backbone']} {'x'.join(map(str, res['clip_shape'][1:]))}, batch {res['batch']}, {res['device']}",
        ["config", "clips/s", "speed-up", "peak MB", "grads match fp32", "grad rel. err"],
        [
            [r["config"], r["clips_per_s"], r["counted_speedup"], r["peak_mem_mb"], r["grad_ok"], r["grad_rel_err"]]
            for r in res["configs"]
        ],
    )
    if res["best_correct"]:
        print(
            f"fastest configuration with correct gradients: {res['best_correct']} "
            f"({res['best_correct_speedup']:.2f}x fp32 contiguous)"
        )
    st = res.get("student")
    if st:
        print_table(
            f"student step: {st['labeled']}+{st['unlabeled']} clips of {st['frames']} frames, two frozen teachers",
            ["teachers", "clips/s", "step s", "teachers' share"],
            [
                [k.split("_")[1], v["clips_per_s"], v["step_s"], f"{100 * v['teacher_share']:.0f}%"]
                for k, v in st.items()
                if k.startswith("teachers_")
            ],
        )

    for r in res.get("ssl") or []:
        mixed = r["modes"]["mixed"]["clips_per_s"]
        print_table(
            f"self-supervised step: {r['backbone']}, {r['batch']} videos = {r['clips']} clips of 16x{r['size']}x{r['size']}, "
            f"{r['precision']}, {res['device']}",
            ["BatchNorm statistics", "clips/s", "vs mixed"],
            [
                ["one set over the step (mixed)", mixed, 1.0],
                [
                    "per clip group: 10 calls",
                    r["modes"]["calls"]["clips_per_s"],
                    r["modes"]["calls"]["clips_per_s"] / mixed,
                ],
                [
                    "per clip group: one pass",
                    r["modes"]["pass"]["clips_per_s"],
                    r["modes"]["pass"]["clips_per_s"] / mixed,
                ],
            ],
        )
        print(
            f"calls and pass gradients: rel. error {r['grouped_grad_rel_err']:.1e} "
            f"({'match' if r['grouped_grads_match'] else 'DIFFER'}); faster grouped execution: {r['fastest_grouped']}"
        )


def main(args: argparse.Namespace) -> int:
    res = run(args)
    report(res)
    write_json(args.json, res)
    return 0
