"""Uncertainty of accuracies measured on a finite test set (Python and NumPy, no SciPy).

* :func:`wilson_interval`: 95 % interval of a proportion (k correct of n videos), better behaved
  than the normal approximation near 0 and 1 and for small n.
* :func:`mcnemar`: exact two-sided McNemar test of two models evaluated on the *same* videos: only
  the videos on which they disagree count (b: only the first is right, c: only the second);
  under "equally accurate" b ~ Binomial(b + c, 1/2); :func:`pairwise` runs it for every pair.
* :func:`seeds_videos_bootstrap`: two models trained with several seeds and evaluated on the same
  videos: a paired bootstrap over seeds *and* test videos of their mean accuracy difference, so a
  "better" survives both the training noise and the test set's.
* :func:`pearson`, :func:`spearman`: correlations for the similarity-score mechanism report.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "wilson_interval",
    "mcnemar",
    "paired_comparison",
    "pairwise",
    "correct_matrix",
    "seeds_videos_bootstrap",
    "pearson",
    "spearman",
]


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
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
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


def pairwise(predictions: dict[str, list], alpha: float = 0.05) -> dict[str, dict]:
    """Exact McNemar test for every pair of models evaluated on the same videos.

    ``predictions``: model name -> [(index, label, predicted), ...]. Keys of the result are
    ``"A vs B"`` in the given order of names; each value is :func:`paired_comparison`'s with
    the verdict naming the better model ("A better than B") or "no significant difference"."""
    names = [n for n, p in predictions.items() if p]
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            r = paired_comparison(predictions[a], predictions[b], alpha)
            r["verdict"] = {"A better": f"{a} better", "B better": f"{b} better"}.get(r["verdict"], r["verdict"])
            out[f"{a} vs {b}"] = r
    return out


def correct_matrix(predictions: list[list]) -> tuple[list[int], np.ndarray]:
    """(video indices, 0/1 matrix of shape (seeds, videos)) from one model's per-seed predictions
    ``[[(index, label, predicted), ...] per seed]``; every seed must cover the same videos."""
    rows, ref = [], None
    for preds in predictions:
        d = {int(i): int(y) == int(p) for i, y, p in preds}
        if ref is None:
            ref = sorted(d)
        elif sorted(d) != ref:
            raise ValueError("the seeds were not evaluated on the same videos")
        rows.append([d[i] for i in ref])
    return ref or [], np.asarray(rows, dtype=np.float64)


def seeds_videos_bootstrap(
    a: np.ndarray, b: np.ndarray, *, resamples: int = 10000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """Paired two-level bootstrap of the difference of two models' mean accuracy (A - B).

    ``a`` and ``b``: 0/1 correctness, shape (seeds, videos), seed k of A paired with seed k of B
    (same data order and test videos). Each resample draws seeds with replacement, then test videos
    with replacement, so the interval carries both sources of noise: training randomness (seeds)
    and the finite test set (videos). With one seed it is the plain paired bootstrap over videos.
    Returns the observed difference (points), its 95 % percentile interval, a two-sided bootstrap
    p-value (twice the smaller share of resampled differences on either side of 0) and the verdict
    ("A better", "B better", "no significant difference" at ``alpha``). Deterministic for a seed."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"need two (seeds, videos) arrays of one shape, got {a.shape} and {b.shape}")
    n_seeds, n_videos = a.shape
    d = a - b  # per seed, per video
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    chunk = max(1, min(resamples, 2_000_000 // max(n_seeds * n_videos, 1)))
    for lo in range(0, resamples, chunk):
        m = min(chunk, resamples - lo)
        s = rng.integers(0, n_seeds, size=(m, n_seeds))
        v = rng.integers(0, n_videos, size=(m, n_videos))
        # d[s][:, :, v]: each resample's seeds, every one of them on that resample's videos
        picked = d[s[:, :, None], v[:, None, :]]
        diffs[lo : lo + m] = picked.mean(axis=(1, 2))
    lo_q, hi_q = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min(float((diffs <= 0).mean()), float((diffs >= 0).mean())))
    verdict = "no significant difference"
    if lo_q > 0:
        verdict = "A better"
    elif hi_q < 0:
        verdict = "B better"
    return {
        "seeds": n_seeds,
        "videos": n_videos,
        "diff": round(100 * float(d.mean()), 2),
        "ci95": [round(100 * float(lo_q), 2), round(100 * float(hi_q), 2)],
        "p": round(p, 4),
        "resamples": resamples,
        "verdict": verdict,
    }


def pearson(x, y) -> float | None:
    """Pearson correlation (None when either side is constant or fewer than 3 points)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x, y) -> float | None:
    """Spearman rank correlation (average ranks for ties)."""
    return pearson(_ranks(x), _ranks(y))


def _ranks(x) -> list[float]:
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks
