"""Uncertainty of accuracies measured on a finite test set (pure Python, no SciPy).

* :func:`wilson_interval`: 95 % interval of a proportion (k correct of n videos), better behaved
  than the normal approximation near 0 and 1 and for small n.
* :func:`mcnemar`: exact two-sided McNemar test of two models evaluated on the *same* videos: only
  the videos on which they disagree count (b: only the first is right, c: only the second);
  under "equally accurate" b ~ Binomial(b + c, 1/2).
"""
from __future__ import annotations

import math

__all__ = ["wilson_interval", "mcnemar", "paired_comparison"]


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """(low, high) of the Wilson score interval for k successes in n trials (fractions)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs (1.0 when there are none)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def paired_comparison(pred_a: list, pred_b: list, alpha: float = 0.05) -> dict:
    """Compare two models' per-video predictions [(index, label, prediction), ...] on the same videos.

    Returns the videos only A / only B got right, the McNemar p-value and the verdict
    ("A better", "B better" or "no significant difference" at ``alpha``)."""
    a = {int(i): int(y) == int(p) for i, y, p in pred_a}
    b_ = {int(i): int(y) == int(p) for i, y, p in pred_b}
    common = sorted(set(a) & set(b_))
    if len(common) != len(a) or len(common) != len(b_):
        raise ValueError("the two models were not evaluated on the same videos")
    only_a = sum(a[i] and not b_[i] for i in common)
    only_b = sum(b_[i] and not a[i] for i in common)
    p = mcnemar(only_a, only_b)
    verdict = "no significant difference"
    if p < alpha:
        verdict = "A better" if only_a > only_b else "B better"
    return {"videos": len(common), "only_a": only_a, "only_b": only_b, "p": p, "verdict": verdict}
