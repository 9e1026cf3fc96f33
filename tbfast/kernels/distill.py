"""Fused student distillation: softmax + teacher mix + divergence, with an analytic backward.

student_distill_loss(logits, p_inv, p_dis, s, kind) equals
``distill(softmax(logits), s*p_inv + (1-s)*p_dis, kind)`` but keeps one saved tensor (the student
probabilities) and computes d/dlogits in closed form instead of back-propagating through softmax,
the mix and the divergence op by op. Teachers never receive a gradient.
"""

from __future__ import annotations

import torch

from tbfast.losses.contrastive import reduction_scales
from tbfast.losses.distill import safe_log

__all__ = ["student_distill_loss"]


class _StudentDistill(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, p_t: torch.Tensor, kind: str) -> torch.Tensor:
        log_p = torch.log_softmax(logits, dim=-1)
        p = log_p.exp()
        bsz, ncls = p.shape
        if kind == "l2":
            diff = p - p_t
            loss = diff.pow(2).mean()
            g_p = diff.mul_(2.0 / (bsz * ncls))
        elif kind == "kl":
            loss = (torch.xlogy(p_t, p_t) - p_t * log_p).sum(-1).mean()
            # d/dlogits of -sum t*log_softmax = p*sum(t) - t
            ctx.save_for_backward((p * p_t.sum(-1, keepdim=True) - p_t).div_(bsz))
            return loss
        elif kind == "js":
            m = 0.5 * (p + p_t)
            log_m = safe_log(m)
            loss = (0.5 * ((torch.xlogy(p_t, p_t) - p_t * log_m) + (p * log_p - p * log_m)).sum(-1)).mean()
            g_p = (log_p - log_m).mul_(0.5 / bsz)  # dJS/dp = 0.5*log(p/m)
        else:
            raise ValueError(f"unknown distillation kind {kind!r}; choose one of l2, kl, js")
        # chain rule through softmax: dL/dz = p * (g - <g, p>)
        ctx.save_for_backward(p * (g_p - (g_p * p).sum(-1, keepdim=True)))
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (g,) = ctx.saved_tensors
        return g * grad, None, None


def student_distill_loss(
    logits_student: torch.Tensor,
    prob_inv: torch.Tensor,
    prob_dis: torch.Tensor,
    s: torch.Tensor | float,
    kind: str = "l2",
    reduction: str = "mean",
) -> torch.Tensor:
    """Distillation of the student towards the TimeBalance teacher mix.

    logits_student (B, C); prob_inv, prob_dis (B, C) teacher probabilities; s (B,) scores in [0, 1]
    (or a float) -> scalar = distill(softmax(logits_student), s*p_inv + (1-s)*p_dis, kind, reduction).
    """
    reduction_scales(reduction, 1)  # validates the name
    with torch.no_grad():
        s_t = torch.as_tensor(s, dtype=prob_inv.dtype, device=prob_inv.device)
        if s_t.dim() == 1:
            s_t = s_t.unsqueeze(-1)
        p_t = s_t * prob_inv + (1 - s_t) * prob_dis
    compute = torch.float32 if logits_student.dtype in (torch.float16, torch.bfloat16) else logits_student.dtype
    loss = _StudentDistill.apply(logits_student.to(compute), p_t.to(compute), kind)
    if kind == "kl" and reduction == "reference":  # KLDivLoss(reduction='mean'): over batch x classes
        loss = loss / logits_student.shape[-1]
    return loss
