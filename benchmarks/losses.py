"""`tbfast bench losses`: reference vs fused self-supervised objective and student distillation.

Times forward + backward of ``ssl_objective`` (L_I + L_D1 + L_D2, all weights 1) with the
reference implementation (``tbfast.losses``: 57 NT-Xent evaluations for L_I, batched per-video
terms) and the fused ones (``tbfast.kernels``: one Gram matrix, grouped log-sum-exp), at the
reference batch (B=40 videos, d=128) and larger batches; also the student distillation loss
(softmax + teacher mix + L2/KL/JS) unfused vs fused. Peak memory: on CUDA the allocator's peak;
on the CPU the peak of live tensor bytes allocated during one call, from the profiler's
allocation trace (inputs excluded).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any, Callable

from tbfast.argtypes import nonneg_int, output_file, positive_int
from tbfast_benchmarks.common import machine_info, median, print_table, write_json


def add_arguments(p: argparse.ArgumentParser, command: str = "bench losses") -> None:
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the losses run")
    p.add_argument(
        "--batches",
        type=positive_int,
        nargs="+",
        default=None,
        help="videos per batch (default: 40 128 256 on cpu, 40 256 1024 on cuda)",
    )
    p.add_argument("--dim", type=positive_int, default=128, help="embedding dimension d")
    p.add_argument(
        "--impls",
        nargs="+",
        default=None,
        choices=["reference", "fused", "triton", "compiled"],
        help="default: reference fused (+ triton on cuda); 'compiled' runs torch.compile first",
    )
    p.add_argument("--iters", type=positive_int, default=20, help="timed calls per configuration")
    p.add_argument("--warmup", type=nonneg_int, default=3, help="untimed calls per configuration")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--classes", type=positive_int, default=101, help="classes for the distillation measurement")
    p.add_argument(
        "--reduction",
        choices=["reference", "mean"],
        default="reference",
        help="loss reductions (docs/METHOD.md §4); the engine's default is reference",
    )
    p.add_argument(
        "--quick", action="store_true", help="one small batch, few calls, no distillation memory: checks that it runs"
    )
    p.add_argument("--json", default=None, type=output_file, help="write the results here")


def _inputs(bsz: int, dim: int, device: str, seed: int = 0):
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)

    def unit(*shape):
        return F.normalize(torch.randn(*shape, dim, generator=g), dim=-1).to(device).requires_grad_()

    return unit(bsz, 2), unit(bsz, 2, 4), unit(bsz, 2, 4)  # z_long, z_long_slices, z_short


def _peak_mib(fn: Callable[[], Any], device: str) -> float:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ side logs start/stop lines to fd 2; keep the table readable."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _ssl_impls(names: list[str]) -> dict[str, Callable]:
    from tbfast.kernels import get_ssl_objective

    return {n: get_ssl_objective(n) for n in names}


def main(args: argparse.Namespace) -> int:
    import torch

    from tbfast.errors import UserError

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is visible; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = args.batches or ([8] if args.quick else ([40, 128, 256] if device == "cpu" else [40, 256, 1024]))
    iters, warmup = (3, 1) if args.quick else (args.iters, args.warmup)
    if args.impls and "triton" in args.impls and device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise UserError(
            "--impls triton on the CPU needs TRITON_INTERPRET=1 (slow, for checking only); use --device cuda"
        )
    names = args.impls or (["reference", "fused"] + (["triton"] if device == "cuda" else []))
    impls = _ssl_impls(names)

    rows: list[dict[str, Any]] = []
    for bsz in batches:
        z_long, z_slices, z_short = _inputs(bsz, args.dim, device)
        steps = {}
        for name, fn in impls.items():

            def step(fn=fn, z_long=z_long, z_slices=z_slices, z_short=z_short):
                out = fn(z_long, z_slices, z_short, reduction=args.reduction)
                out["loss"].backward()
                return out

            steps[name] = step
        rows += _measure("ssl", bsz, steps, device, iters, warmup, memory=True)

    rows += _bench_distill(device, args.classes, 8 if args.quick else 32, iters, warmup, memory=not args.quick)

    payload = {
        "benchmark": "losses",
        "device": device,
        "dim": args.dim,
        "iters": iters,
        "reduction": args.reduction,
        "machine": machine_info(),
        "results": rows,
    }
    print_table(
        f"bench losses ({device}, {torch.get_num_threads()} threads, forward+backward, median of {iters} calls)\n"
        f"ssl = L_I+L_D1+L_D2 ({args.reduction} reductions), d={args.dim}; distill = softmax+teacher mix+divergence, C={args.classes}",
        ["loss", "B", "impl", "ms (median)", "ms (min)", "peak MiB", "speed-up (median)", "speed-up (min)", "|Δ loss|"],
        [
            [
                r["loss"],
                r["batch"],
                r["impl"],
                r["ms_median"],
                r["ms_min"],
                r["peak_mib"],
                r["speedup"],
                r["speedup_min"],
                r["abs_diff_vs_reference"],
            ]
            for r in rows
        ],
    )
    write_json(args.json, payload)
    return 0


def _bench_distill(
    device: str, classes: int, bsz: int, iters: int, warmup: int, memory: bool = True
) -> list[dict[str, Any]]:
    import torch

    from tbfast.kernels import student_distill_loss
    from tbfast.losses import distill
    from tbfast.timebalance import mix_teachers

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(bsz, classes, generator=g).to(device).requires_grad_()
    p_inv = torch.softmax(torch.randn(bsz, classes, generator=g), -1).to(device)
    p_dis = torch.softmax(torch.randn(bsz, classes, generator=g), -1).to(device)
    s = torch.rand(bsz, generator=g).to(device)
    rows = []
    for kind in ("l2", "kl", "js"):
        steps = {}
        for name, fn in (
            ("reference", lambda kind=kind: distill(torch.softmax(logits, -1), mix_teachers(p_inv, p_dis, s), kind)),
            ("fused", lambda kind=kind: student_distill_loss(logits, p_inv, p_dis, s, kind)),
        ):

            def step(fn=fn):
                loss = fn()
                loss.backward()
                return {"loss": loss}

            steps[name] = step
        for r in _measure(f"distill-{kind}", bsz, steps, device, iters, warmup, memory=memory):
            r["classes"] = classes
            rows.append(r)
    return rows


def _measure(
    loss: str, bsz: int, steps: dict[str, Callable], device: str, iters: int, warmup: int, memory: bool
) -> list[dict[str, Any]]:
    """Time the implementations *interleaved* (one call of each per round), so that on a shared
    machine every implementation sees the same background load; speed-ups use medians and minima."""
    import time

    from tbfast_benchmarks.common import sync

    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {n: [] for n in steps}
    for _ in range(iters):
        for name, step in steps.items():
            sync(device)
            t0 = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    losses = {n: step()["loss"].item() for n, step in steps.items()}
    ref = "reference" if "reference" in steps else None
    rows = []
    for name in steps:
        ms, ms_min = median(times[name]) * 1e3, min(times[name]) * 1e3
        rows.append(
            {
                "loss": loss,
                "batch": bsz,
                "impl": name,
                "ms_median": ms,
                "ms_min": ms_min,
                "peak_mib": _peak_mib(steps[name], device) if memory else None,
                "speedup": median(times[ref]) * 1e3 / ms if ref else None,
                "speedup_min": min(times[ref]) * 1e3 / ms_min if ref else None,
                "abs_diff_vs_reference": abs(losses[name] - losses[ref]) if ref else None,
            }
        )
    return rows
