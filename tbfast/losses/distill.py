"""Distillation divergences between student and teacher class probabilities (METHOD.md §4)."""

from __future__ import annotations

import torch

from tbfast.losses.contrastive import reduction_scales

__all__ = ["distill", "DISTILL_KINDS"]

DISTILL_KINDS = ("l2", "kl", "js")


def safe_log(p: torch.Tensor) -> torch.Tensor:
    # clamp only exact zeros so log stays finite; any representable positive p is unchanged
    return torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))


def distill(
    p_student: torch.Tensor, p_teacher: torch.Tensor, kind: str = "l2", reduction: str = "mean"
) -> torch.Tensor:
    """Divergence between probabilities p_student, p_teacher: (B, C) -> scalar.

    ``l2``: mean squared error over batch x classes (both reductions: the reference's MSELoss);
    ``kl``: KL(p_teacher || p_student), batch mean, and with ``reduction="reference"`` divided by
    the number of classes C as well (the reference's ``KLDivLoss(reduction='mean')`` averages over
    batch x classes); ``js``: Jensen-Shannon divergence (natural log), batch mean (the reference
    has no JS; both reductions agree). p_teacher is detached.
    """
    reduction_scales(reduction, 1)  # validates the name
    p_t = p_teacher.detach()
    p_s = p_student
    if kind == "l2":
        return (p_s - p_t).pow(2).mean()
    if kind == "kl":
        kl = (torch.xlogy(p_t, p_t) - p_t * safe_log(p_s)).sum(-1).mean()
        return kl / p_s.shape[-1] if reduction == "reference" else kl
    if kind == "js":
        m = 0.5 * (p_s + p_t)
        log_m = safe_log(m)
        kl_t = (torch.xlogy(p_t, p_t) - p_t * log_m).sum(-1)
        kl_s = (torch.xlogy(p_s, p_s) - p_s * log_m).sum(-1)
        return (0.5 * (kl_t + kl_s)).mean()
    raise ValueError(f"unknown distillation kind {kind!r}; choose one of {', '.join(DISTILL_KINDS)}")
