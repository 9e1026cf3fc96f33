"""TimeBalance teacher weighting (METHOD.md §5): temporal-similarity score and teacher mix."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["temporal_similarity", "normalize_scores", "mix_teachers", "CONSTANT_SCORE"]

# what normalize_scores returns when every raw score is equal: an even mix of both teachers
CONSTANT_SCORE = 0.5


def temporal_similarity(z_inv: torch.Tensor, z_dis: torch.Tensor) -> torch.Tensor:
    """Raw temporal-similarity score per video.

    z_inv, z_dis: (B, T, d) embeddings (T=4 consecutive clips) from the invariant and distinctive
    self-supervised teachers -> (B,) mean of the T*(T-1) (=12) off-diagonal entries of
    C = (C_I + C_D) / 2, where C_I, C_D are the T x T cosine-similarity matrices (inputs are
    normalised here, so unnormalised features are fine). Range [-1, 1]; high = temporally stable.
    """
    t = z_inv.shape[1]
    c = 0.5 * (_cosine(z_inv) + _cosine(z_dis))
    off = ~torch.eye(t, dtype=torch.bool, device=c.device)
    return c[:, off].mean(dim=-1)


def _cosine(z: torch.Tensor) -> torch.Tensor:
    z = F.normalize(z.float() if z.dtype in (torch.float16, torch.bfloat16) else z, dim=-1)
    return z @ z.transpose(1, 2)


def normalize_scores(raw) -> torch.Tensor:
    """Min-max normalise raw scores over the whole training set to [0, 1].

    raw: (N,) tensor or array-like -> (N,) floating tensor. If every raw score is equal (or N <= 1)
    the result is CONSTANT_SCORE (0.5) everywhere: no video is more stable than another, so both
    teachers get equal weight. Non-finite inputs raise ValueError.
    """
    r = torch.as_tensor(raw)
    if not r.is_floating_point():
        r = r.to(torch.float64)
    if r.numel() == 0:
        return r.clone()
    if not torch.isfinite(r).all():
        raise ValueError("similarity scores contain NaN or inf; check the teacher checkpoints")
    lo, hi = r.min(), r.max()
    span = hi - lo
    if span <= 0:
        return torch.full_like(r, CONSTANT_SCORE)
    return ((r - lo) / span).clamp_(0.0, 1.0)


def mix_teachers(p_inv: torch.Tensor, p_dis: torch.Tensor, s) -> torch.Tensor:
    """p_T = s * p_inv + (1 - s) * p_dis. p_inv, p_dis: (B, C); s: (B,) tensor or float -> (B, C)."""
    s = torch.as_tensor(s, dtype=p_inv.dtype, device=p_inv.device)
    if s.dim() == 1:
        s = s.unsqueeze(-1)
    return s * p_inv + (1 - s) * p_dis
