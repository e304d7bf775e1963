"""Wilson score intervals (course_lib.stats) against statsmodels, SciPy and the defining inequality."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

from course_lib import wilson_interval

CASES = [(k, n) for n in (1, 2, 5, 17, 60, 100, 333, 1000) for k in sorted({0, 1, n // 3, n // 2, n - 1, n}) if 0 <= k <= n]


@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99, 0.5])
def test_matches_statsmodels_and_scipy(confidence):
    for k, n in CASES:
        low, high = wilson_interval(k, n, confidence)
        sm = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
        sp = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
        assert low == pytest.approx(sm[0], abs=1e-12) and high == pytest.approx(sm[1], abs=1e-12), (k, n)
        assert low == pytest.approx(sp.low, abs=1e-12) and high == pytest.approx(sp.high, abs=1e-12), (k, n)


def test_ends_satisfy_the_score_equation_and_the_estimate_lies_inside():
    """The ends are the rates q with |p - q| = z sqrt(q (1 - q) / n) (the interval's definition)."""
    z = NormalDist().inv_cdf(0.975)
    for k, n in CASES:
        p = k / n
        low, high = wilson_interval(k, n)
        assert 0.0 <= low <= p <= high <= 1.0
        for q in (low, high):
            if 0.0 < q < 1.0:
                assert abs(p - q) == pytest.approx(z * math.sqrt(q * (1 - q) / n), abs=1e-12)
        assert (low == 0.0) == (k == 0) and (high == 1.0) == (k == n)
        mirrored = wilson_interval(n - k, n)  # successes and failures swap roles
        assert mirrored[0] == pytest.approx(1 - high, abs=1e-12) and mirrored[1] == pytest.approx(1 - low, abs=1e-12)


def test_more_trials_and_less_confidence_give_narrower_intervals():
    widths = [wilson_interval(9 * m, 10 * m)[1] - wilson_interval(9 * m, 10 * m)[0] for m in (1, 3, 10, 30)]
    assert widths == sorted(widths, reverse=True)
    assert wilson_interval(55, 60, 0.9)[0] > wilson_interval(55, 60, 0.99)[0]
    low, high = wilson_interval(60, 60)  # all right on 60 sentences still leaves room below 0.95
    assert high == 1.0 and 0.93 < low < 0.95


def test_clear_errors():
    for args in [(1, 0), (-1, 5), (6, 5), (1.0, 5), (1, 5, 1.0), (1, 5, 0), (True, 5)]:
        with pytest.raises(ValueError):
            wilson_interval(*args)
