"""Uncertainty helpers: Wilson interval and exact McNemar against known values."""

import math

import pytest

from tbfast.stats import mcnemar, paired_comparison, wilson_interval


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(126, 252)  # 50 % of 252 test videos: about +-6.1 points
    assert lo == pytest.approx(0.4385, abs=5e-4) and hi == pytest.approx(0.5615, abs=5e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and 0.25 < wilson_interval(0, 10)[1] < 0.32
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(10, 10)[0] > 0.69
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_two_sided():
    assert mcnemar(0, 0) == 1.0
    assert mcnemar(5, 5) == 1.0
    # 10 discordant videos all one way: 2 * 0.5**10
    assert mcnemar(10, 0) == pytest.approx(2 * 0.5**10)
    # b=2, c=8: 2 * P(X <= 2), X ~ Bin(10, 1/2)
    assert mcnemar(2, 8) == pytest.approx(2 * sum(math.comb(10, i) for i in range(3)) / 1024)
    assert mcnemar(8, 2) == mcnemar(2, 8)


def test_paired_comparison_counts_only_the_disagreements():
    a = [(i, 0, 0 if i < 30 else 1) for i in range(40)]  # right on 0..29
    b = [(i, 0, 0 if i < 18 else 1) for i in range(40)]  # right on 0..17
    r = paired_comparison(a, b)
    assert (r["only_a"], r["only_b"], r["videos"]) == (12, 0, 40)
    assert r["p"] < 0.001 and r["verdict"] == "A better"
    r = paired_comparison(a, [(i, 0, 0 if 2 <= i < 31 else 1) for i in range(40)])
    assert r["verdict"] == "no significant difference"
    with pytest.raises(ValueError):
        paired_comparison(a, b[:-1])


# ------------------------------------------------------------ several models, several seeds
def test_pairwise_covers_every_pair_once_with_named_verdicts():
    from tbfast.stats import pairwise

    preds = {
        "a": [(i, 0, 0 if i < 30 else 1) for i in range(40)],
        "b": [(i, 0, 0 if i < 18 else 1) for i in range(40)],
        "c": [(i, 0, 0 if i < 29 else 1) for i in range(40)],
        "none": None,
    }
    r = pairwise(preds)
    assert list(r) == ["a vs b", "a vs c", "b vs c"]
    assert r["a vs b"]["verdict"] == "a better" and r["b vs c"]["verdict"] == "c better"
    assert r["a vs c"]["verdict"] == "no significant difference" and r["a vs c"]["only_a"] == 1


def _naive_bootstrap(a, b, resamples, seed):
    """The two-level bootstrap written one resample at a time (same random draws)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_s, n_v = a.shape
    s = rng.integers(0, n_s, size=(resamples, n_s))
    v = rng.integers(0, n_v, size=(resamples, n_v))
    d = a - b
    return np.array([np.mean([d[s[r, k], v[r]].mean() for k in range(n_s)]) for r in range(resamples)])


def test_seeds_videos_bootstrap_matches_the_naive_loop_and_the_observed_difference():
    import numpy as np

    from tbfast.stats import seeds_videos_bootstrap

    rng = np.random.default_rng(3)
    a = (rng.random((3, 50)) < 0.7).astype(float)
    b = (rng.random((3, 50)) < 0.5).astype(float)
    r = seeds_videos_bootstrap(a, b, resamples=400, seed=7)
    diffs = _naive_bootstrap(a, b, 400, 7)
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert r["ci95"] == [round(100 * lo, 2), round(100 * hi, 2)]
    assert r["diff"] == round(100 * (a.mean() - b.mean()), 2) and r["seeds"] == 3 and r["videos"] == 50
    assert r == seeds_videos_bootstrap(a, b, resamples=400, seed=7)  # deterministic
    # antisymmetric: B against A is the mirror image
    m = seeds_videos_bootstrap(b, a, resamples=400, seed=7)
    assert m["diff"] == -r["diff"] and m["ci95"] == [-r["ci95"][1], -r["ci95"][0]] and m["p"] == r["p"]


def test_seeds_videos_bootstrap_verdicts():
    import numpy as np

    from tbfast.stats import seeds_videos_bootstrap

    same = (np.arange(3 * 60).reshape(3, 60) % 2).astype(float)
    r = seeds_videos_bootstrap(same, same)
    assert r["diff"] == 0 and r["ci95"] == [0.0, 0.0] and r["verdict"] == "no significant difference"
    good = np.ones((3, 60))
    assert seeds_videos_bootstrap(good, same)["verdict"] == "A better"
    assert seeds_videos_bootstrap(same, good)["verdict"] == "B better"
    # a gap that one seed shows and the others reverse is not significant, though the mean favours A
    a = np.zeros((3, 60))
    a[0] = 1
    b = np.zeros((3, 60))
    b[1, :20] = 1
    r = seeds_videos_bootstrap(a, b)
    assert r["diff"] > 0 and r["ci95"][0] < 0 and r["verdict"] == "no significant difference"
    with pytest.raises(ValueError):
        seeds_videos_bootstrap(a, b[:2])


def test_correct_matrix_needs_the_same_videos_for_every_seed():
    from tbfast.stats import correct_matrix

    idx, m = correct_matrix([[(3, 1, 1), (1, 0, 1)], [(1, 0, 0), (3, 1, 0)]])
    assert idx == [1, 3] and m.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    with pytest.raises(ValueError):
        correct_matrix([[(1, 0, 0)], [(2, 0, 0)]])


def test_correlations():
    from tbfast.stats import pearson, spearman

    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None and pearson([1, 2], [1, 2]) is None
    # ties get average ranks: x ranks 1, 2.5, 2.5, 4
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(pearson([1, 2.5, 2.5, 4], [1, 2, 3, 4]))
    assert spearman([10, 20, 30], [3, 2, 1]) == pytest.approx(-1.0)


# ------------------------------------------------------------ the recipe's analysis
def _evals(right: dict[int, bool], labels: dict[int, int], n_classes=2, probs=None):
    preds = [[i, labels[i], labels[i] if ok else (labels[i] + 1) % n_classes] for i, ok in right.items()]
    out = {
        "predictions": preds,
        "classes": [f"c{k}" for k in range(n_classes)],
        "videos": len(preds),
        "video_top1": sum(right.values()) / len(right),
    }
    if probs is not None:
        out["probs"] = [probs[i] for i in right]
    return out


def test_mechanism_sees_routing_as_intended_and_its_opposite():
    from tbfast.engine.analysis import mechanism

    n = 60
    labels = {i: i % 2 for i in range(n)}
    s = {i: (0.9 if i < 30 else 0.1) for i in range(n)}  # videos 0..29 stable: the invariant teacher's
    inv_right = {i: i < 30 for i in range(n)}
    dis_right = {i: i >= 30 for i in range(n)}

    def probs(right):  # confident where right, wrong class preferred elsewhere
        return {i: ([0.8, 0.2] if (labels[i] == 0) == right[i] else [0.2, 0.8]) for i in range(n)}

    ti = _evals(inv_right, labels, probs=probs(inv_right))
    td = _evals(dis_right, labels, probs=probs(dis_right))
    m = mechanism(s, ti, td, permutations=200)
    assert m["videos"] == n and m["video_corr_s_vs_TI_minus_TD"] == pytest.approx(1.0)
    assert m["only_invariant_right"] == {"videos": 30, "mean_s": 0.9}
    assert m["only_distinctive_right"] == {"videos": 30, "mean_s": 0.1}
    mt = m["mixture_top1"]
    assert mt["s"] == 100.0 and mt["1 - s"] == 0.0 and mt["1 (T_I only)"] == 50.0
    assert mt["s shuffled (mean)"] < 80 and m["mixture_permutation_p"] < 0.02
    # the scores turned around: the correlation and the routing test say so
    flipped = mechanism({i: 1 - v for i, v in s.items()}, ti, td, permutations=200)
    assert flipped["video_corr_s_vs_TI_minus_TD"] == pytest.approx(-1.0) and flipped["mixture_permutation_p"] > 0.9
    # without probabilities: the correlations only
    assert "mixture_top1" not in mechanism(s, _evals(inv_right, labels), _evals(dis_right, labels))


def test_seed_summary_verdict_needs_significance_over_seeds_and_videos():
    from tbfast.engine.analysis import seed_summary

    n = 80
    labels = {i: i % 2 for i in range(n)}
    acc = {
        "supervised": (0.40, 0.42, 0.41),
        "student_invariant": (0.60, 0.62, 0.61),
        "student_distinctive": (0.58, 0.60, 0.59),
        "timebalance": (0.85, 0.86, 0.87),
    }
    evals, names = {}, {}
    for m, accs in acc.items():
        names[m] = []
        for k, a in enumerate(accs):
            name = m + (f"_seed{k}" if k else "")
            names[m].append(name)
            evals[name] = _evals({i: ((i * 7 + k) % n) < a * n for i in range(n)}, labels)
    sd = seed_summary(names, evals, [0, 1, 2], resamples=2000)
    assert sd["checks"]["timebalance_significantly_better_than_both_single_teachers"] is True
    assert sd["checks"]["both_single_teachers_significantly_better_than_supervised"] is True
    assert "TimeBalance is significantly better than both single-teacher students" in sd["verdict"]
    assert sd["timebalance_paired"]["supervised"] == {"wins": 3, "ties": 0, "losses": 0}
    # TimeBalance level with s=1: the means may favour it, the verdict does not
    for k in range(3):
        name = "timebalance" + (f"_seed{k}" if k else "")
        evals[name] = _evals(
            {i: ((i * 7 + k) % n) < acc["student_invariant"][k] * n + (1 if k == 0 else 0) for i in range(n)}, labels
        )
    sd = seed_summary(names, evals, [0, 1, 2], resamples=2000)
    assert sd["checks"]["timebalance_mean_ge_single_teacher"] is True
    assert sd["checks"]["timebalance_significantly_better_than_both_single_teachers"] is False
    assert "not shown to be better" in sd["verdict"]
    assert sd["tests"]["timebalance vs student_invariant"]["verdict"] == "no significant difference"
