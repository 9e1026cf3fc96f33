"""Mixed precision: whole-step gradients (backbone, heads, loss) compared with fp32."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tbfast.engine.config import resolve
from tbfast.engine.nets import ClassNet, SSLNet
from tbfast.engine.tasks import ClassifyTask, SSLTask


def _ssl_batch(b=2, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    cl = torch.channels_last_3d
    return {
        "long0": torch.rand(b, 3, 16, s, s, generator=g).to(memory_format=cl),
        "long1": torch.rand(b, 3, 16, s, s, generator=g).to(memory_format=cl),
        "short0": torch.rand(4 * b, 3, 16, s, s, generator=g).to(memory_format=cl),
        "short1": torch.rand(4 * b, 3, 16, s, s, generator=g).to(memory_format=cl),
        "label": torch.zeros(b, dtype=torch.long),
        "index": torch.arange(b),
    }


def _grads(task, model, batch, device, dtype):
    model.zero_grad(set_to_none=True)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = task.compute(model, batch)
        out["loss"].backward()
    return out["loss"].item(), {n: p.grad.double().clone() for n, p in model.named_parameters() if p.grad is not None}


def _rel_errors(g_ref, g):
    """Relative error per parameter; a bias before a BatchNorm has a ~0 gradient in exact arithmetic,
    so errors are measured against max(|ref|, 1e-3 x the largest gradient norm)."""
    floor = 1e-3 * max(r.norm().item() for r in g_ref.values())
    return {n: ((g[n] - r).norm() / max(r.norm().item(), floor)).item() for n, r in g_ref.items()}


def _setup(stage, device):
    cfg = resolve(stage, "synthetic_tiny", {"data": {"size": 16}, "train": {"device": device.type}})
    torch.manual_seed(0)
    if stage == "distinctive":
        model = SSLNet(cfg.model).to(device)
        task = SSLTask(cfg, device, loader=None)
        batch = {k: v.to(device) for k, v in _ssl_batch().items()}
    else:
        model = ClassNet(cfg.model, 5).to(device)
        task = ClassifyTask(cfg, device, loader=None)
        g = torch.Generator().manual_seed(1)
        batch = {
            "clip": torch.rand(6, 3, 8, 16, 16, generator=g).to(device, memory_format=torch.channels_last_3d),
            "label": torch.arange(6).remainder(5).to(device),
        }
    return model, task, batch


def _worst(errs):
    """The parameter with the largest error; a NaN error (a non-finite gradient) is the largest, inf."""
    errs = {k: math.inf if v != v else v for k, v in errs.items()}
    w = max(errs, key=errs.get)
    return w, errs[w]


def _cosine(a, b):
    va = torch.cat([x.flatten() for x in a.values()])
    vb = torch.cat([b[k].flatten() for k in a])
    return (va @ vb / (va.norm() * vb.norm())).item()


@pytest.mark.parametrize("stage", ["distinctive", "finetune"])
def test_cpu_bf16_step_gradients_match_fp32(stage):
    """With the Conv3d guard, CPU bf16 gradients of every parameter are as close to fp32 as those of
    a correct bf16 implementation (oneDNN off); without it, the shallow Conv3d gradients are wrong."""
    from tbfast.amp import guard_cpu_bf16

    dev = torch.device("cpu")
    model, task, batch = _setup(stage, dev)
    l32, g32 = _grads(task, copy.deepcopy(model), batch, dev, None)
    with torch.backends.mkldnn.flags(enabled=False):
        _, g_ok = _grads(task, copy.deepcopy(model), batch, dev, torch.bfloat16)
    guarded = copy.deepcopy(model)
    guard_cpu_bf16(guarded)
    l16, g16 = _grads(task, guarded, batch, dev, torch.bfloat16)
    assert abs(l16 - l32) <= 0.05 * abs(l32) + 1e-3
    _, ref_err = _worst(_rel_errors(g32, g_ok))
    name, err = _worst(_rel_errors(g32, g16))
    assert err <= max(1.5 * ref_err, 0.05), (name, err, ref_err)
    assert _cosine(g32, g16) >= min(_cosine(g32, g_ok), 0.99) - 0.02
    if stage == "finetune" and CPU_BF16_FAULT:  # 8-frame clips reach layer3/4 at depth <= 2: the bug shows
        _, g_raw = _grads(task, copy.deepcopy(model), batch, dev, torch.bfloat16)
        assert _worst(_rel_errors(g32, g_raw))[1] > 2 * max(ref_err, 0.05)


def _raw_depth2_error() -> float:
    """Max relative error of the raw CPU bf16 Conv3d weight gradient at temporal depth 2 against fp32,
    measured directly (no tbfast code) in the layout tbfast trains in (channels-last): ~1e-2 where
    oneDNN is right, >0.5 (or NaN, counted as inf) on CPUs with the fault. (On an AVX-512-BF16 Zen 4
    the fault shows in channels-last only: 0.85 there against 0.003 in the contiguous layout.)"""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(8, 8, 3, 1, 1).to(memory_format=torch.channels_last_3d)
    x = torch.rand(4, 8, 2, 4, 4).contiguous(memory_format=torch.channels_last_3d)
    probe = torch.randn(4, 8, 2, 4, 4)
    grads = []
    for dtype in (None, torch.bfloat16):
        conv.zero_grad()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            out = conv(x)
        (out.float() * probe).sum().backward()
        grads.append(conv.weight.grad.double().clone())
    err = ((grads[1] - grads[0]).abs().max() / grads[0].abs().max()).item()
    return err if err == err else float("inf")


CPU_BF16_FAULT = _raw_depth2_error() > 0.5


def test_cpu_bf16_start_up_check_agrees_with_a_direct_measurement():
    """The raw oneDNN bf16 Conv3d weight gradient at temporal depth 2 is wrong on some CPUs: the check
    says so exactly where a direct measurement does."""
    from tbfast.amp import gradient_check

    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv3d(8, 8, 3, 1, 1), torch.nn.Flatten())
    res = gradient_check(conv, (4, 8, 2, 4, 4), device="cpu", dtype=torch.bfloat16)
    assert res.ok == (not CPU_BF16_FAULT), (res.describe(), _raw_depth2_error())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("stage", ["distinctive", "finetune"])
def test_gpu_mixed_precision_gradients_match_fp32(stage, dtype):
    dev = torch.device("cuda")
    model, task, batch = _setup(stage, dev)
    l32, g32 = _grads(task, copy.deepcopy(model), batch, dev, None)
    l16, g16 = _grads(task, model, batch, dev, dtype)
    assert abs(l16 - l32) <= 0.05 * abs(l32) + 1e-3
    name, err = _worst(_rel_errors(g32, g16))
    assert err < 0.5, (name, err)  # bf16 rounding at random init: ~0.2 on the CPU reference
    assert _cosine(g32, g16) > 0.97
