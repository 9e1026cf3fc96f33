"""BatchNorm statistics per clip group (METHOD.md §4, "BatchNorm statistics").

The reference code calls the network once per clip group (SSL: the long clip of view 0, of view
1, then each of the 4 short clips of each view; student: the labeled clips, then the unlabeled
ones), so every BatchNorm normalises each group with the statistics of that group alone and its
running statistics take one momentum update per call, in call order. tbfast reproduces that in
two executions that give the same numbers:

* ``calls``: one call of the network per group (exactly what the reference does);
* ``pass``: one call over all groups (convolutions see every clip at once) in which every
  BatchNorm splits its input along the batch dimension into the groups and normalises each
  group with its own statistics, updating the running statistics group by group in order.

Every BatchNorm of a model built by tbfast is a :class:`GroupedBatchNorm` (same parameters,
buffers and state-dict keys as torch's); outside :func:`bn_groups` it *is* torch's BatchNorm.

Synchronised statistics (:func:`set_sync_bn`, several processes): each group's mean and variance
are taken over that group's rows on *every* rank (one differentiable gather per BatchNorm layer
and call, for all its groups at once), so N processes with B/N videos each normalise exactly as
one process with B videos, per clip group, and gradients flow back through the gather.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "GroupedBatchNorm",
    "convert_group_bn",
    "bn_groups",
    "grouped_call",
    "BN_EXECS",
    "set_sync_bn",
    "sync_bn_paused",
]

BN_EXECS = ("calls", "pass")


class GroupedBatchNorm(_BatchNorm):
    """A BatchNorm (1d, 2d or 3d input) that, while ``groups`` is set and in training mode,
    normalises consecutive batch slices of the given sizes separately, each exactly like a
    separate call of torch's BatchNorm (same kernel, same running-statistics update), in order."""

    groups: tuple[int, ...] | None = None
    sync: bool = False  # statistics over every rank of the default process group (set_sync_bn)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected 2D to 5D input (got {input.dim()}D input)")

    def _syncing(self) -> bool:
        if not (self.sync and self.training and _SYNC_PAUSED == 0):
            return False
        import torch.distributed as dist

        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        groups = self.groups
        grouped = groups is not None and len(groups) >= 2 and (self.training or not self.track_running_stats)
        if grouped and sum(groups) != input.shape[0]:
            raise ValueError(f"BatchNorm groups {groups} do not add up to the batch of {input.shape[0]}")
        if self._syncing():  # every group's statistics over all ranks, one collective for all groups
            return torch.cat(_sync_batch_norm(self, input.split(list(groups)) if grouped else [input]))
        if not grouped:
            return super().forward(input)
        return torch.cat([super(GroupedBatchNorm, self).forward(x) for x in input.split(list(groups))])


_SYNC_PAUSED = 0


@contextlib.contextmanager
def sync_bn_paused():
    """Within the block no BatchNorm synchronises (e.g. a start-up check that runs on one rank)."""
    global _SYNC_PAUSED
    _SYNC_PAUSED += 1
    try:
        yield
    finally:
        _SYNC_PAUSED -= 1


def set_sync_bn(module: nn.Module, enabled: bool) -> nn.Module:
    """Every GroupedBatchNorm of ``module`` takes its training statistics over all ranks (when a
    process group of more than one process is initialised) or, with ``enabled=False``, per rank."""
    for m in _grouped(module):
        m.sync = bool(enabled)
    return module


def _sync_batch_norm(bn: GroupedBatchNorm, parts) -> list[torch.Tensor]:
    """Training-mode BatchNorm of each tensor of ``parts`` (the clip groups, in order) with that
    group's statistics over every rank. Each rank's count, mean and centred sum of squares per group
    are gathered in one differentiable collective and combined exactly (Chan et al.'s pairwise
    formula: no float32 cancellation of E[x^2] - E[x]^2); the running statistics take one update per
    group, in order, as separate calls would."""
    from tbfast.distops import gather_rows

    x0 = parts[0]
    c = x0.shape[1]
    dims = [0] + list(range(2, x0.dim()))
    shape = [1, c] + [1] * (x0.dim() - 2)
    stats, xs = [], []
    for x in parts:
        xf = x if x.dtype == torch.float64 else x.float()
        n = float(xf.numel() // c)
        mean = xf.mean(dims)
        m2 = ((xf - mean.view(shape)) ** 2).sum(dims)
        stats.append(torch.cat([mean, m2, mean.new_full((1,), n)]))
        xs.append(xf)
    every = gather_rows(torch.stack(stats).unsqueeze(0))  # (world, groups, 2C + 1)
    n_r = every[..., 2 * c :].detach()  # (world, groups, 1): counts carry no gradient
    n = n_r.sum(0)  # (groups, 1)
    mean = (every[..., :c] * n_r).sum(0) / n  # (groups, C)
    m2 = every[..., c : 2 * c].sum(0) + (n_r * (every[..., :c] - mean.unsqueeze(0)) ** 2).sum(0)
    var = m2 / n  # biased, as BatchNorm normalises
    out = []
    for g, xf in enumerate(xs):
        y = (xf - mean[g].view(shape)) * torch.rsqrt(var[g] + bn.eps).view(shape)
        if bn.affine:
            y = y * bn.weight.to(xf.dtype).view(shape) + bn.bias.to(xf.dtype).view(shape)
        out.append(y.to(parts[g].dtype))
        if bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                f = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                cnt = float(n[g])
                bn.running_mean.mul_(1 - f).add_(mean[g].detach().to(bn.running_mean.dtype), alpha=f)
                unbiased = var[g].detach() * (cnt / max(cnt - 1.0, 1.0))
                bn.running_var.mul_(1 - f).add_(unbiased.to(bn.running_var.dtype), alpha=f)
    return out


def convert_group_bn(module: nn.Module) -> nn.Module:
    """Replace every torch BatchNorm (1d/2d/3d, not SyncBatchNorm) in ``module`` by a
    :class:`GroupedBatchNorm` that shares its parameters and buffers; returns the module."""
    if isinstance(module, _BatchNorm) and not isinstance(module, (GroupedBatchNorm, nn.SyncBatchNorm)):
        new = GroupedBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in list(module.named_children()):
        new_child = convert_group_bn(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


def _grouped(module: nn.Module) -> Iterator[GroupedBatchNorm]:
    return (m for m in module.modules() if isinstance(m, GroupedBatchNorm))


@contextlib.contextmanager
def bn_groups(module: nn.Module, sizes: Sequence[int] | None):
    """Within the block every GroupedBatchNorm of ``module`` normalises batch groups of ``sizes``."""
    mods = list(_grouped(module))
    old = [m.groups for m in mods]
    for m in mods:
        m.groups = tuple(int(s) for s in sizes) if sizes is not None else None
    try:
        yield
    finally:
        for m, g in zip(mods, old):
            m.groups = g


def grouped_call(
    fn: Callable[[torch.Tensor], torch.Tensor],
    module: nn.Module,
    x: torch.Tensor,
    sizes: Sequence[int] | None,
    execution: str,
) -> torch.Tensor:
    """``fn(x)`` with BatchNorm statistics per batch group of ``sizes`` (None: one set of statistics).

    ``execution``: ``calls`` runs ``fn`` once per group and concatenates the outputs; ``pass`` runs
    it once with :func:`bn_groups` on ``module`` (the module whose BatchNorms ``fn`` uses)."""
    if sizes is None or len(sizes) < 2:
        return fn(x)
    if execution == "calls":
        return torch.cat([fn(part) for part in x.split(list(sizes))])
    if execution == "pass":
        with bn_groups(module, sizes):
            return fn(x)
    raise ValueError(f"unknown BatchNorm execution {execution!r}; choose one of {', '.join(BN_EXECS)}")
