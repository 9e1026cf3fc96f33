"""Test oracle: the self-supervised step of the public reference code, re-expressed loop by loop.

Written from the *structure* of DAVEISHAN/TimeBalance ``pretraining.py`` and its
``contrastive_loss/`` (read, not copied): a SimCLR-style NT-Xent module with a summed
cross-entropy divided by 2n, the loops over (view, clip) pairs, over the videos of the batch
and over the (global view, local view) pairs, and one network call per clip group. Nothing here
uses tbfast's loss formulas. ``reduction="mean"`` replaces each of the reference's sums by the
mean over the same loop (tbfast's batch-size-independent form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ntxent_sum_form(zis: torch.Tensor, zjs: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR NT-Xent as the reference module computes it: representations [zjs; zis], dot-product
    similarities, positive column first and the 2n-2 negatives after it, cross-entropy summed over
    the 2n anchors, divided by 2n."""
    n = zis.shape[0]
    reps = torch.cat([zjs, zis], dim=0)
    sim = reps @ reps.t()
    pos = torch.cat([torch.diagonal(sim, n), torch.diagonal(sim, -n)]).view(2 * n, 1)
    keep = torch.ones(2 * n, 2 * n, dtype=torch.bool)
    idx = torch.arange(2 * n)
    keep[idx, idx] = False
    keep[idx, (idx + n) % (2 * n)] = False
    neg = sim[keep].view(2 * n, 2 * n - 2)
    logits = torch.cat([pos, neg], dim=1) / tau
    labels = torch.zeros(2 * n, dtype=torch.long)
    return F.cross_entropy(logits, labels, reduction="sum") / (2 * n)


def global_local_sum_form(lsr: torch.Tensor, gdr: torch.Tensor, tau: float, reduction: str) -> torch.Tensor:
    """lsr: (B, 4, d) slices of one global view, gdr: (B, 4, d) the 4 local clips of one view.
    The 4x4 matrix per video and its transpose stacked, rows as cross-entropy towards the diagonal;
    reference: summed and divided by 2B; mean: each of rows and columns averaged, then added."""
    b = lsr.shape[0]
    sim = torch.bmm(lsr, gdr.transpose(1, 2))
    both = torch.cat([sim, sim.transpose(1, 2)], dim=0).reshape(-1, 4) / tau
    labels = torch.arange(4).repeat(2 * b)
    ce = F.cross_entropy(both, labels, reduction="none")
    if reduction == "reference":
        return ce.sum() / (2 * b)
    half = ce.shape[0] // 2
    return ce[:half].mean() + ce[half:].mean()


def step_losses(out_sparse, out_dense, tau: float, reduction: str) -> dict[str, torch.Tensor]:
    """out_sparse[v] = (pooled (B, d), slice_0, .., slice_3) of the global clip of view v;
    out_dense[v][j] = pooled (B, d) of local clip j of view v. Returns L_I, L_D1, L_D2."""
    ic2 = ntxent_sum_form(out_sparse[0][0], out_sparse[1][0], tau)
    ic1 = 0.0
    pairs = 0
    for ii in range(2):
        for jj in range(2):
            for c in range(4):
                for c1 in range(4):
                    if ii == jj and c == c1:
                        continue
                    ic1 = ic1 + ntxent_sum_form(out_dense[ii][c], out_dense[jj][c1], tau)
                    pairs += 1
    ic1 = ic1 / 4 if reduction == "reference" else ic1 / pairs
    b = out_dense[0][0].shape[0]
    v0, v1 = torch.stack(out_dense[0], dim=1), torch.stack(out_dense[1], dim=1)
    ll = 0.0
    for video in range(b):
        ll = ll + ntxent_sum_form(v0[video], v1[video], tau)
    if reduction == "mean":
        ll = ll / b
    gl = 0.0
    for ii in range(2):
        for jj in range(2):
            gl = gl + global_local_sum_form(
                torch.stack(out_sparse[ii][1:], dim=1), torch.stack(out_dense[jj], dim=1), tau, reduction
            )
    if reduction == "mean":
        gl = gl / 4
    return {"L_I": ic2 + ic1, "L_D1": ll, "L_D2": gl}


def reference_calls(net, long: torch.Tensor, short: torch.Tensor):
    """The reference's sequence of network calls, one per clip group, each with its own BatchNorm
    statistics: for the global clip of view 0, then view 1: backbone, head on the pooled feature,
    head on each temporal slice; then each local clip of view 0, then of view 1: backbone, head.
    long (2B, ...) = [view 0; view 1]; short (8B, ...) = [view 0 (video-major, b*4+j); view 1].
    Returns (out_sparse, out_dense) in the layout of :func:`step_losses`."""
    b = long.shape[0] // 2
    out_sparse = []
    for v in range(2):
        feats = net.backbone(long[v * b : (v + 1) * b])  # (B, D, T')
        pooled = net.head(feats.mean(-1))
        slices = [net.head(feats[:, :, t]) for t in range(feats.shape[-1])]
        out_sparse.append((pooled, *slices))
    out_dense = [[], []]
    per_view = short.view(2, b, 4, *short.shape[1:])
    for v in range(2):
        for j in range(4):
            out_dense[v].append(net.head(net.backbone(per_view[v, :, j]).mean(-1)))
    return out_sparse, out_dense


def as_tbfast_layout(out_sparse, out_dense):
    """-> z_long (B, 2, d), z_slices (B, 2, 4, d), z_short (B, 2, 4, d)."""
    z_long = torch.stack([out_sparse[0][0], out_sparse[1][0]], dim=1)
    z_slices = torch.stack([torch.stack(out_sparse[v][1:], dim=1) for v in range(2)], dim=1)
    z_short = torch.stack([torch.stack(out_dense[v], dim=1) for v in range(2)], dim=1)
    return z_long, z_slices, z_short
