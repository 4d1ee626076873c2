"""The plateau finding's title says what the run has: a run without validation was
told that "training and validation loss have both stopped falling"."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lossdoctor.rules.regime import assess_regime
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS, Run, Series

EPOCHS = 15


def _falls_then_flat(level: float, seed: int) -> np.ndarray:
    """Down from 2x `level` over 4 epochs, then flat at `level` with a little noise."""
    rng = np.random.default_rng(seed)
    curve = np.full(EPOCHS, level) + 0.002 * rng.standard_normal(EPOCHS)
    curve[:4] = np.linspace(2 * level, level, 5)[:4]
    return curve


def _run(with_validation: bool) -> Run:
    epochs = np.arange(EPOCHS)
    series = {TRAIN_LOSS: Series(epochs, _falls_then_flat(1.2, 0), epochs.copy())}
    if with_validation:
        series[VAL_LOSS] = Series(epochs, _falls_then_flat(1.3, 1), epochs.copy())
    return Run("r", "mem", "csv", series)


def test_a_plateau_without_validation_speaks_of_training_only():
    verdict = assess_regime(_run(with_validation=False))
    assert verdict.regime == "plateau" and verdict.finding is not None
    title = verdict.finding.title
    match = re.fullmatch(r"Training loss has stayed near ([\d.]+) since epoch 4", title)
    assert match is not None, title  # the flat part starts at epoch 4
    assert float(match[1]) == pytest.approx(1.2, abs=0.01)


def test_a_plateau_with_validation_gives_both_levels():
    verdict = assess_regime(_run(with_validation=True))
    assert verdict.regime == "plateau" and verdict.finding is not None
    match = re.fullmatch(r"Training loss has stayed near ([\d.]+) since epoch 4, and "
                         r"validation loss near ([\d.]+)", verdict.finding.title)
    assert match is not None, verdict.finding.title
    assert (float(match[1]), float(match[2])) == pytest.approx((1.2, 1.3), abs=0.01)
