"""tbfast.losses: reference (readable) loss functions; fused versions live in tbfast.kernels."""

from tbfast.losses.contrastive import (
    REDUCTIONS,
    global_local_loss,
    invariant_loss,
    local_local_loss,
    nt_xent,
    reduction_scales,
    ssl_objective,
)
from tbfast.losses.distill import DISTILL_KINDS, distill

__all__ = [
    "REDUCTIONS",
    "reduction_scales",
    "nt_xent",
    "invariant_loss",
    "local_local_loss",
    "global_local_loss",
    "ssl_objective",
    "distill",
    "DISTILL_KINDS",
]
