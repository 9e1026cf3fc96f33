"""Fused self-supervised objective: every term of a batch from one Gram matrix.

Formulation (B videos; exact same values as ``tbfast.losses``):
* The 10B pooled embeddings are laid out as S sets of B rows (set 0, 1 = long views, set
  2 + 4a + j = short clip j of view a) and multiplied once: G = P P^T / tau, (10B, 10B).
  The self-similarities are G's diagonal and get -inf.
* One grouped log-sum-exp over each row's column *sets* gives lse[X, Y, i] = LSE_m G[(X,i), (Y,m)].
  An NT-Xent anchor i of set X paired with set Y has denominator logaddexp(lse[X,X,i], lse[X,Y,i])
  and positive G[(X,i), (Y,i)], so the 1 + 56 NT-Xent evaluations of L_I are read off one
  (S, S, B) tensor: L_I = mean over the long pair + mean over the 56 ordered short pairs.
* L_D1 uses the same Gram restricted to each video's 8 short rows (the per-video diagonal of the
  (S, B, S, B) view): a masked LSE over 7 entries, positive at the other view's same time.
* L_D2 uses one batched product of each video's 8 long slices with its 8 short clips,
  (B, 8, 8) = (B, p, t, q, j); row and column LSEs give both cross-entropies.
A handful of kernels instead of ~1,000 for the reference's forward and backward.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["fused_ssl_objective", "grouped_masked_lse_torch", "masked_gram"]

LseFn = Callable[[torch.Tensor, int], torch.Tensor]


def grouped_masked_lse_torch(g: torch.Tensor, group: int) -> torch.Tensor:
    """g: (R, R) logits with -inf already on the diagonal -> (R, R // group) log-sum-exp over
    contiguous column groups of size ``group``."""
    r = g.shape[0]
    return torch.logsumexp(g.view(r, r // group, group), dim=-1)


class _MaskedGram(torch.autograd.Function):
    """G = scale * X X^T with -inf on the diagonal; backward uses G's symmetry (one matmul)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.scale = scale
        with torch.autocast(device_type=x.device.type, enabled=False):
            g = torch.mm(x, x.t()).mul_(scale)
        g.diagonal().fill_(float("-inf"))
        return g

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        sym = (grad + grad.t()).to(x.dtype)
        sym.diagonal().zero_()  # the masked self-similarities carry no gradient
        return torch.mm(sym, x).mul_(ctx.scale), None


def masked_gram(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x: (R, d) -> (R, R) = scale * x x^T, diagonal set to -inf (differentiable in x)."""
    return _MaskedGram.apply(x, scale)


def _masks(s: int, with_long: bool, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights over (X, Y) set pairs: long pair and the 56 ordered short pairs (off-diagonal)."""
    w_long = torch.zeros(s, s, dtype=dtype, device=device)
    w_short = torch.zeros(s, s, dtype=dtype, device=device)
    first = 2 if with_long else 0
    if with_long:
        w_long[0, 1] = w_long[1, 0] = 1.0
    w_short[first:, first:] = 1.0
    w_short.fill_diagonal_(0.0)
    return w_long, w_short


def fused_ssl_objective(
    z_long: torch.Tensor,
    z_long_slices: torch.Tensor | None,
    z_short: torch.Tensor,
    *,
    tau: float = 0.1,
    w_inv: float = 1.0,
    w_ll: float = 1.0,
    w_gl: float = 1.0,
    lse_fn: LseFn = grouped_masked_lse_torch,
) -> dict[str, torch.Tensor]:
    """Same contract as :func:`tbfast.losses.ssl_objective`.

    z_long (B, 2, d), z_long_slices (B, 2, 4, d) or None when w_gl == 0, z_short (B, 2, 4, d).
    Returns dict(loss, L_I, L_D1, L_D2); terms with weight 0 are 0-d zero tensors.
    Computes in the inputs' dtype: an enclosing autocast region does not lower it (the engine
    passes float32 embeddings, so contrastive logits keep full precision under AMP).
    """
    with torch.autocast(device_type=z_short.device.type, enabled=False):
        return _fused(z_long, z_long_slices, z_short, tau, w_inv, w_ll, w_gl, lse_fn)


def _fused(z_long, z_long_slices, z_short, tau, w_inv, w_ll, w_gl, lse_fn) -> dict[str, torch.Tensor]:
    bsz, _, nt, d = z_short.shape
    zero = z_short.new_zeros(())
    out = {"L_I": zero, "L_D1": zero, "L_D2": zero}
    if w_inv or w_ll:
        short_sets = z_short.permute(1, 2, 0, 3).reshape(2 * nt, bsz, d)
        sets = torch.cat([z_long.transpose(0, 1), short_sets], 0) if w_inv else short_sets
        s = sets.shape[0]
        flat = sets.reshape(s * bsz, d)
        gram = masked_gram(flat, 1.0 / tau)
        g4 = gram.view(s, bsz, s, bsz)
        # positives / per-video entries: [X, Y, i] = G[(X, i), (Y, i)]
        gd = g4.diagonal(dim1=1, dim2=3)
        if w_inv:
            lse = lse_fn(gram, bsz).view(s, bsz, s).permute(0, 2, 1)  # [X, Y, i]
            lse_self = lse.diagonal(dim1=0, dim2=1).t().unsqueeze(1)  # [X, 1, i]
            per = torch.logaddexp(lse_self, lse) - gd  # anchor i of X paired with Y
            per = per.masked_fill(torch.eye(s, dtype=torch.bool, device=per.device).unsqueeze(-1), 0.0)
            w_long, w_short = _masks(s, True, per.device, per.dtype)
            per_pair = per.sum(-1)  # (S, S)
            out["L_I"] = (per_pair * w_long).sum() / (2 * bsz) + (per_pair * w_short).sum() / (w_short.sum() * bsz)
        if w_ll:
            first = s - 2 * nt
            loc = gd[first:, first:]  # (8, 8, B), diagonal is -inf
            pos_idx = (torch.arange(2 * nt, device=loc.device) + nt) % (2 * nt)
            pos = loc[torch.arange(2 * nt, device=loc.device), pos_idx]  # (8, B)
            out["L_D1"] = (torch.logsumexp(loc, dim=1) - pos).mean()
    if w_gl:
        sl = z_long_slices.reshape(bsz, 2 * nt, d)
        sh = z_short.reshape(bsz, 2 * nt, d)
        m = torch.bmm(sl, sh.transpose(1, 2)).mul(1.0 / tau)
        m = m.view(bsz, 2, nt, 2, nt).transpose(2, 3)  # (B, p, q, t, j)
        diag = m.diagonal(dim1=3, dim2=4)  # (B, p, q, t)
        rows = torch.logsumexp(m, dim=4) - diag
        cols = torch.logsumexp(m, dim=3) - diag
        out["L_D2"] = rows.mean() + cols.mean()
    loss = zero
    for w, k in ((w_inv, "L_I"), (w_ll, "L_D1"), (w_gl, "L_D2")):
        if w:
            loss = loss + w * out[k]
    out["loss"] = loss
    return out
