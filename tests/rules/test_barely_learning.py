"""barely-learning on hand-made curves: a classifier still near a uniform guess after
many epochs, told apart from runs that learned, short runs, regressions and the
plateau at chance (real runs: test_real_runs and the wild logs in test_cli)."""

from __future__ import annotations

import math

import numpy as np

from lossdoctor.diagnosis import diagnose
from lossdoctor.rules.curves import barely_learning
from lossdoctor.run import LR, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run, Series

rng = np.random.default_rng(0)


def run_of(train_loss: np.ndarray, val_loss: np.ndarray, train_acc: np.ndarray | None,
           val_acc: np.ndarray | None, epochs: bool = True, lr: float | None = None) -> Run:
    n = len(train_loss)
    steps = np.arange(n)
    ep = steps.copy() if epochs else None
    series = {TRAIN_LOSS: Series(steps, train_loss, ep), VAL_LOSS: Series(steps, val_loss, ep)}
    if train_acc is not None:
        series[TRAIN_ACC] = Series(steps, train_acc, ep)
    if val_acc is not None:
        series[VAL_ACC] = Series(steps, val_acc, ep)
    if lr is not None:
        series[LR] = Series(steps, np.full(n, lr), ep)
    return Run("r", "mem", "csv", series)


def slow_binary(n: int = 30, drop: float = 0.05, noise: float = 0.012) -> Run:
    """A noisy training loss and a smooth validation loss that fall `drop` of ln 2 over
    `n` epochs, with accuracies a little above 50%."""
    level = math.log(2) * (1.0 - drop * np.linspace(0.0, 1.0, n) ** 0.7)
    acc = 0.5 + 0.1 * np.linspace(0.0, 1.0, n)
    return run_of(level + noise * rng.standard_normal(n), level + 0.002,
                  acc + 0.03 * rng.standard_normal(n), acc)


def test_a_slow_binary_classifier_near_ln_2_is_barely_learning():
    [finding] = barely_learning(slow_binary())
    assert finding.code == "barely-learning"
    assert finding.evidence["classes"] == 2 and finding.evidence["epochs"] == 30
    assert 0.04 < float(finding.evidence["loss_removed_share"]) < 0.1
    assert "ln 2 = 0.6931" in finding.title and finding.title.startswith("After 30 epochs")
    assert finding.epoch == 0  # where it starts: the first epoch
    assert "learning rate" in finding.fixes[0]


def test_the_runs_own_learning_rate_leads_the_fixes():
    run = slow_binary()
    run.series[LR] = Series(np.arange(30), np.full(30, 1e-4), np.arange(30))
    [finding] = barely_learning(run)
    assert finding.fixes[0].startswith("Raise the learning rate from 0.0001 to 0.0003-0.001")
    assert finding.evidence["lr_first"] == 1e-4


def test_without_epochs_it_counts_validation_passes():
    run = slow_binary()
    plain = run_of(*(run.series[k].values for k in (TRAIN_LOSS, VAL_LOSS, TRAIN_ACC, VAL_ACC)),
                   epochs=False)
    [finding] = barely_learning(plain)
    assert finding.evidence["validation_passes"] == 30
    assert finding.title.startswith("After 30 validation passes")


def test_quiet_on_runs_that_learned_are_short_or_are_not_classifiers():
    assert barely_learning(slow_binary(drop=0.3)) == []  # 30% below ln 2: learning
    assert barely_learning(slow_binary(n=12)) == []  # too early to say
    run = slow_binary()
    no_acc = run_of(run.series[TRAIN_LOSS].values, run.series[VAL_LOSS].values, None, None)
    assert barely_learning(no_acc) == []  # a loss near 0.69 need not be a classifier's
    # Accurate though the loss is near ln 2 (underconfident): not near chance.
    accurate = run_of(run.series[TRAIN_LOSS].values, run.series[VAL_LOSS].values,
                      np.full(30, 0.9), np.full(30, 0.88))
    assert barely_learning(accurate) == []
    # A first loss that is no ln C (0.9: between ln 2 and ln 3).
    off = run_of(run.series[TRAIN_LOSS].values + 0.21, run.series[VAL_LOSS].values + 0.21,
                 run.series[TRAIN_ACC].values, run.series[VAL_ACC].values)
    assert barely_learning(off) == []


def test_a_flat_run_at_chance_is_the_plateau_only():
    n = 25
    flat = math.log(10) + 0.002 * rng.standard_normal(n)
    run = run_of(flat, flat.copy(), 0.1 + 0.005 * rng.standard_normal(n),
                 0.1 + 0.005 * rng.standard_normal(n))
    assert barely_learning(run)  # the rule alone sees it ...
    d = diagnose(run)
    assert d.regime == "plateau"
    assert "barely-learning" not in d.codes()  # ... and the plateau at chance says it


def test_in_the_diagnosis_of_a_slow_noisy_descent():
    d = diagnose(slow_binary())
    assert d.regime == "still-learning"
    assert d.codes() == ["barely-learning"]
