import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from tbfast.kernels import (
    IMPLS,
    fused_ssl_objective,
    get_ssl_objective,
    grouped_masked_lse_torch,
    student_distill_loss,
    triton_available,
)
from tbfast.losses import distill, ssl_objective
from tbfast.timebalance import mix_teachers

WEIGHTS = [(1.0, 1.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 1.0), (0.0, 0.0, 1.0), (0.3, 2.0, 0.0)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def inputs(B, d=16, seed=0, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)

    def unit(*s):
        return F.normalize(torch.randn(*s, d, generator=g), dim=-1).to(device=device, dtype=dtype).requires_grad_()

    return unit(B, 2), unit(B, 2, 4), unit(B, 2, 4)


def compare(fn_a, fn_b, zs, w, rtol, atol=0.0):
    wi, wl, wg = w
    a = fn_a(*zs, w_inv=wi, w_ll=wl, w_gl=wg)
    b = fn_b(*zs, w_inv=wi, w_ll=wl, w_gl=wg)
    assert set(a) == set(b) == {"loss", "L_I", "L_D1", "L_D2"}
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), rtol=rtol, atol=atol)
    ga = torch.autograd.grad(a["loss"], zs, allow_unused=True)
    gb = torch.autograd.grad(b["loss"], zs, allow_unused=True)
    for x, y in zip(ga, gb):
        assert (x is None) == (y is None)
        if x is not None:
            scale = y.float().abs().max().item()
            assert (x.float() - y.float()).abs().max().item() <= rtol * scale + atol


@pytest.mark.parametrize("B", [1, 3, 16])
@pytest.mark.parametrize("w", WEIGHTS)
def test_fused_matches_reference_float32(B, w):
    compare(fused_ssl_objective, ssl_objective, inputs(B, seed=B), w, rtol=1e-5, atol=1e-6)


def test_fused_matches_reference_float64_exactly():
    zs = [z.detach().double().requires_grad_() for z in inputs(5, seed=9)]
    compare(fused_ssl_objective, ssl_objective, zs, (1.0, 1.0, 1.0), rtol=1e-12)


def test_fused_bf16_close_to_reference():
    zs = inputs(8, d=32, seed=4, dtype=torch.bfloat16)
    zs32 = [z.detach().float().requires_grad_() for z in zs]
    out = fused_ssl_objective(*zs)
    ref = ssl_objective(*zs32)
    for k in ref:
        assert abs(out[k].float().item() - ref[k].item()) <= 0.05 * abs(ref[k].item()) + 0.05
    g = torch.autograd.grad(out["loss"], zs)
    g32 = torch.autograd.grad(ref["loss"], zs32)
    for a, b in zip(g, g32):
        assert torch.nn.functional.cosine_similarity(a.float().flatten(), b.flatten(), dim=0) > 0.98


def test_skipped_terms_need_no_slices():
    zl, _, zs = inputs(4)
    out = fused_ssl_objective(zl, None, zs, w_ll=0.0, w_gl=0.0)
    assert out["L_D1"].item() == 0.0 and out["L_D2"].item() == 0.0
    torch.testing.assert_close(out["loss"], ssl_objective(zl, None, zs, w_ll=0.0, w_gl=0.0)["loss"])


def test_grouped_lse_matches_logsumexp():
    g = torch.randn(12, 12, dtype=torch.float64)
    g.fill_diagonal_(float("-inf"))
    want = torch.stack([torch.logsumexp(g[:, k * 4 : (k + 1) * 4], dim=1) for k in range(3)], 1)
    torch.testing.assert_close(grouped_masked_lse_torch(g, 4), want)


def test_get_ssl_objective_choices(monkeypatch):
    assert get_ssl_objective("reference") is ssl_objective
    assert get_ssl_objective("fused") is fused_ssl_objective
    zs = inputs(3)
    torch.testing.assert_close(get_ssl_objective("auto")(*zs)["loss"], ssl_objective(*zs)["loss"])
    monkeypatch.setenv("TBFAST_LOSS_IMPL", "reference")  # switch fusion off everywhere
    assert get_ssl_objective() is ssl_objective
    with pytest.raises(ValueError):
        get_ssl_objective("magic")
    assert "compiled" in IMPLS


@pytest.mark.parametrize("kind", ["l2", "kl", "js"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_student_distill_matches_unfused(kind, dtype):
    g = torch.Generator().manual_seed(3)
    logits = (3 * torch.randn(6, 7, generator=g)).to(dtype).requires_grad_()
    p_inv = torch.softmax(torch.randn(6, 7, generator=g), -1).to(dtype).requires_grad_()
    p_dis = torch.softmax(torch.randn(6, 7, generator=g), -1).to(dtype).requires_grad_()
    s = torch.rand(6, generator=g).to(dtype)
    fused = student_distill_loss(logits, p_inv, p_dis, s, kind)
    ref = distill(torch.softmax(logits, -1), mix_teachers(p_inv, p_dis, s), kind)
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(fused, ref, rtol=rtol, atol=0.0)
    gf = torch.autograd.grad(fused, logits)[0]
    gr = torch.autograd.grad(ref, logits)[0]
    assert (gf - gr).abs().max() <= rtol * gr.abs().max() + 1e-12
    fused2 = student_distill_loss(logits, p_inv, p_dis, s, kind)
    fused2.backward()
    assert p_inv.grad is None and p_dis.grad is None  # teachers never differentiated
    if dtype == torch.float64:
        assert torch.autograd.gradcheck(
            lambda z: student_distill_loss(z, p_inv.detach(), p_dis.detach(), s, kind),
            (logits.detach().requires_grad_(),),
        )


def test_student_distill_scalar_score_and_bf16_logits():
    logits = torch.randn(4, 5).bfloat16().requires_grad_()
    p_inv = torch.softmax(torch.randn(4, 5), -1)
    p_dis = torch.softmax(torch.randn(4, 5), -1)
    out = student_distill_loss(logits, p_inv, p_dis, 1.0, "kl")
    ref = distill(torch.softmax(logits.float(), -1), p_inv, "kl")
    assert out.dtype == torch.float32 and abs(out.item() - ref.item()) < 1e-5
    out.backward()
    assert logits.grad.dtype == torch.bfloat16


@pytest.mark.skipif(not triton_available(), reason="triton not installed")
def test_triton_grouped_lse_in_interpreter():
    """Runs the Triton kernel on the CPU with TRITON_INTERPRET=1 (a fresh process: the flag is
    read when triton is imported)."""
    code = textwrap.dedent("""
        import torch, torch.nn.functional as F
        from tbfast.kernels import get_ssl_objective, grouped_masked_lse_torch, grouped_masked_lse_triton
        from tbfast.losses import ssl_objective
        g = torch.randn(20, 20, requires_grad=True)
        gm = g.masked_fill(torch.eye(20, dtype=torch.bool), float("-inf"))
        a, b = grouped_masked_lse_triton(gm, 5), grouped_masked_lse_torch(gm, 5)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        zs = [F.normalize(torch.randn(*s, 8), dim=-1).requires_grad_() for s in [(3, 2), (3, 2, 4), (3, 2, 4)]]
        t, r = get_ssl_objective("triton")(*zs), ssl_objective(*zs)
        torch.testing.assert_close(t["loss"], r["loss"], rtol=1e-5, atol=0)
        for x, y in zip(torch.autograd.grad(t["loss"], zs), torch.autograd.grad(r["loss"], zs)):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
        print("TRITON_OK")
    """)
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    try:
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip("Triton interpreter too slow on this machine")
    if "TRITON_OK" not in res.stdout and ("interpret" in res.stderr.lower() and "not supported" in res.stderr.lower()):
        pytest.skip("Triton interpreter unsupported here: " + res.stderr[-300:])
    assert "TRITON_OK" in res.stdout, res.stderr[-2000:]


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["fused", "triton", "auto"])
def test_cuda_impls_match_reference(impl):
    if impl == "triton" and not triton_available():
        pytest.skip("triton not installed")
    zs = inputs(40, d=128, seed=1, device="cuda")
    compare(get_ssl_objective(impl), ssl_objective, zs, (1.0, 1.0, 1.0), rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # torch.compile takes ~30 s: pytest -m slow
def test_compiled_matches_reference():
    compare(get_ssl_objective("compiled"), ssl_objective, inputs(8), (1.0, 1.0, 1.0), rtol=1e-5, atol=1e-6)


def test_fused_ignores_autocast_and_backpropagates():
    zs = inputs(4, seed=7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused_ssl_objective(*zs)
    out["loss"].backward()  # mixed dtypes in backward would raise here
    torch.testing.assert_close(out["loss"], ssl_objective(*zs)["loss"], rtol=1e-5, atol=0)
    assert all(z.grad is not None and z.grad.dtype == torch.float32 for z in zs)


def test_fused_backward_twice_with_retained_graph():
    zs = inputs(4, seed=11)
    out = fused_ssl_objective(*zs)
    g1 = torch.autograd.grad(out["loss"], zs, retain_graph=True)
    g2 = torch.autograd.grad(out["loss"], zs)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
