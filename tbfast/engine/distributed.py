"""torchrun / DDP: process group from the environment, NCCL on GPUs, gloo on the CPU.

``torchrun --nproc_per_node N -m tbfast train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT; a plain ``tbfast`` call is world size 1 and never initialises a group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            from tbfast.errors import UserError

            raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device: str = "auto") -> Dist:
    """Initialise the process group when started by torchrun; idempotent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None
        )
    return Dist(rank=rank, world=world, local_rank=local_rank, device=dev)


def barrier(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_rows(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Concatenate ``t`` of every rank along dim 0 (rank order), differentiably: the backward sends
    each rank the sum over ranks of the gradients of its rows (``tbfast.distops``). World size 1:
    ``t`` itself. Every rank must pass the same shape."""
    if not (d.enabled and dist.is_initialized()):
        return t
    from tbfast.distops import gather_rows as _gather

    return _gather(t)


def all_gather_object(obj, d: Dist) -> list:
    if not (d.enabled and dist.is_initialized()):
        return [obj]
    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, d: Dist):
    if not (d.enabled and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(d: Dist, fn):
    """Run ``fn`` on rank 0 only and give every rank its result. A UserError on rank 0 is raised on
    every rank, and any other failure is announced before it propagates, so no rank waits forever
    for one that stopped. World size 1: ``fn()``."""
    if not (d.enabled and dist.is_initialized()):
        return fn()
    from tbfast.errors import UserError

    box = None
    if d.main:
        try:
            box = ("ok", fn())
        except UserError as exc:
            box = ("error", str(exc))
        except BaseException as exc:
            broadcast_object(("error", f"rank 0 failed: {type(exc).__name__}: {exc}"), d)
            raise
    kind, value = broadcast_object(box, d)
    if kind == "error":
        raise UserError(value)
    return value


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
