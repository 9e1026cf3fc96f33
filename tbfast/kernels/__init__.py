"""tbfast.kernels: fused versions of the hot losses, same signatures and results as tbfast.losses.

``get_ssl_objective(impl)`` picks an implementation of ``ssl_objective``:
``reference`` (tbfast.losses), ``fused`` (batched torch, one Gram matrix), ``triton`` (fused with
the Triton grouped log-sum-exp; CUDA, or CPU under TRITON_INTERPRET=1), ``compiled``
(``torch.compile`` of the fused version; first call compiles for ~20-30 s on a small CPU) and
``auto``: triton for CUDA tensors when Triton is installed, fused otherwise. The environment
variable ``TBFAST_LOSS_IMPL`` overrides ``auto`` (e.g. ``TBFAST_LOSS_IMPL=reference`` switches
fusion off everywhere).
"""

from __future__ import annotations

import functools
import os
from typing import Callable

import torch

from tbfast.kernels.distill import student_distill_loss
from tbfast.kernels.fused_ssl import fused_ssl_objective, gram_grouped_lse, grouped_masked_lse_torch
from tbfast.kernels.triton_lse import grouped_lse_triton_forward, grouped_masked_lse_triton, triton_available

__all__ = [
    "IMPLS",
    "get_ssl_objective",
    "fused_ssl_objective",
    "student_distill_loss",
    "gram_grouped_lse",
    "grouped_masked_lse_torch",
    "grouped_masked_lse_triton",
    "triton_available",
]

IMPLS = ("auto", "reference", "fused", "triton", "compiled")
SslObjective = Callable[..., dict]


def _triton_objective(z_long, z_long_slices, z_short, **kw) -> dict:
    return fused_ssl_objective(z_long, z_long_slices, z_short, lse_fn=grouped_lse_triton_forward, **kw)


def _auto_objective(z_long, z_long_slices, z_short, **kw) -> dict:
    if z_short.is_cuda and triton_available():
        return _triton_objective(z_long, z_long_slices, z_short, **kw)
    return fused_ssl_objective(z_long, z_long_slices, z_short, **kw)


@functools.lru_cache(maxsize=None)
def _compiled() -> SslObjective:
    return torch.compile(fused_ssl_objective, dynamic=False)


def get_ssl_objective(impl: str = "auto") -> SslObjective:
    """Return a function with the signature and results of :func:`tbfast.losses.ssl_objective`."""
    if impl == "auto":
        impl = os.environ.get("TBFAST_LOSS_IMPL", "auto") or "auto"
    if impl == "auto":
        return _auto_objective
    if impl == "reference":
        from tbfast.losses import ssl_objective

        return ssl_objective
    if impl == "fused":
        return fused_ssl_objective
    if impl == "triton":
        if not triton_available():
            raise RuntimeError("impl='triton' needs the triton package")
        return _triton_objective
    if impl == "compiled":
        return _compiled()
    raise ValueError(f"unknown loss implementation {impl!r}; choose one of {', '.join(IMPLS)}")
