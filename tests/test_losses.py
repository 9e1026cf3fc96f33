import math

import pytest
import torch
import torch.nn.functional as F

from tbfast.losses import (
    distill,
    global_local_loss,
    invariant_loss,
    local_local_loss,
    nt_xent,
    ssl_objective,
)
import _naive_losses as naive

TAU = 0.1


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def unit(*shape, d=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, d, generator=g, dtype=dtype), dim=-1).requires_grad_()


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def check(fn, oracle, inputs, dtype):
    """value and gradients of fn(inputs in dtype) vs the float64 oracle, relative error."""
    xs = [x.detach().to(dtype).requires_grad_() for x in inputs]
    ref = [x.detach().double().requires_grad_() for x in xs]  # the same rounded inputs
    val = fn(*xs)
    want = oracle(*ref)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert abs(val.item() - want.item()) <= tol * abs(want.item())
    gv = torch.autograd.grad(val, xs)
    gw = torch.autograd.grad(want, ref)
    for a, b in zip(gv, gw):
        assert rel(a.double(), b) <= tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nt_xent_matches_naive(dtype):
    check(lambda a, b: nt_xent(a, b, TAU), lambda a, b: naive.ntx(a, b, TAU), [unit(5, seed=1), unit(5, seed=2)], dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_invariant_loss_matches_naive(dtype):
    check(
        lambda zl, zs: invariant_loss(zl, zs, TAU),
        lambda zl, zs: naive.L_I(zl, zs, TAU),
        [unit(3, 2, seed=3), unit(3, 2, 4, seed=4)],
        dtype,
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_local_local_loss_matches_naive(dtype):
    check(lambda zs: local_local_loss(zs, TAU), lambda zs: naive.L_D1(zs, TAU), [unit(3, 2, 4, seed=5)], dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_global_local_loss_matches_naive(dtype):
    check(
        lambda sl, zs: global_local_loss(sl, zs, TAU),
        lambda sl, zs: naive.L_D2(sl, zs, TAU),
        [unit(3, 2, 4, seed=6), unit(3, 2, 4, seed=7)],
        dtype,
    )


def test_tau_is_used():
    a, b = unit(4, seed=8), unit(4, seed=9)
    assert abs(nt_xent(a, b, 0.5).item() - naive.ntx(a, b, 0.5).item()) < 1e-10
    assert nt_xent(a, b, 0.5).item() != pytest.approx(nt_xent(a, b, 0.1).item())


def test_nt_xent_hand_values():
    e = torch.eye(2, dtype=torch.float64)
    # one pair, no negatives: -log softmax over a single entry is 0
    assert nt_xent(e[:1], e[:1]).item() == pytest.approx(0.0, abs=1e-12)
    # orthogonal pairs: each anchor sees 1 positive at 1/tau and 2 negatives at 0
    assert nt_xent(e, e, 0.1).item() == pytest.approx(math.log(1 + 2 * math.exp(-10)), rel=1e-9)


def _structured(B=4, d=32, seed=0):
    """Video v, time t -> one orthonormal direction; every view identical; long slices aligned."""
    basis = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]
    video = basis[:B]  # video identity
    times = basis[B : B + 4]  # time identity, shared by all videos
    z_t = F.normalize(video[:, None, :] + 2.0 * times[None], dim=-1)  # (B, 4, d): mostly time
    z_short = z_t[:, None].expand(B, 2, 4, d).clone()
    z_long_slices = z_short.clone()
    z_long = F.normalize(video, dim=-1)[:, None].expand(B, 2, d).clone()
    return z_long, z_long_slices, z_short


def test_aligned_embeddings_give_low_distinctive_losses():
    z_long, sl, zs = _structured()
    ld1, ld2 = local_local_loss(zs).item(), global_local_loss(sl, zs).item()
    # chance levels: L_D1 = log 7, L_D2 = 2 log 4
    assert ld1 < 0.1 * math.log(7) and ld2 < 0.1 * 2 * math.log(4)


def test_aligned_video_embeddings_give_low_invariant_loss():
    B, d = 6, 16
    v = torch.eye(d, dtype=torch.float64)[:B]
    z_long = v[:, None].expand(B, 2, d)
    z_short = v[:, None, None].expand(B, 2, 4, d)
    assert invariant_loss(z_long, z_short).item() < 1e-3
    wrong = z_short.clone()
    wrong[:, 1] = torch.roll(z_short[:, 1], 1, dims=0)  # view 1 from another video: wrong positives
    assert invariant_loss(z_long, wrong).item() > 5


def test_shuffled_time_order_raises_distinctive_not_invariant():
    z_long, sl, zs = _structured()
    shuffled = zs.clone()
    shuffled[:, 1] = zs[:, 1, [2, 0, 3, 1]]  # view 1's clips in another order
    sl_shuffled = sl[:, :, [3, 2, 1, 0]]
    assert local_local_loss(shuffled).item() > 10 * local_local_loss(zs).item() + 1.0
    assert global_local_loss(sl_shuffled, zs).item() > global_local_loss(sl, zs).item() + 5.0
    assert invariant_loss(z_long, shuffled).item() == pytest.approx(invariant_loss(z_long, zs).item(), rel=1e-12)


def test_ssl_objective_weights_and_skipped_terms():
    zl, sl, zs = unit(3, 2, seed=10), unit(3, 2, 4, seed=11), unit(3, 2, 4, seed=12)
    out = ssl_objective(zl, sl, zs, w_inv=0.5, w_ll=2.0, w_gl=3.0)
    assert set(out) == {"loss", "L_I", "L_D1", "L_D2"}
    want = 0.5 * invariant_loss(zl, zs) + 2 * local_local_loss(zs) + 3 * global_local_loss(sl, zs)
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-12)
    inv = ssl_objective(zl, None, zs, w_ll=0.0, w_gl=0.0)  # the invariant teacher: no slices needed
    assert inv["L_D1"].item() == 0.0 and inv["L_D2"].item() == 0.0 and not inv["L_D2"].requires_grad
    assert inv["loss"].item() == pytest.approx(invariant_loss(zl, zs).item(), rel=1e-12)


@pytest.mark.parametrize("kind", ["l2", "kl", "js"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_distill_matches_naive(kind, dtype):
    g = torch.Generator().manual_seed(13)
    p_s = torch.softmax(torch.randn(4, 5, generator=g, dtype=torch.float64), -1)
    p_t = torch.softmax(torch.randn(4, 5, generator=g, dtype=torch.float64), -1)
    check(lambda s: distill(s, p_t.to(dtype), kind), lambda s: naive.distill(s, p_t, kind), [p_s], dtype)


@pytest.mark.parametrize("kind", ["l2", "kl", "js"])
def test_distill_teacher_gets_no_gradient_and_zero_at_equality(kind):
    p_s = torch.softmax(torch.randn(3, 4), -1).requires_grad_()
    p_t = torch.softmax(torch.randn(3, 4), -1).requires_grad_()
    distill(p_s, p_t, kind).backward()
    assert p_t.grad is None and p_s.grad is not None
    assert distill(p_t, p_t, kind).item() == pytest.approx(0.0, abs=1e-6)


def test_distill_hand_values_and_bounds():
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0]])
    assert distill(a, b, "l2").item() == pytest.approx(1.0)
    assert distill(a, b, "js").item() == pytest.approx(naive.LOG2, rel=1e-6)  # disjoint supports
    assert math.isfinite(distill(a, b, "kl").item())  # student zero where the teacher is not: large, finite
    with pytest.raises(ValueError):
        distill(a, b, "hellinger")
