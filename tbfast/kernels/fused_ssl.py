"""Fused self-supervised objective: every term of a batch from a few Gram matrices.

Formulation (B videos; same values as ``tbfast.losses`` up to float rounding):
* The pooled embeddings are laid out as *sets* of B rows: the 2 long views, and the 8 short sets
  (view a, clip j), index 4a + j. For each family one Gram matrix G = Z Z^T / tau is formed
  (2B x 2B and 8B x 8B; the long-short cross blocks are never needed), its diagonal (the
  self-similarities) set to -inf, and one grouped log-sum-exp over each row's column sets gives
  lse[i, X, Y] = LSE_m G[(X, i), (Y, m)]. An NT-Xent anchor i of set X paired with set Y has the
  denominator LSE(lse[i, X, X], lse[i, X, Y]) and the positive <z_X,i, z_Y,i>/tau, so the
  1 + 56 NT-Xent evaluations of L_I are read off two small tensors. Gram, mask and grouped LSE
  are one autograd node (``gram_grouped_lse``) whose backward turns the saved Gram into softmax
  weights in one buffer and needs two matmuls.
* One batched product of each video's 8 short embeddings with themselves, (B, 8, 8), gives the
  L_I positives and all of L_D1 (masked LSE over the 7 other clips of the video).
* L_D2: one batched product of each video's 8 long slices with its 8 short clips, (B, 8, 8)
  = (B, p, t, q, j); row and column LSEs give both cross-entropies.
At B=40 one forward + backward is ~900 profiled operator calls instead of ~12,800 for the reference. The grouped LSE can be
the Triton kernel of ``tbfast.kernels.triton_lse`` (``lse_fn``).
"""

from __future__ import annotations

from typing import Callable

import torch

from tbfast.losses.contrastive import reduction_scales

__all__ = ["fused_ssl_objective", "grouped_masked_lse_torch", "gram_grouped_lse"]

LseFn = Callable[[torch.Tensor, int], torch.Tensor]


def grouped_masked_lse_torch(g: torch.Tensor, group: int) -> torch.Tensor:
    """g: (R, C) logits (-inf where masked) -> (R, C // group) log-sum-exp over contiguous column
    groups of size ``group``."""
    r, c = g.shape
    return torch.logsumexp(g.view(r, c // group, group), dim=-1)


class _GramGroupedLse(torch.autograd.Function):
    """lse[r, k] = LSE_m (scale * <x_r, x_(k*group+m)>), self-similarity (m-th row == r) excluded.

    One matmul and one masked grouped log-sum-exp forward; backward forms the softmax weights
    in one buffer and uses two matmuls (the Gram is symmetric, so
    d/dx = (W + W^T) x * scale with no transposed copy).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float, group: int, lse_fn: LseFn) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            g = torch.mm(x, x.t()).mul_(scale)
            g.diagonal().fill_(float("-inf"))
            lse = lse_fn(g, group)
        ctx.save_for_backward(x, g, lse)
        ctx.scale, ctx.group = scale, group
        return lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, g, lse = ctx.saved_tensors
        r = g.shape[0]
        lse = lse.masked_fill(torch.isinf(lse), 0.0)  # a group of only masked entries (B=1): weight 0
        # out of place first: the saved Gram must survive a second backward (retain_graph=True)
        w = (g.view(r, -1, ctx.group) - lse.unsqueeze(-1)).exp_().mul_(grad.unsqueeze(-1)).view(r, r)
        w = w.to(x.dtype)
        dx = torch.addmm(torch.mm(w, x), w.t(), x).mul_(ctx.scale)
        return dx, None, None, None


def gram_grouped_lse(
    x: torch.Tensor, scale: float, group: int, lse_fn: LseFn = grouped_masked_lse_torch
) -> torch.Tensor:
    """x: (R, d) -> (R, R // group): grouped log-sum-exp of the masked Gram scale * x x^T."""
    return _GramGroupedLse.apply(x, scale, group, lse_fn)


def fused_ssl_objective(
    z_long: torch.Tensor,
    z_long_slices: torch.Tensor | None,
    z_short: torch.Tensor,
    *,
    tau: float = 0.1,
    w_inv: float = 1.0,
    w_ll: float = 1.0,
    w_gl: float = 1.0,
    reduction: str = "mean",
    lse_fn: LseFn = grouped_masked_lse_torch,
    bsz_total: int | None = None,
) -> dict[str, torch.Tensor]:
    """Same contract as :func:`tbfast.losses.ssl_objective`.

    z_long (B, 2, d), z_long_slices (B, 2, 4, d) or None when w_gl == 0, z_short (B, 2, 4, d).
    Returns dict(loss, L_I, L_D1, L_D2); terms with weight 0 are 0-d zero tensors. ``bsz_total``:
    the videos of the whole step when the inputs are one process's share (scales L_D1's sum).
    Computes in the inputs' dtype: an enclosing autocast region does not lower it (the engine
    passes float32 embeddings, so contrastive logits keep full precision under AMP).
    """
    with torch.autocast(device_type=z_short.device.type, enabled=False):
        return _fused(z_long, z_long_slices, z_short, tau, w_inv, w_ll, w_gl, reduction, lse_fn, bsz_total)


def _fused(
    z_long, z_long_slices, z_short, tau, w_inv, w_ll, w_gl, reduction, lse_fn, bsz_total=None
) -> dict[str, torch.Tensor]:
    bsz, _, nt, d = z_short.shape
    s_short, s_ll, s_gl = reduction_scales(reduction, bsz_total or bsz, nt)
    ns = 2 * nt  # short-clip sets (view a, clip j), index a*nt + j
    inv_tau = 1.0 / tau
    zero = z_short.new_zeros(())
    out = {"L_I": zero, "L_D1": zero, "L_D2": zero}
    per_video = short = None
    if w_inv or w_ll:
        short = z_short.reshape(bsz, ns, d)
        per_video = torch.bmm(short, short.transpose(1, 2)).mul(inv_tau)  # (B, X, Y), same video
    if w_inv:
        # long pair: denominators over both long views of the batch, self excluded
        longs = z_long.transpose(0, 1).reshape(2 * bsz, d)
        lse_l = gram_grouped_lse(longs, inv_tau, bsz, lse_fn).view(2, bsz, 2)  # [X, i, Y]
        pos_l = (z_long[:, 0] * z_long[:, 1]).sum(-1).mul(inv_tau)  # (B,)
        den_l = torch.logsumexp(lse_l, dim=-1)  # (2, B); logsumexp, not logaddexp: -inf safe for B=1
        loss_long = (den_l - pos_l).mean()
        # 56 ordered short pairs (X, Y): anchor i of X, denominator over sets X and Y
        sets = z_short.permute(1, 2, 0, 3).reshape(ns * bsz, d)
        lse_s = gram_grouped_lse(sets, inv_tau, bsz, lse_fn).view(ns, bsz, ns).transpose(0, 1)  # [i, X, Y]
        off = ~torch.eye(ns, dtype=torch.bool, device=lse_s.device)
        lse_self = lse_s.diagonal(dim1=1, dim2=2).unsqueeze(-1).expand(bsz, ns, ns)  # [i, X, .]
        # pairs X != Y only (a group holding just the anchor itself is -inf when B = 1)
        den = torch.logsumexp(torch.stack([lse_self[:, off], lse_s[:, off]]), dim=0)  # (B, 56)
        assert per_video is not None
        loss_short = (den - per_video[:, off]).mean() * s_short
        out["L_I"] = loss_long + loss_short
    if w_ll:
        assert per_video is not None
        eye = torch.eye(ns, dtype=torch.bool, device=per_video.device)
        logits = per_video.masked_fill(eye, float("-inf"))
        partner = (torch.arange(ns, device=logits.device) + nt) % ns
        pos = per_video[:, torch.arange(ns, device=logits.device), partner]  # (B, X)
        out["L_D1"] = (torch.logsumexp(logits, dim=-1) - pos).mean() * s_ll
    if w_gl:
        sl = z_long_slices.reshape(bsz, ns, d)
        sh = z_short.reshape(bsz, ns, d)
        m = torch.bmm(sl, sh.transpose(1, 2)).mul(inv_tau)
        m = m.view(bsz, 2, nt, 2, nt).transpose(2, 3)  # (B, p, q, t, j)
        diag = m.diagonal(dim1=3, dim2=4)  # (B, p, q, t)
        rows = torch.logsumexp(m, dim=4) - diag
        cols = torch.logsumexp(m, dim=3) - diag
        out["L_D2"] = (rows.mean() + cols.mean()) * s_gl
    loss = zero
    for w, k in ((w_inv, "L_I"), (w_ll, "L_D1"), (w_gl, "L_D2")):
        if w:
            loss = loss + w * out[k]
    out["loss"] = loss
    return out
