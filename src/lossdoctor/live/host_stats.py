"""Layer statistics computed on the host with numpy, from tensors read back whole.

The Keras Doctor reads a small model's probe outputs, gradients and weights back as
arrays and computes its signals here: for a small model the read-back costs less than
tracing the reductions into a device function (on TensorFlow a traced op costs about
0.5 ms to trace, once per fit, and a reading of a few dozen ops is one or two
milliseconds however few values it reduces). Each function matches its traced
counterpart in `lossdoctor.integrations.keras_tf`, except that sums are taken in
float64: a float32 square overflows for values above about 1e19, which the traced
version reports as non-finite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lossdoctor.live.monitor import HISTOGRAM_BINS

SATURATION = 0.99  # sigmoid outside [0.01, 0.99], |tanh| above 0.99
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _flat64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _sum_of_squares(flat: np.ndarray) -> float:
    # Not `flat @ flat`: a BLAS call wakes BLAS's worker threads, which then spin for a
    # while and took CPU from the training (a 20-epoch fit ran 1.2x slower).
    return float(np.einsum("i,i->", flat, flat))


def norms(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The L2 norm of each array."""
    out = np.empty(len(arrays))
    for i, a in enumerate(arrays):
        flat = _flat64(a)
        out[i] = math.sqrt(_sum_of_squares(flat))
    return out


def difference_norms(now: Sequence[np.ndarray], before: Sequence[np.ndarray]) -> np.ndarray:
    """||now[i] - before[i]|| for each pair (a step's update)."""
    return norms([_flat64(a) - _flat64(b) for a, b in zip(now, before, strict=True)])


def activation_stats(x: np.ndarray, kind: str) -> np.ndarray:
    """[mean, std, dead share, saturated share, non-finite flag] of one layer output,
    as `keras_tf.activation_stats`: channels are last, a ReLU unit is dead when it is
    <= 0 for every sample and position; NaN where a statistic does not apply."""
    x = np.asarray(x)
    flat = _flat64(x)
    n = max(flat.size, 1)
    s1, s2 = float(flat.sum()), _sum_of_squares(flat)
    mean = s1 / n
    std = math.sqrt(max(s2 / n - mean * mean, 0.0))
    bad = 0.0 if math.isfinite(s1) and math.isfinite(s2) else 1.0
    dead = sat = math.nan
    if kind == "relu" and x.ndim >= 2 and x.size:
        dead = float(np.mean(x.reshape(-1, x.shape[-1]).max(axis=0) <= 0))
    if kind == "sigmoid":
        sat = float(np.count_nonzero(np.abs(flat - 0.5) > SATURATION - 0.5)) / n
    elif kind == "tanh":
        sat = float(np.count_nonzero(np.abs(flat) > SATURATION)) / n
    return np.array([mean, std, dead, sat, bad])


def bn_shift(x: np.ndarray, axis: int, moving_mean: np.ndarray,
             moving_variance: np.ndarray, epsilon: float) -> float:
    """Mean over channels of |z| + |ln s| for the BatchNorm input `x` (as
    `keras_tf.bn_shift`): z is the batch mean minus the moving mean in moving standard
    deviations, s the batch std over the moving std."""
    x = np.asarray(x, dtype=np.float64)
    channel = axis % x.ndim
    others = tuple(d for d in range(x.ndim) if d != channel)
    mean, var = x.mean(axis=others), x.var(axis=others)
    moving_var = np.asarray(moving_variance, dtype=np.float64) + epsilon
    z = np.abs(mean - np.asarray(moving_mean, dtype=np.float64)) / np.sqrt(moving_var)
    log_ratio = 0.5 * np.abs(np.log(np.maximum(var, 1e-12) / moving_var))
    return float(np.mean(z + log_ratio))


def histogram_row(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """[start, width, HISTOGRAM_BINS counts] of the finite values of `arrays` together:
    equal bins over their [min, max] (width 1 when all are equal; no counts and start
    inf when none is finite), a value on a bin edge in the upper bin, the maximum in
    the last: the binning of `keras_tf.histogram_rows`."""
    x = np.concatenate([np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays]) \
        if arrays else np.zeros(0, np.float32)
    row = np.zeros(2 + HISTOGRAM_BINS)
    lo, hi = (x.min(), x.max()) if x.size else (np.float32(np.nan),) * 2
    if not (math.isfinite(lo) and math.isfinite(hi)):  # min/max see any NaN or inf
        x = x[np.isfinite(x)]
        if not x.size:
            row[0], row[1] = math.inf, 1.0
            return row
        lo, hi = x.min(), x.max()
    # float32 arithmetic as on the device: a value on a bin edge lands in the same bin.
    width: Any = np.float32(1.0)
    if float(hi) - float(lo) > FLOAT32_MAX:  # exploded weights: bin in float64
        x, lo, width = x.astype(np.float64), np.float64(lo), float(hi) - float(lo)
    elif hi > lo:
        width = hi - lo
    scaled = x - lo
    scaled /= width
    scaled *= np.float32(HISTOGRAM_BINS)
    index = scaled.astype(np.intp)  # the floor: no value is below lo
    np.minimum(index, HISTOGRAM_BINS - 1, out=index)
    row[0], row[1] = float(lo), float(width)
    row[2:] = np.bincount(index, minlength=HISTOGRAM_BINS)
    return row
