"""svnr_jax.stats against straightforward reference implementations."""

import math
import re

import numpy as np
import pytest

from svnr_jax.stats import bootstrap_ci, iqm, pass_rate_ci, summarize


def _iqm_loop(values):
    """Plain Python: sort, drop int(n/4) from each end, average the rest."""
    v = sorted(float(x) for x in values)
    k = int(0.25 * len(v))
    middle = v[k:len(v) - k]
    return sum(middle) / len(middle)


def _percentile_loop(values, q):
    """Linear-interpolation percentile (numpy's default) by hand."""
    v = sorted(values)
    pos = q / 100 * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


# ---------------------------------------------------------------- iqm


@pytest.mark.parametrize("n", range(1, 13))
def test_iqm_matches_sorted_list_loop(n):
    x = np.random.default_rng(n).normal(size=n) * 10
    assert iqm(x) == pytest.approx(_iqm_loop(x), rel=1e-12, abs=1e-12)


def test_iqm_hand_values():
    assert iqm([1.0]) == 1.0
    assert iqm([1.0, 5.0, 100.0]) == pytest.approx(106 / 3)  # n = 3: int(0.75) = 0, nothing dropped
    assert iqm([100.0, 1.0, 2.0, -50.0]) == 1.5  # n = 4: drop -50 and 100
    assert iqm([0, 1, 2, 3, 4, 5, 6, 7, 8, 1000]) == pytest.approx((2 + 3 + 4 + 5 + 6 + 7) / 6)  # n = 10: k = 2


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12])
def test_iqm_matches_scipy_trim_mean(n):
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(100 + n).standard_t(2, size=(3, n))
    np.testing.assert_allclose(iqm(x, axis=1), stats.trim_mean(x, 0.25, axis=1), rtol=1e-12)
    np.testing.assert_allclose(iqm(x.T, axis=0), stats.trim_mean(x.T, 0.25, axis=0), rtol=1e-12)
    np.testing.assert_allclose(iqm(x), stats.trim_mean(x, 0.25, axis=None), rtol=1e-12)


def test_iqm_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        iqm([])


# ---------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("n, seed", [(1, 0), (5, 3), (10, 7)])
def test_bootstrap_ci_matches_plain_loop(n, seed):
    x = np.random.default_rng(n).normal(size=n)
    resamples = 300
    low, high = bootstrap_ci(x, confidence=0.9, num_resamples=resamples, seed=seed)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # the same draws
    stats = [_iqm_loop([x[i] for i in row]) for row in idx.tolist()]
    assert low == pytest.approx(_percentile_loop(stats, 5.0), rel=1e-12, abs=1e-12)
    assert high == pytest.approx(_percentile_loop(stats, 95.0), rel=1e-12, abs=1e-12)


def test_bootstrap_ci_deterministic_and_other_statistics():
    x = np.random.default_rng(0).normal(size=8)
    assert bootstrap_ci(x, seed=4) == bootstrap_ci(x, seed=4)
    assert bootstrap_ci(x, seed=4) != bootstrap_ci(x, seed=5)
    low, high = bootstrap_ci(x, np.median, num_resamples=500)
    assert low <= np.median(x) <= high


def test_bootstrap_ci_coverage_of_the_mean():
    rng = np.random.default_rng(123)
    hits = 0
    for rep in range(200):
        x = rng.normal(loc=2.0, scale=3.0, size=20)
        low, high = bootstrap_ci(x, np.mean, num_resamples=1000, seed=rep)
        hits += low <= 2.0 <= high
    assert hits >= 180, hits


def test_bootstrap_ci_of_constant_data():
    assert bootstrap_ci(np.full(7, 3.5)) == (3.5, 3.5)
    assert bootstrap_ci([-1.25]) == (-1.25, -1.25)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=[]), r"non-empty 1-D array .* shape \(0,\)"),
        (dict(x=np.ones((2, 3))), r"shape \(2, 3\)"),
        (dict(x=[1.0], confidence=1.0), r"confidence must be in \(0, 1\), got 1.0"),
        (dict(x=[1.0], num_resamples=0), "num_resamples must be an integer >= 1, got 0"),
    ],
)
def test_bootstrap_ci_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(**kwargs)


# ---------------------------------------------------------------- summarize


def test_summarize_values():
    x = [1.0, 2.0, 3.0, 4.0, 100.0]
    s = summarize(x, num_resamples=200)
    assert set(s) == {"mean", "std", "iqm", "iqm_ci_low", "iqm_ci_high", "n"}
    assert s["n"] == 5 and s["mean"] == 22.0 and s["iqm"] == 3.0
    assert s["std"] == pytest.approx(np.std(x, ddof=1))
    assert (s["iqm_ci_low"], s["iqm_ci_high"]) == bootstrap_ci(x, iqm, num_resamples=200, seed=0)
    assert s["iqm_ci_low"] <= s["iqm"] <= s["iqm_ci_high"]
    one = summarize([4.0])
    assert (one["mean"], one["std"], one["iqm"], one["iqm_ci_low"], one["iqm_ci_high"], one["n"]) == (
        4.0, 0.0, 4.0, 4.0, 4.0, 1)


def test_summarize_errors():
    with pytest.raises(ValueError, match=re.escape("summarize: 2 of 4 values are NaN")):
        summarize([1.0, np.nan, 2.0, np.nan])
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    with pytest.raises(ValueError, match=r"1-D .* shape \(2, 2\)"):
        summarize(np.ones((2, 2)))


# ---------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    "passes, n, expected",
    [(9, 10, (0.596, 0.982)), (10, 10, (0.722, 1.0)), (0, 10, (0.0, 0.278)), (5, 10, (0.237, 0.763)),
     (1, 1, (0.207, 1.0))],
)
def test_pass_rate_ci_hand_values(passes, n, expected):
    low, high = pass_rate_ci(passes, n)
    assert (round(low, 3), round(high, 3)) == expected


def test_pass_rate_ci_formula_and_confidence():
    z = 1.6448536269514722  # 90 %
    p, n = 0.7, 20
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert pass_rate_ci(14, 20, confidence=0.9) == pytest.approx((centre - half, centre + half), rel=1e-12)
    wide, narrow = pass_rate_ci(14, 20, 0.99), pass_rate_ci(14, 20, 0.9)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


@pytest.mark.parametrize(
    "args, match",
    [((11, 10), r"0 <= passes <= n, got passes=11, n=10"), ((-1, 10), "passes=-1"), ((0, 0), "n=0"),
     ((1.5, 10), "passes must be an integer, got 1.5"), ((1, True), "n must be an integer, got True"),
     ((1, 10, 0.0), r"confidence must be in \(0, 1\), got 0.0")],
)
def test_pass_rate_ci_errors(args, match):
    with pytest.raises(ValueError, match=match):
        pass_rate_ci(*args)
