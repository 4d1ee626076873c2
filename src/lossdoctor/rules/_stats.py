"""Robust statistics for noisy training curves (numpy only).

Real logs are noisy (per-step losses), short (a handful of epochs) and messy. Every
decision here compares a change with the noise of the same curve instead of looking
at two points: curves are binned to at most `MAX_BINS` medians, trends are Theil-Sen
slopes, and noise is the scaled median absolute deviation of the residuals.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lossdoctor.run import Series

MAX_BINS = 48
TRIM_MIN_WIDTH = 10  # bins narrower than this use the median
TRIM_SHARE = 0.1  # share cut from each end of a wide bin before averaging
Direction = Literal["falling", "flat", "rising"]

# How sure a trend must be before we call it: |change| / its standard error.
T_CRIT = 3.0
# A short curve that moves the same way at every point is a trend even when a straight
# line fits it badly (a decelerating fall over 4-5 epochs leaves residuals as large as
# the fall, so its t stays under T_CRIT): by chance, n noisy points are in order with
# probability 2/n!, 1.7% for 5 points. Four points (8%) also need t >= MONOTONE_T_4.
MONOTONE_MIN_POINTS = 5
MONOTONE_T_4 = 2.0
# How large it must be to matter: a fraction of the curve's level (or range).
MIN_RELATIVE_CHANGE = 0.05
# ... and never less than this share of the level itself: a flat, quiet curve has a
# tiny range, and a drift of 0.0008 on a loss of 2.3 is not a trend worth a verdict.
MIN_LEVEL_CHANGE = 0.01


def mad_sigma(values: np.ndarray) -> float:
    """Noise as 1.4826 * median absolute deviation: a standard deviation that
    ignores outliers."""
    if values.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


@dataclass(frozen=True)
class Binned:
    """A curve reduced to at most MAX_BINS points: x is the position of each bin in
    the run (0..1), y a robust average of the finite values in it (median or trimmed
    mean), index the original index at the bin's centre."""

    x: np.ndarray
    y: np.ndarray
    index: np.ndarray


_BINNED: weakref.WeakKeyDictionary[Series, Binned] = weakref.WeakKeyDictionary()


def binned(series: Series) -> Binned:
    """Robust averages of equal-count bins of the finite values (all points when few).
    Several rules bin the same series, so the result is cached per series object."""
    cached = _BINNED.get(series)
    if cached is None:
        cached = _BINNED[series] = _bin(series, MAX_BINS)
    return cached


def _bin(series: Series, max_bins: int) -> Binned:
    keep = np.flatnonzero(np.isfinite(series.values))
    n = keep.size
    if n == 0:
        empty = np.zeros(0)
        return Binned(empty, empty, np.zeros(0, dtype=np.int64))
    values = series.values[keep]
    if n <= max_bins:
        x = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
        return Binned(x, values.astype(np.float64), keep)
    edges = np.linspace(0, n, max_bins + 1).astype(np.int64)
    # Equal-width bins from each edge; a bin may leave out its last point, which
    # changes a median by nothing that matters and keeps this one vectorized call.
    width = int(np.min(np.diff(edges)))
    rect = values[edges[:-1, None] + np.arange(width)[None, :]]
    if width < TRIM_MIN_WIDTH:
        y = np.median(rect, axis=1)
    else:
        # A trimmed mean: an isolated spike does not move it, but a loss whose
        # batches swing between tiny and huge (a diverging run) still shows its mass.
        k = int(TRIM_SHARE * width)
        y = np.sort(rect, axis=1)[:, k : width - k].mean(axis=1)
    centres = edges[:-1] + width // 2
    return Binned(np.linspace(0.0, 1.0, max_bins), y, keep[centres])


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the Theil-Sen line: the median of pairwise slopes."""
    n = x.size
    if n < 2:
        return 0.0, float(y[0]) if n else 0.0
    i, j = np.triu_indices(n, k=1)
    dx = x[j] - x[i]
    ok = dx != 0
    slope = float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else 0.0
    intercept = float(np.median(y - slope * x))
    return slope, intercept


@dataclass(frozen=True)
class Trend:
    direction: Direction
    start: float  # fitted value at the start of the window
    end: float  # fitted value at the end of the window
    change: float  # end - start
    noise: float  # residual noise of one binned point
    t: float  # |change| / standard error of the change
    points: int

    @property
    def relative_change(self) -> float:
        scale = abs(self.start) if self.start != 0 else 1.0
        return self.change / scale


def trend(
    x: np.ndarray,
    y: np.ndarray,
    *,
    scale: float | None = None,
    t_crit: float = T_CRIT,
    min_relative: float = MIN_RELATIVE_CHANGE,
) -> Trend:
    """Direction of y over x: falling/rising only when the fitted change is both
    significant against the curve's own noise and large against `scale` (by default
    the fitted starting level)."""
    n = x.size
    slope, intercept = theil_sen(x, y)
    x0, x1 = float(x[0]), float(x[-1])
    start, end = intercept + slope * x0, intercept + slope * x1
    change = end - start
    residuals = y - (intercept + slope * x)
    noise = mad_sigma(residuals)
    if noise == 0.0 and n > 2:
        # A perfectly straight or frozen curve: fall back to the residuals' spread.
        noise = float(np.std(residuals))
    # Standard error of the change across the window for a least-squares line; a
    # conservative stand-in for Theil-Sen's (slightly larger efficiency loss ignored).
    spread = float(np.sum((x - x.mean()) ** 2))
    se = noise * (x1 - x0) / math.sqrt(spread) if spread > 0 else math.inf
    t = abs(change) / se if se > 0 else (math.inf if change != 0 else 0.0)
    ref = abs(start) if scale is None else scale
    big_enough = abs(change) > min_relative * ref if ref > 0 else change != 0
    if start > 0:
        big_enough = big_enough and abs(change) >= MIN_LEVEL_CHANGE * start
    direction: Direction = "flat"
    if big_enough and n >= 3 and (t >= t_crit or _in_order(y, t)):
        direction = "falling" if change < 0 else "rising"
    return Trend(direction, start, end, change, noise, t, n)


def _in_order(y: np.ndarray, t: float) -> bool:
    """Whether a short curve moves strictly one way at every point (see
    MONOTONE_MIN_POINTS)."""
    n = y.size
    if n < 4 or (n < MONOTONE_MIN_POINTS and t < MONOTONE_T_4):
        return False
    steps = np.diff(y)
    return bool((steps < 0).all() or (steps > 0).all())


def curve_scale(b: Binned, window_values: np.ndarray) -> float:
    """What a change is measured against: the smaller of the current level and the
    range the whole curve covered. The range matters when a constant offset (a
    regularization term, a multi-head total) makes the level large; the level when
    the curve fell a long way. Losses that cross zero use the range alone."""
    level = float(np.median(window_values[: max(1, window_values.size // 3)]))
    # The distance the curve covered, with isolated one-point spikes smoothed away.
    smooth = rolling_median(b.y, 3) if b.y.size >= 3 else b.y
    spread = float(np.max(smooth) - np.min(smooth)) if smooth.size else 0.0
    if level > 0 and spread > 0:
        return min(level, spread)
    return spread or abs(level) or 1.0


def late_window(b: Binned, fraction: float = 0.5, minimum: int = 5) -> slice:
    """The last part of a binned curve: `fraction` of it, but at least `minimum`
    points (or all of them)."""
    n = b.y.size
    size = max(math.ceil(fraction * n), min(n, minimum))
    return slice(n - size, n)


def frozen_tail(values: np.ndarray, rel_tol: float = 1e-6, abs_tol: float = 1e-7) -> int:
    """Length of the run of (near) identical finite values at the end of `values`."""
    if values.size == 0 or not np.isfinite(values[-1]):
        return 0
    last = values[-1]
    tol = max(abs_tol, rel_tol * abs(float(last)))
    same = np.abs(values - last) <= tol
    if same.all():
        return int(values.size)
    return int(values.size - 1 - np.flatnonzero(~same)[-1])


def rolling_median(values: np.ndarray, window: int) -> np.ndarray:
    """Centered rolling median (edges use the available half-window)."""
    n = values.size
    if n == 0:
        return values.copy()
    half = window // 2
    padded = np.pad(values, half, mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return np.asarray(np.median(view, axis=1)[:n], dtype=np.float64)


def accuracy_fractions(series: Series) -> np.ndarray:
    """An accuracy series' finite values as fractions: a log whose values go above
    1.5 is in percent."""
    finite: np.ndarray = series.values[np.isfinite(series.values)]
    if finite.size and float(np.max(finite)) > 1.5:
        return np.asarray(finite / 100.0)
    return finite
