"""Independent, deliberately naive loop implementations of METHOD.md §4 (test oracle only).

Written from the text, anchor by anchor, with scalar torch ops (so autograd gives gradients);
no code shared with tbfast.losses / tbfast.kernels.
"""

from __future__ import annotations

import itertools
import math

import torch


def _lse(xs):
    m = max(float(x.detach()) for x in xs)
    return m + torch.log(sum(torch.exp(x - m) for x in xs))


def ntx(A, B, tau):
    """NT-Xent: 2n anchors, positive = same row in the other set, negatives = other 2n-2 rows."""
    n = len(A)
    Z = [A[i] for i in range(n)] + [B[i] for i in range(n)]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = [torch.dot(Z[i], Z[k]) / tau for k in range(2 * n) if k != i]
        total = total + _lse(sims) - torch.dot(Z[i], Z[pos]) / tau
    return total / (2 * n)


def L_I(z_long, z_short, tau):
    loss = ntx(z_long[:, 0], z_long[:, 1], tau)
    sets = [(a, j) for a in range(2) for j in range(4)]
    pairs = [(x, y) for x in sets for y in sets if x != y]
    assert len(pairs) == 56
    acc = 0.0
    for (a, j), (b, k) in pairs:
        acc = acc + ntx(z_short[:, a, j], z_short[:, b, k], tau)
    return loss + acc / 56


def L_D1(z_short, tau):
    B = z_short.shape[0]
    return sum(ntx(z_short[v, 0], z_short[v, 1], tau) for v in range(B)) / B


def L_D2(z_long_slices, z_short, tau):
    B = z_short.shape[0]
    total = 0.0
    count = 0
    for v in range(B):
        for p in range(2):
            for q in range(2):
                S = [[torch.dot(z_long_slices[v, p, t], z_short[v, q, j]) / tau for j in range(4)] for t in range(4)]
                rows = sum(_lse(S[t]) - S[t][t] for t in range(4)) / 4
                cols = sum(_lse([S[t][j] for t in range(4)]) - S[j][j] for j in range(4)) / 4
                total = total + rows + cols
                count += 1
    return total / count


def distill(p_s, p_t, kind):
    p_t = p_t.detach()
    B, C = p_s.shape
    if kind == "l2":
        return sum((p_s[b, c] - p_t[b, c]) ** 2 for b in range(B) for c in range(C)) / (B * C)
    total = 0.0
    for b in range(B):
        for c in range(C):
            t, s = p_t[b, c], p_s[b, c]
            if kind == "kl":
                if t > 0:
                    total = total + t * (torch.log(t) - torch.log(s))
            elif kind == "js":
                m = 0.5 * (t + s)
                if t > 0:
                    total = total + 0.5 * t * (torch.log(t) - torch.log(m))
                if s > 0:
                    total = total + 0.5 * s * (torch.log(s) - torch.log(m))
    return total / B


def similarity(z_inv, z_dis):
    """Raw TimeBalance score: mean of the 12 off-diagonal entries of (C_I + C_D)/2."""
    out = []
    for v in range(z_inv.shape[0]):
        acc = 0.0
        for i, j in itertools.permutations(range(4), 2):
            ci = torch.dot(z_inv[v, i], z_inv[v, j]) / (z_inv[v, i].norm() * z_inv[v, j].norm())
            cd = torch.dot(z_dis[v, i], z_dis[v, j]) / (z_dis[v, i].norm() * z_dis[v, j].norm())
            acc = acc + 0.5 * (ci + cd)
        out.append(acc / 12)
    return torch.stack(out)


LOG2 = math.log(2.0)
