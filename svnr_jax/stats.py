"""Aggregate statistics for comparison tables (rliable-style, plain numpy).

* :func:`iqm` — interquartile mean, exactly ``scipy.stats.trim_mean(x, 0.25)`` (rliable's IQM).
* :func:`bootstrap_ci` — percentile bootstrap confidence interval of a statistic over runs (seeds).
* :func:`summarize` — mean, std, IQM and its bootstrap CI of per-seed values, with loud errors on NaN or
  empty input.
* :func:`pass_rate_ci` — Wilson score interval of a pass rate (e.g. "8 of 10 seeds reached the optimum").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import numpy as np

#: Fraction cut from each end by :func:`iqm`.
IQM_PROPORTION = 0.25


def iqm(x: Any, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle 50 % of the values.

    Exact definition (that of ``scipy.stats.trim_mean(x, 0.25, axis)``, which rliable uses): with ``n``
    values along ``axis``, sort them, drop ``k = int(0.25 * n)`` (rounded down) from each end and average
    the remaining ``n - 2k`` values. There is no fractional weighting of partially trimmed values: for
    ``n = 1, 2, 3`` nothing is dropped (plain mean), ``n = 4..7`` drops one from each end, ``n = 10`` drops
    two, and so on.

    Args:
      x: values (any array-like).
      axis: axis along which to compute; ``None`` flattens ``x`` first.

    Returns:
      A float64 scalar (``axis=None``) or an array with ``axis`` removed.

    Raises:
      ValueError: no values along ``axis``.
    """
    a = np.asarray(x, dtype=np.float64)
    if axis is None:
        a, axis = a.reshape(-1), 0
    n = a.shape[axis]
    if n == 0:
        raise ValueError("iqm of an empty array")
    k = int(IQM_PROPORTION * n)
    middle = np.take(np.sort(a, axis=axis), np.arange(k, n - k), axis=axis)
    return np.mean(middle, axis=axis)


def bootstrap_ci(
    x: Any,
    statistic: Callable[..., Any] = iqm,
    *,
    confidence: float = 0.95,
    num_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over runs.

    Draws one index matrix ``idx = default_rng(seed).integers(0, n, size=(num_resamples, n))`` (each row
    resamples the ``n`` runs with replacement), evaluates ``statistic(x[idx], axis=1)`` (one value per
    resample, vectorised), and returns its ``(1 - c) / 2`` and ``(1 + c) / 2`` percentiles
    (``np.percentile``, linear interpolation). Deterministic given ``seed``.

    Args:
      x: ``[n]`` per-run values (1-D, finite; see :func:`summarize` for the NaN check).
      statistic: ``f(values [R, n], axis=1) -> [R]``, e.g. :func:`iqm`, ``np.mean``, ``np.median``.
      confidence: ``c`` in ``(0, 1)``.
      num_resamples: ``R >= 1``.
      seed: numpy ``default_rng`` seed.

    Returns:
      ``(low, high)`` floats.

    Raises:
      ValueError: ``x`` not 1-D or empty, ``confidence`` not in ``(0, 1)``, ``num_resamples < 1``.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"bootstrap_ci needs a non-empty 1-D array of per-run values, got shape {a.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, int | np.integer) or num_resamples < 1:
        raise ValueError(f"num_resamples must be an integer >= 1, got {num_resamples!r}")
    n = a.shape[0]
    idx = np.random.default_rng(seed).integers(0, n, size=(int(num_resamples), n))
    stats = np.asarray(statistic(a[idx], axis=1), dtype=np.float64)
    low, high = np.percentile(stats, [100.0 * (1.0 - confidence) / 2.0, 100.0 * (1.0 + confidence) / 2.0])
    return float(low), float(high)


def summarize(
    x: Any,
    *,
    confidence: float = 0.95,
    num_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, float | int]:
    """Summary of per-seed values for a comparison table.

    Args:
      x: ``[n]`` per-seed values (1-D, no NaN).
      confidence, num_resamples, seed: of the IQM's bootstrap CI (:func:`bootstrap_ci`).

    Returns:
      ``{"mean", "std", "iqm", "iqm_ci_low", "iqm_ci_high", "n"}``; ``std`` is the sample standard
      deviation (``ddof=1``; 0.0 when ``n == 1``).

    Raises:
      ValueError: not 1-D, empty, or containing NaN (the message says how many of the ``n`` are NaN).
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"summarize needs a 1-D array of per-seed values, got shape {a.shape}")
    if a.size == 0:
        raise ValueError("summarize needs at least one value, got an empty array")
    num_nan = int(np.isnan(a).sum())
    if num_nan:
        raise ValueError(f"summarize: {num_nan} of {a.size} values are NaN")
    n = int(a.size)
    low, high = bootstrap_ci(a, iqm, confidence=confidence, num_resamples=num_resamples, seed=seed)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if n > 1 else 0.0,
        "iqm": float(iqm(a)),
        "iqm_ci_low": low,
        "iqm_ci_high": high,
        "n": n,
    }


def pass_rate_ci(passes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a pass rate ``p̂ = passes / n``.

    With ``z`` the ``(1 + c) / 2`` standard-normal quantile (1.95996.. for ``c = 0.95``)::

        centre     = (p̂ + z² / (2n)) / (1 + z² / n)
        half_width = z / (1 + z² / n) · sqrt(p̂ (1 - p̂) / n + z² / (4 n²))
        interval   = (centre - half_width, centre + half_width)

    Unlike the normal (Wald) interval it stays inside ``[0, 1]`` and is not degenerate at 0 or ``n``
    passes (e.g. 10/10 → (0.722, 1.0)); 9/10 → (0.596, 0.982).

    Args:
      passes: number of passes, ``0 <= passes <= n``.
      n: number of trials, ``>= 1``.
      confidence: ``c`` in ``(0, 1)``.

    Returns:
      ``(low, high)`` floats in ``[0, 1]``.

    Raises:
      ValueError: non-integer counts, ``n < 1``, ``passes`` outside ``[0, n]``, ``confidence`` not in ``(0, 1)``.
    """
    for name, v in (("passes", passes), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if n < 1 or not 0 <= passes <= n:
        raise ValueError(f"need n >= 1 and 0 <= passes <= n, got passes={passes!r}, n={n!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    z = NormalDist().inv_cdf((1.0 + confidence) / 2.0)
    p = passes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


__all__ = ["IQM_PROPORTION", "bootstrap_ci", "iqm", "pass_rate_ci", "summarize"]
