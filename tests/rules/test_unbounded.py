"""A loss that falls without a floor is diverging; one that converges below zero (a
log-likelihood, a cosine similarity) or falls slowly above it is not (real runs:
test_real_runs; the wild ECG log w30: test_cli)."""

from __future__ import annotations

import numpy as np
import pytest

from lossdoctor.rules.regime import assess_regime
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS, Run, Series

rng = np.random.default_rng(0)
T = np.linspace(0.0, 1.0, 40)


def run_of(train: np.ndarray) -> Run:
    steps = np.arange(train.size)
    val = train * 1.05
    return Run("r", "mem", "csv", {TRAIN_LOSS: Series(steps, train, steps.copy()),
                                   VAL_LOSS: Series(steps, val, steps.copy())})


def noisy(y: np.ndarray, share: float = 0.01) -> np.ndarray:
    return y * (1.0 + share * rng.standard_normal(y.size))


@pytest.mark.parametrize("curve", [
    -3.4e4 - 6.5e7 * T ** 1.8,  # faster and faster below zero (as the ECG log)
    0.7 - 900.0 * T,  # binary cross-entropy on targets above 1: steady, from above zero
])
def test_a_fall_without_a_floor_is_diverging(curve: np.ndarray):
    verdict = assess_regime(run_of(noisy(curve)))
    assert verdict.regime == "diverging" and verdict.finding is not None
    assert verdict.finding.title.startswith("The loss fell without a floor")
    assert verdict.finding.evidence["growth"] >= 100
    assert "targets in [0, 1]" in verdict.finding.fixes[0]


@pytest.mark.parametrize("curve", [
    -0.05 - 2.5 * (1.0 - np.exp(-4.0 * T)),  # a log-likelihood converging below zero
    -0.01 - 0.95 * (1.0 - np.exp(-5.0 * T)),  # a cosine similarity heading for -1
    -1.0 - 15.0 * T,  # steady but only 16x its start: no claim
    2.3 - 0.5 * T,  # slow, above zero
])
def test_a_floor_or_a_small_fall_is_not(curve: np.ndarray):
    verdict = assess_regime(run_of(noisy(curve, 0.002)))
    assert verdict.regime != "diverging", verdict
