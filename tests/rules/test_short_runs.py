"""Runs of a handful of epochs: a loss that falls at every epoch is still learning,
even when its fall slows so much that a straight line fits it badly; a short run that
really stopped is still a plateau."""

from __future__ import annotations

import numpy as np

from lossdoctor.rules._stats import trend
from lossdoctor.rules.regime import assess_regime
from lossdoctor.run import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run, Series


def run_of(train_loss: list[float], val_loss: list[float], train_acc: list[float],
           val_acc: list[float]) -> Run:
    epochs = np.arange(len(train_loss))
    return Run("r", "mem", "csv", {
        name: Series(epochs, np.array(values), epochs.copy())
        for name, values in ((TRAIN_LOSS, train_loss), (VAL_LOSS, val_loss),
                             (TRAIN_ACC, train_acc), (VAL_ACC, val_acc))})


def test_four_falling_epochs_of_a_real_keras_run_are_still_learning():
    # The epoch logs of a 4-epoch fit (digits CNN with dropout, Adam 1e-3): validation
    # loss still fell 11% in the last epoch. A straight line through the decelerating
    # fall left t = 2.75 (train) and 2.98 (validation), and the run was called a plateau.
    verdict = assess_regime(run_of([1.584, 0.520, 0.250, 0.187], [0.914, 0.493, 0.395, 0.352],
                                   [0.583, 0.897, 0.941, 0.952], [0.783, 0.853, 0.886, 0.894]))
    assert verdict.regime == "still-learning", verdict.evidence
    assert verdict.finding is None


def test_five_epochs_of_a_slowing_fall_are_still_learning():
    verdict = assess_regime(run_of([2.30, 0.90, 0.55, 0.42, 0.37], [2.10, 0.95, 0.70, 0.62, 0.59],
                                   [0.3, 0.7, 0.8, 0.85, 0.87], [0.35, 0.68, 0.76, 0.79, 0.80]))
    assert verdict.regime == "still-learning", verdict.evidence


def test_a_short_run_that_stopped_falling_is_still_a_plateau():
    verdict = assess_regime(run_of([0.90, 0.62, 0.600, 0.603, 0.599, 0.601],
                                   [0.95, 0.70, 0.690, 0.694, 0.689, 0.692],
                                   [0.60, 0.74, 0.75, 0.75, 0.75, 0.75],
                                   [0.58, 0.70, 0.71, 0.71, 0.71, 0.71]))
    assert verdict.regime == "plateau", verdict.evidence


def test_order_alone_needs_five_points_or_some_support_from_the_line():
    x4 = np.linspace(0.0, 1.0, 4)
    # In order, but one drop and then a standstill: a line fits it no better than
    # noise (t < 2), so it stays flat.
    dropped_once = np.array([1.0, 0.60, 0.59, 0.58])
    assert trend(x4, dropped_once).t < 2.0
    assert trend(x4, dropped_once).direction == "flat"
    # Five noisy points out of order stay flat; the same values in order are a fall.
    x5 = np.linspace(0.0, 1.0, 5)
    noisy = np.array([0.50, 0.53, 0.47, 0.52, 0.48])
    assert trend(x5, noisy).direction == "flat"
    assert trend(x5, np.sort(noisy)[::-1]).direction == "falling"
    assert trend(x5, np.sort(noisy)).direction == "rising"
