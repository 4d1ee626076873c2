"""A plateau at chance level on hand-made curves: a run that never learned is told
apart from a plateau above chance (the real-run test is in test_real_runs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossdoctor.rules.regime import assess_regime
from lossdoctor.run import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run, Series

EPOCHS = 15
rng = np.random.default_rng(0)


def run_of(train_loss: np.ndarray, val_loss: np.ndarray, train_acc: np.ndarray | None,
           val_acc: np.ndarray | None) -> Run:
    epochs = np.arange(EPOCHS)
    series = {TRAIN_LOSS: Series(epochs, train_loss, epochs.copy()),
              VAL_LOSS: Series(epochs, val_loss, epochs.copy())}
    if train_acc is not None:
        series[TRAIN_ACC] = Series(epochs, train_acc, epochs.copy())
    if val_acc is not None:
        series[VAL_ACC] = Series(epochs, val_acc, epochs.copy())
    return Run("r", "mem", "csv", series)


def flat(level: float, noise: float = 0.002) -> np.ndarray:
    return level + noise * rng.standard_normal(EPOCHS)


def stuck_at_chance(classes: int, percent: bool = False) -> Run:
    """A flat loss from ln C and accuracies near 1/C, as a dead network gives."""
    scale = 100.0 if percent else 1.0
    return run_of(flat(math.log(classes)), flat(math.log(classes)),
                  scale * flat(1.0 / classes, 0.005), scale * flat(1.0 / classes, 0.005))


@pytest.mark.parametrize(("classes", "percent"), [(10, False), (26, False), (2, False),
                                                  (10, True)])
def test_a_plateau_at_chance_says_the_run_never_learned(classes: int, percent: bool):
    verdict = assess_regime(stuck_at_chance(classes, percent))
    assert verdict.regime == "plateau" and verdict.finding is not None
    assert verdict.finding.evidence["chance_classes"] == classes
    assert verdict.finding.title.startswith("The run never learned")
    assert "overfit a handful of samples" in verdict.finding.fixes[0]


def test_a_plateau_above_chance_keeps_the_plateau_advice():
    # The same loss curve, but accuracy rose to 40%: the floor is capacity or step size.
    run = run_of(flat(math.log(10)), flat(math.log(10)), flat(0.4, 0.01), flat(0.38, 0.01))
    verdict = assess_regime(run)
    assert verdict.regime == "plateau" and verdict.finding is not None
    assert "chance_classes" not in verdict.finding.evidence
    assert not verdict.finding.title.startswith("The run never learned")


def test_no_claim_without_accuracies_or_away_from_ln_c():
    for run in (run_of(flat(math.log(10)), flat(math.log(10)), None, None),
                run_of(flat(1.7), flat(1.7), flat(0.1, 0.005), flat(0.1, 0.005))):
        verdict = assess_regime(run)
        assert verdict.finding is not None
        assert "chance_classes" not in verdict.finding.evidence


def test_a_first_loss_near_ln_c_by_coincidence_is_not_chance():
    # As a one-unit bottleneck on digits gave: a first validation loss of 1.959 (ln 7 is
    # 1.946), accuracy about 20%, and a loss that went on to fall 10% below ln 7.
    loss = np.concatenate([[1.96, 1.85, 1.78], flat(1.76)[3:]])
    run = run_of(loss + 0.03, loss, flat(0.2, 0.005), flat(0.19, 0.005))
    verdict = assess_regime(run)
    assert verdict.regime == "plateau" and verdict.finding is not None
    assert "chance_classes" not in verdict.finding.evidence
