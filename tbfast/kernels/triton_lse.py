"""Triton grouped log-sum-exp for the fused objective on CUDA.

The kernel reads each row of the (R, R) masked Gram once per column group and writes
lse[r, g] = log sum_m exp(G[r, g*group + m]); its backward (softmax weights times the incoming
gradient) is a few torch ops. On the CPU it runs under ``TRITON_INTERPRET=1`` (tests only).
Verified here only with the interpreter; the CUDA path is unmeasured without a GPU.
"""

from __future__ import annotations

import torch

__all__ = ["triton_available", "grouped_masked_lse_triton", "grouped_lse_triton_forward"]

try:  # triton is optional: CPU-only installs fall back to batched torch
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - depends on the install
    triton = None


def triton_available() -> bool:
    return triton is not None


if triton is not None:

    @triton.jit
    def _grouped_lse_kernel(g_ptr, out_ptr, n_cols, n_groups, group, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        grp = tl.program_id(1)
        offs = tl.arange(0, BLOCK)
        mask = offs < group
        x = tl.load(g_ptr + row * n_cols + grp * group + offs, mask=mask, other=float("-inf")).to(tl.float32)
        m = tl.max(x, axis=0)
        m_safe = tl.where(m == float("-inf"), 0.0, m)
        s = tl.sum(tl.exp(x - m_safe), axis=0)
        tl.store(out_ptr + row * n_groups + grp, tl.log(s) + m_safe)


def grouped_lse_triton_forward(g: torch.Tensor, group: int) -> torch.Tensor:
    """No-autograd launcher: g (R, C) -> (R, C // group) log-sum-exp over column groups
    (float32 accumulation, result in g's dtype)."""
    if triton is None:
        raise RuntimeError("triton is not installed")
    g = g.contiguous()
    r, c = g.shape
    n_groups = c // group
    out = torch.empty(r, n_groups, device=g.device, dtype=torch.float32)
    _grouped_lse_kernel[(r, n_groups)](g, out, c, n_groups, group, BLOCK=triton.next_power_of_2(group))
    return out.to(g.dtype)


class _GroupedLse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g: torch.Tensor, group: int) -> torch.Tensor:
        out = grouped_lse_triton_forward(g, group)
        ctx.save_for_backward(g.contiguous(), out)
        ctx.group = group
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g, out = ctx.saved_tensors
        r, c = g.shape
        out = out.masked_fill(torch.isinf(out), 0.0)  # all-masked group: weight 0, not NaN
        w = torch.exp(g.view(r, -1, ctx.group) - out.unsqueeze(-1))  # softmax within each group
        return (w * grad.unsqueeze(-1)).view(r, c), None


def grouped_masked_lse_triton(g: torch.Tensor, group: int) -> torch.Tensor:
    """Same as :func:`tbfast.kernels.fused_ssl.grouped_masked_lse_torch`, computed by Triton."""
    if triton is None:
        raise RuntimeError("triton is not installed")
    return _GroupedLse.apply(g, group)
