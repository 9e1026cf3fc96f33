"""Mixed precision that is checked, not assumed.

PyTorch's oneDNN bf16 Conv3d *weight* gradient on the CPU is wrong (relative error 1e16 and
worse) when a conv with temporal kernel 3 and padding 1 sees an input of temporal depth 2 —
r3d18's layer3/layer4 on 8-frame clips, the plain r3d_18's layer4 on 16-frame clips. Forward
and input gradients are right. Measured with torch 2.14.1 (see ``tests/test_amp.py``):

    input depth T:     1      2      3      4      8
    rel. error:      2e-3   9e17   2e-3   2e-3   3e-3      (Conv3d(64,64,3,1,1), bf16 autocast)

Two tools follow from that:

* :func:`guard_cpu_bf16` makes every ``nn.Conv3d`` of a model compute in fp32 when CPU autocast
  is on and its input is temporally shallow (T <= 2), keeping bf16 everywhere else;
* :func:`gradient_check` compares a precision/layout configuration's weight gradients with
  fp32 on the model's real input shape, so a fast configuration with wrong gradients is caught
  at start-up (engine) and reported as wrong (benchmarks), never as a speed-up.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

#: relative weight-gradient error under which a reduced-precision configuration "matches fp32".
#: Healthy bf16 autocast gives 1e-3 to 0.3: the first convs of a net fed [0,1] inputs and followed
#: by BatchNorm sum strongly cancelling products, which amplifies bf16 rounding (measured on the
#: tiny backbone: 0.22-0.24 in its stem with every shallow conv in fp32; plain r3d18, 16x112^2,
#: batch 2: 0.404 in its stem guarded, 0.403 with oneDNN switched off, the slow but correct bf16
#: reference, so this is bf16's own rounding). The oneDNN fault gives 0.8 to 1e36 or NaN.
BF16_GRAD_TOLERANCE = 0.5


class ShallowSafeConv3d(nn.Conv3d):
    """``nn.Conv3d`` that leaves CPU autocast for temporally shallow inputs (T <= 2).

    :func:`guard_cpu_bf16` swaps it (or a subclass of it mixed with a Conv3d subclass such as
    torchvision's ``Conv3DSimple``) in through ``__class__``, so state dicts, ``deepcopy`` and
    checkpoints are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if (
            x.device.type == "cpu"
            and x.dim() == 5
            and x.shape[2] <= 2
            and self.kernel_size[0] > 1
            and torch.is_autocast_enabled("cpu")
        ):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


_GUARDED: dict[type, type] = {nn.Conv3d: ShallowSafeConv3d}


def _guarded_class(cls: type) -> type:
    if cls not in _GUARDED:
        _GUARDED[cls] = type(f"ShallowSafe{cls.__name__}", (ShallowSafeConv3d, cls), {})
    return _GUARDED[cls]


def guard_cpu_bf16(model: nn.Module) -> int:
    """Make the model's Conv3d layers safe under CPU bf16 autocast; returns how many were guarded."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.Conv3d) and not isinstance(m, ShallowSafeConv3d):
            m.__class__ = _guarded_class(type(m))
            n += 1
    return n


@dataclass
class GradCheck:
    """Result of :func:`gradient_check`."""

    ok: bool
    max_rel_err: float  # worst relative error over weight tensors (ndim > 1)
    worst: str  # name of the worst parameter
    tolerance: float

    def describe(self) -> str:
        verdict = "match fp32" if self.ok else "WRONG vs fp32"
        return (
            f"gradients {verdict}: max rel. error {self.max_rel_err:.2e} ({self.worst}), tolerance {self.tolerance:.0e}"
        )


def _weight_grads(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    autocast_dtype: torch.dtype | None,
    seed: int,
) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        with torch.autocast(x.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            out = model(x)
        loss = loss_fn(out.float())
    loss.backward()
    return {
        n: p.grad.detach().double().clone() for n, p in model.named_parameters() if p.grad is not None and p.dim() > 1
    }


def gradient_check(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = torch.bfloat16,
    channels_last: bool = True,
    loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tolerance: float = BF16_GRAD_TOLERANCE,
    seed: int = 0,
) -> GradCheck:
    """Compare weight gradients of ``model`` under (``dtype`` autocast, ``channels_last``) with fp32.

    The model is deep-copied twice (the original is untouched); both copies see the same input
    and the same dropout masks. ``dtype=None`` checks the layout alone in fp32.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(input_shape, generator=gen).to(device)
    if loss_fn is None:
        # a fixed random linear functional of the output: its gradient does not shrink with the
        # output (as a squared-norm loss's would), so relative errors are not inflated
        def loss_fn(out: torch.Tensor) -> torch.Tensor:
            probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1)).to(out.device)
            return (out * probe).sum() / out.shape[0]

    ref = copy.deepcopy(model).to(device).float().train()
    g_ref = _weight_grads(ref, x.contiguous(), loss_fn, None, seed)
    del ref

    test = copy.deepcopy(model).to(device).float().train()
    xt = x
    if channels_last:
        test = test.to(memory_format=torch.channels_last_3d)
        xt = x.to(memory_format=torch.channels_last_3d)
    g = _weight_grads(test, xt, loss_fn, dtype, seed)
    del test

    worst, worst_err = "", 0.0
    for name, gr in g_ref.items():
        denom = gr.norm().item()
        if denom == 0.0:
            continue
        err = (g[name] - gr).norm().item() / denom
        if not err <= worst_err:  # NaN counts as worst
            worst, worst_err = name, err
            if err != err:
                break
    ok = worst_err == worst_err and worst_err <= tolerance
    return GradCheck(ok=ok, max_rel_err=worst_err, worst=worst, tolerance=tolerance)
