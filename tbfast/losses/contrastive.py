"""Reference implementations of the TCLR / TimeBalance self-supervised losses (METHOD.md §4).

Layout is batch first: B videos, 2 views, 4 temporal positions, d dims.
Two reductions (``reduction=``, METHOD.md §4 and its "reference code vs tbfast" table):
``reference`` reproduces the public reference code's sums exactly (L_I's local part summed over
the 56 pairs and divided by 4, L_D1 summed over the videos, L_D2 summed over the 4 view pairs and
over each video's rows and columns, divided by 2B); ``mean`` averages every term (loss scale
independent of the batch size). Inputs are expected to be L2-normalised already (the projection head does it); the losses use
plain dot products divided by ``tau`` and do not renormalise, so gradients are those of the
formulas in METHOD.md. These are the readable versions; ``tbfast.kernels`` has the fused ones.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

__all__ = [
    "REDUCTIONS",
    "reduction_scales",
    "nt_xent",
    "invariant_loss",
    "local_local_loss",
    "global_local_loss",
    "ssl_objective",
]

REDUCTIONS = ("reference", "mean")


def reduction_scales(reduction: str, bsz: int, clips: int = 4) -> tuple[float, float, float]:
    """Factors that turn the *mean* form of each term into the chosen reduction.

    Returns (local part of L_I, L_D1, L_D2) for ``bsz`` videos and ``clips`` short clips per view:
    ``mean`` -> (1, 1, 1); ``reference`` -> (P / 4, B, 2 * clips) with P = (2 clips)(2 clips - 1)
    ordered short-clip pairs: (14, B, 8) for 4 clips. The global pair of L_I is a mean in both.
    """
    if reduction == "mean":
        return 1.0, 1.0, 1.0
    if reduction == "reference":
        ns = 2 * clips
        return ns * (ns - 1) / 4.0, float(bsz), 2.0 * clips
    raise ValueError(f"unknown loss reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")


def _nt_xent_groups(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent for G independent groups. a, b: (G, n, d) -> scalar, mean over the G*2n anchors."""
    g, n, _ = a.shape
    z = torch.cat([a, b], dim=1)  # (G, 2n, d)
    logits = torch.matmul(z, z.transpose(1, 2)) / tau
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    target = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits.reshape(g * 2 * n, 2 * n), target.repeat(g))


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """NT-Xent (SimCLR). a, b: (n, d) -> scalar.

    2n anchors; the positive of row i of ``a`` is row i of ``b`` (and vice versa); the negatives
    are the other 2n-2 rows of both sets; loss = mean over anchors of -log softmax(positive).
    """
    return _nt_xent_groups(a.unsqueeze(0), b.unsqueeze(0), tau)


def invariant_loss(
    z_long: torch.Tensor, z_short: torch.Tensor, tau: float = 0.1, reduction: str = "mean"
) -> torch.Tensor:
    """L_I. z_long: (B, 2, d), z_short: (B, 2, 4, d) -> scalar.

    NT-Xent between the two long-clip views, plus NT-Xent over the 56 ordered pairs
    (view a, clip j) != (view b, clip k) of short clips (different times of a video are positives):
    their mean (``mean``) or their sum divided by 4 (``reference``).
    """
    loss = nt_xent(z_long[:, 0], z_long[:, 1], tau)
    sets = [(a, j) for a in range(2) for j in range(z_short.shape[2])]
    pairs = list(itertools.permutations(sets, 2))  # 56 ordered pairs for 4 clips
    short = sum(nt_xent(z_short[:, a, j], z_short[:, b, k], tau) for (a, j), (b, k) in pairs)
    scale = reduction_scales(reduction, z_short.shape[0], z_short.shape[2])[0]
    return loss + short * (scale / len(pairs))


def local_local_loss(
    z_short: torch.Tensor, tau: float = 0.1, reduction: str = "mean", bsz_total: int | None = None
) -> torch.Tensor:
    """L_D1. z_short: (B, 2, 4, d) -> scalar.

    Per video, NT-Xent with n=4 between view 0's and view 1's short clips (positive: same time in
    the other view; negatives: the other times of the same video); mean (``mean``) or sum
    (``reference``) over videos: all ``bsz_total`` videos of a step when this process holds a share
    of them (the processes' losses are averaged, so each scales its mean by the global count).
    """
    scale = reduction_scales(reduction, bsz_total or z_short.shape[0], z_short.shape[2])[1]
    return _nt_xent_groups(z_short[:, 0], z_short[:, 1], tau) * scale


def global_local_loss(
    z_long_slices: torch.Tensor, z_short: torch.Tensor, tau: float = 0.1, reduction: str = "mean"
) -> torch.Tensor:
    """L_D2. z_long_slices: (B, 2, 4, d) (slice t of long view p), z_short: (B, 2, 4, d) -> scalar.

    Per video and each of the 4 (long view, short view) pairs, S[t, j] = <slice t, short j> / tau;
    ``mean``: mean_t CE(S[t, :], t) + mean_j CE(S[:, j], j), mean over videos and pairs;
    ``reference``: per pair, the sum over videos, rows and columns divided by 2B, summed over pairs.
    """
    bsz, _, t, _ = z_short.shape
    s = torch.einsum("bptd,bqjd->bpqtj", z_long_slices, z_short) / tau  # (B, 2, 2, 4, 4)
    s = s.reshape(-1, t, t)
    target = torch.arange(t, device=s.device).repeat(s.shape[0])
    rows = F.cross_entropy(s.reshape(-1, t), target)
    cols = F.cross_entropy(s.transpose(1, 2).reshape(-1, t), target)
    return (rows + cols) * reduction_scales(reduction, bsz, t)[2]


def _given(z: torch.Tensor | None) -> torch.Tensor:
    if z is None:
        raise ValueError("z_long_slices is needed when w_gl != 0")
    return z


def ssl_objective(
    z_long: torch.Tensor,
    z_long_slices: torch.Tensor | None,
    z_short: torch.Tensor,
    *,
    tau: float = 0.1,
    w_inv: float = 1.0,
    w_ll: float = 1.0,
    w_gl: float = 1.0,
    reduction: str = "mean",
    bsz_total: int | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted self-supervised objective: loss = w_inv*L_I + w_ll*L_D1 + w_gl*L_D2.

    Returns dict(loss, L_I, L_D1, L_D2), always with all four keys. A term whose weight is 0 is
    not computed and reported as a 0-d zero tensor (no graph); ``z_long_slices`` may then be None
    when ``w_gl == 0``. L_I, L_D1, L_D2 are the unweighted terms in the chosen ``reduction``.
    ``bsz_total``: the videos of the whole step when the inputs are one process's share (only the
    ``reference`` sum over videos of L_D1 depends on it).
    """
    reduction_scales(reduction, 1)  # validate the name even when every term is skipped
    return _combine(
        z_short,
        w_inv,
        (lambda: invariant_loss(z_long, z_short, tau, reduction)),
        w_ll,
        (lambda: local_local_loss(z_short, tau, reduction, bsz_total)),
        w_gl,
        (lambda: global_local_loss(_given(z_long_slices), z_short, tau, reduction)),
    )


def _combine(ref: torch.Tensor, w_inv, f_inv, w_ll, f_ll, w_gl, f_gl) -> dict[str, torch.Tensor]:
    zero = ref.new_zeros(())
    out = {"L_I": f_inv() if w_inv else zero, "L_D1": f_ll() if w_ll else zero, "L_D2": f_gl() if w_gl else zero}
    loss = zero
    for w, k in ((w_inv, "L_I"), (w_ll, "L_D1"), (w_gl, "L_D2")):
        if w:
            loss = loss + w * out[k]
    out["loss"] = loss
    return out
