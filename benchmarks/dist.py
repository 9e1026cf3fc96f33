"""`tbfast bench dist`: what the one-process objective costs with several processes.

Starts ``--world`` processes (gloo on the CPU, NCCL with ``--device cuda``, one GPU per rank) and
times one combined-stage SSL training step (forward + backward through DDP, random clips) with
L_I's negatives gathered from every rank or not (``loss.cross_rank``) and BatchNorm statistics
synchronised per clip group or not (``model.sync_bn``). Prints the median step time per
configuration and the overhead against neither; writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from tbfast.argtypes import nonneg_int, output_file, positive_int
from tbfast_benchmarks.common import machine_info, median, print_table, write_json

CONFIGS = [  # (label, cross_rank, sync_bn)
    ("per-rank negatives, per-rank BN", False, "off"),
    ("gathered negatives", True, "off"),
    ("synchronised BN", False, "on"),
    ("both (default of the SSL stages)", True, "on"),
]


def add_arguments(p: argparse.ArgumentParser, command: str = "bench dist") -> None:
    p.add_argument("--world", type=positive_int, default=2, help="processes")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu (gloo) or cuda (NCCL)")
    p.add_argument("--backbone", choices=["tiny", "r3d18"], default="tiny", help="network")
    p.add_argument("--batch-size", type=positive_int, default=4, help="videos per rank per step")
    p.add_argument("--size", type=positive_int, default=32, help="crop side in pixels")
    p.add_argument("--steps", type=positive_int, default=5, help="timed steps per configuration")
    p.add_argument("--warmup", type=nonneg_int, default=1, help="untimed steps per configuration")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads per process")
    p.add_argument("--json", default=None, type=output_file, help="write the results here")


def _worker(rank: int, opts: dict, init: str, out: str) -> None:
    import json

    import torch
    import torch.distributed as tdist
    from torch import nn

    from tbfast.engine.config import resolve, sync_bn
    from tbfast.engine.distributed import Dist
    from tbfast.engine.nets import SSLNet
    from tbfast.engine.tasks import SSLTask
    from tbfast.models import set_sync_bn

    args = argparse.Namespace(**opts)
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    dev = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    tdist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{init}", rank=rank, world_size=args.world)
    d = Dist(rank=rank, world=args.world, device=dev)
    b, s = args.batch_size, args.size
    gen = torch.Generator().manual_seed(rank)
    batch = {
        k: torch.rand(n, 3, 16, s, s, generator=gen).to(dev)
        for k, n in (("long0", b), ("long1", b), ("short0", 4 * b), ("short1", 4 * b))
    }
    times = {}
    for label, cross, sync in CONFIGS:
        cfg = resolve(
            "combined",
            "synthetic_tiny",
            {
                "model": {"backbone": args.backbone, "sync_bn": sync},
                "data": {"batch_size": b, "size": s},
                "loss": {"cross_rank": cross},
            },
        )
        torch.manual_seed(0)
        model = set_sync_bn(SSLNet(cfg.model), sync_bn(cfg, args.world)).to(dev).train()
        net = nn.parallel.DistributedDataParallel(model, device_ids=[rank] if cuda else None)
        task = SSLTask(cfg, dev, None, dist=d)
        samples = []
        for i in range(args.warmup + args.steps):
            tdist.barrier()
            t0 = time.perf_counter()
            task.compute(net, batch)["loss"].backward()
            if cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                samples.append(dt)
            net.zero_grad(set_to_none=True)
        times[label] = samples
    if rank == 0:
        with open(out, "w") as f:
            json.dump(times, f)
    tdist.destroy_process_group()


def main(args: argparse.Namespace) -> int:
    import json

    import torch
    import torch.multiprocessing as mp

    from tbfast.errors import UserError

    if args.device == "cuda" and torch.cuda.device_count() < args.world:
        raise UserError(f"--device cuda needs {args.world} GPUs, {torch.cuda.device_count()} visible")
    if args.world < 2:
        raise UserError("--world must be at least 2 (the cost of several processes)")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        old = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        try:
            opts = {k: v for k, v in vars(args).items() if not k.startswith("_")}
            mp.spawn(_worker, args=(opts, os.path.join(tmp, "init"), out), nprocs=args.world, join=True)
        finally:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old
        with open(out) as f:
            times = json.load(f)
    base = median(times[CONFIGS[0][0]])
    rows, res = [], []
    for label, cross, sync in CONFIGS:
        m = median(times[label])
        rows.append([label, f"{m * 1e3:.1f}", f"{(m / base - 1) * 100:+.1f}%"])
        res.append(
            {
                "config": label,
                "cross_rank": cross,
                "sync_bn": sync,
                "step_ms": round(m * 1e3, 2),
                "overhead_vs_none": round(m / base - 1, 4),
                "samples_ms": [round(x * 1e3, 2) for x in times[label]],
            }
        )
    print_table(
        f"combined SSL step, {args.world} x {args.batch_size} videos at {args.size}px, {args.backbone}, "
        f"{args.device} ({'NCCL' if args.device == 'cuda' else 'gloo'}), median of {args.steps}",
        ["configuration", "ms/step", "vs per-rank"],
        rows,
    )
    if args.json:
        write_json(
            args.json,
            {
                "machine": machine_info(),
                "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                "results": res,
            },
        )
    return 0
