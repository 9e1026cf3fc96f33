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
    assert mcnemar(10, 0) == pytest.approx(2 * 0.5 ** 10)
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
