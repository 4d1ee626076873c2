"""A validation loss that fell early and has been flat for the last quarter of the run,
while training kept falling below it over that stretch, is overfitting ("stayed near
... since"), though the gap widened less than the flat-curve bar asks, or the late
half as a whole still fell (the wild log w29). Validation still falling at
the end, training flat over the stretch, or validation below training are not (the
wild log w29: test_cli)."""

from __future__ import annotations

import numpy as np
import pytest

from lossdoctor.rules.regime import assess_regime
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS, Run, Series

EPOCHS = 60
E = np.arange(EPOCHS, dtype=float)
rng = np.random.default_rng(1)


def run_of(train: np.ndarray, val: np.ndarray) -> Run:
    steps = np.arange(EPOCHS)
    return Run("r", "mem", "keras-csv", {TRAIN_LOSS: Series(steps, train, steps.copy()),
                                         VAL_LOSS: Series(steps, val, steps.copy())})


def noisy(y: np.ndarray, sd: float = 0.004) -> np.ndarray:
    return y + sd * rng.standard_normal(y.size)


TRAIN = 1.6 * np.exp(-E / 25.0) + 0.3  # still falling at the end: 0.30 + 0.15
# Falls until epoch 40 (1.6 -> 0.98), then stays there: as in w29.
VAL_STALLED = np.where(E < 40, 0.98 + 0.62 * (1 - E / 40) ** 2, 0.98)


def test_validation_flat_since_three_quarters_while_training_falls_is_overfitting():
    verdict = assess_regime(run_of(noisy(TRAIN), noisy(VAL_STALLED)))
    assert verdict.regime == "overfitting" and verdict.finding is not None
    near = float(verdict.finding.title.split("stayed near ")[1].split()[0])
    assert abs(near - 0.98) < 0.01
    assert verdict.finding.evidence["val_flat_last_points"] == 12  # of 48 binned points
    # Below the old bar for a flat validation curve: the gap widened by less than 10%
    # of the best validation loss since its best point.
    assert verdict.finding.evidence["gap_growth_since_best"] < 0.1 * 0.98


@pytest.mark.parametrize("case, val, train", [
    # Still falling at the end, however slowly: keep training.
    ("validation still falling", 0.98 + 0.62 * (1 - E / EPOCHS) ** 2, TRAIN),
    # Training did not move over the stretch either: nothing is being overfit.
    ("training flat too", VAL_STALLED, np.where(E < 40, TRAIN, TRAIN[40])),
    # Validation below training (dropout, augmentation): not fitting the training set.
    ("validation below training", VAL_STALLED - 0.8, TRAIN),
])
def test_other_late_shapes_are_not_stalled_overfitting(case: str, val: np.ndarray,
                                                        train: np.ndarray):
    verdict = assess_regime(run_of(noisy(train), noisy(val)))
    assert "val_flat_last_points" not in verdict.evidence, case
    assert verdict.regime != "overfitting", case


def test_a_short_run_is_judged_on_its_late_half_only():
    # 16 epochs: a last quarter of 4 points says too little; the late half decides.
    short = slice(0, 16)
    steps = np.arange(16)
    run = Run("r", "mem", "keras-csv", {
        TRAIN_LOSS: Series(steps, noisy(TRAIN[short]), steps.copy()),
        VAL_LOSS: Series(steps, noisy(0.98 + 0.62 * (1 - E[short] / 12) ** 2), steps.copy())})
    assert "val_flat_last_points" not in assess_regime(run).evidence
