"""Numeric signatures on hand-made curves (the real-run tests are in test_real_runs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossdoctor.rules.numerics import frozen_loss, nan_loss
from lossdoctor.run import TRAIN_LOSS, Run, Series


def run_of(values: list[float] | np.ndarray, epochs: bool = True) -> Run:
    values = np.asarray(values, dtype=np.float64)
    steps = np.arange(values.size)
    series = Series(steps, values, steps.copy() if epochs else None)
    return Run("r", "mem", "csv", {TRAIN_LOSS: series})


def falling(n: int, start: float = 2.3, end: float = 0.4) -> list[float]:
    return list(np.linspace(start, end, n) + 0.01 * np.sin(np.arange(n)))


@pytest.mark.parametrize(
    ("value", "constant"),
    [(87.3365, 87.3365), (16.1181, 16.1181), (103.2789, 103.2789), (100.0, 100.0)],
)
def test_frozen_at_a_saturation_constant_is_softmax_overflow(value: float, constant: float):
    [finding] = frozen_loss(run_of(falling(5) + [value] * 10))
    assert finding.code == "softmax-overflow"
    assert finding.evidence["saturation_constant"] == pytest.approx(constant, abs=1e-3)
    assert finding.evidence["saturated_fraction"] == pytest.approx(1.0, abs=1e-3)
    assert finding.epoch == 5


def test_partial_saturation_is_a_fraction_of_the_constant():
    value = 87.33654 * 0.9  # nine samples in ten saturated, the rest exactly right
    [finding] = frozen_loss(run_of(falling(4) + [value] * 8))
    assert finding.code == "softmax-overflow"
    assert finding.evidence["saturated_fraction"] == pytest.approx(0.9, abs=1e-3)


def test_frozen_at_ln_c_is_a_uniform_output():
    [finding] = frozen_loss(run_of([math.log(10)] * 20))
    assert finding.code == "constant-loss"
    assert finding.evidence["classes"] == 10
    assert finding.epoch == 0


def test_any_frozen_value_is_constant_loss():
    [finding] = frozen_loss(run_of(falling(10) + [0.731] * 10))
    assert finding.code == "constant-loss"
    assert "classes" not in finding.evidence


def test_a_noisy_plateau_is_not_frozen():
    rng = np.random.default_rng(0)
    assert frozen_loss(run_of(0.7 + 0.001 * rng.standard_normal(50))) == []


def test_nan_loss_reports_the_first_bad_step_and_the_last_finite_value():
    values = [*falling(7), 5.0, float("nan"), float("inf"), float("nan")]
    [finding] = nan_loss(run_of(values, epochs=False))
    assert finding.code == "nan-loss"
    assert finding.step == 8
    assert finding.evidence["last_finite"] == 5.0
    assert finding.evidence["bad_points"] == 3


def test_healthy_curve_has_no_numeric_finding():
    run = run_of(falling(40))
    assert nan_loss(run) == [] and frozen_loss(run) == []
