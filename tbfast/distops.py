"""A differentiable collective (written once, used by the gathered contrastive loss and the
synchronised BatchNorm). It works on every backend (gloo on the CPU, NCCL on GPUs) and on
non-contiguous gradients.

:func:`gather_rows`: concatenation of every rank's tensor along dim 0, in rank order; its backward
gives each rank the *sum over ranks* of the gradients of its own rows. With every rank computing a
loss from the gathered values and DDP averaging the weight gradients over the ranks, the result is
exactly the gradient of the ranks' mean loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["active", "gather_rows"]


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.contiguous()
        world = dist.get_world_size()
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t)
        ctx.rows, ctx.rank = t.shape[0], dist.get_rank()
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.contiguous().clone()
        n, r = ctx.rows, ctx.rank
        if dist.get_backend() == "nccl":
            out = torch.empty((n, *g.shape[1:]), dtype=g.dtype, device=g.device)
            dist.reduce_scatter_tensor(out, g)
            return out
        dist.all_reduce(g)  # gloo has no reduce-scatter: sum everything, keep our rows
        return g[r * n : (r + 1) * n]


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` (same shape on all ranks) concatenated along dim 0; ``t`` when single."""
    return _GatherRows.apply(t) if active() else t
