"""barely-learning per output of a multi-output Keras model: the summed loss falls
with the outputs that learn and hides one that stays at chance."""

from __future__ import annotations

import math

import numpy as np

from lossdoctor.diagnosis import diagnose
from lossdoctor.rules.curves import barely_learning
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS, Run, Series

EPOCHS = 30
rng = np.random.default_rng(0)


def series(values: np.ndarray) -> Series:
    epochs = np.arange(EPOCHS)
    return Series(epochs, np.asarray(values, dtype=float), epochs.copy())


def learning(classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Loss from ln C down to a tenth of it, accuracy from chance up to 90%."""
    t = np.linspace(0.0, 1.0, EPOCHS)
    return (math.log(classes) * (0.1 + 0.9 * np.exp(-4 * t)),
            1 / classes + (0.9 - 1 / classes) * (1 - np.exp(-4 * t)))


def at_chance(classes: int) -> tuple[np.ndarray, np.ndarray]:
    return (math.log(classes) + 0.01 * rng.standard_normal(EPOCHS),
            1 / classes + 0.01 * rng.standard_normal(EPOCHS))


def keras_log(**heads: tuple[np.ndarray, np.ndarray]) -> Run:
    """A CSVLogger's columns as read: the summed loss, then each output's loss and
    accuracy under `extra/`, validation too (the same curves)."""
    total = sum(loss for loss, _ in heads.values())
    found = {TRAIN_LOSS: series(total), VAL_LOSS: series(total)}
    for name, (loss, acc) in heads.items():
        for prefix in ("", "val_"):
            found[f"extra/{prefix}{name}_loss"] = series(loss)
            found[f"extra/{prefix}{name}_accuracy"] = series(acc)
    return Run("r", "mem", "keras-csv", found)


def test_an_output_at_chance_beside_one_that_learns_is_found():
    run = keras_log(age_output=learning(5), gender_output=at_chance(2))
    (finding,) = barely_learning(run)
    assert finding.layer == "gender_output"
    assert finding.evidence["output"] == "gender_output"
    assert finding.evidence["classes"] == 2
    assert "output gender_output" in finding.title
    assert "other outputs learn" in finding.explanation
    found = diagnose(run)
    assert found.regime == "still-learning"  # the summed loss falls
    assert [(f.code, f.layer) for f in found.findings] == [("barely-learning",
                                                            "gender_output")]


def test_outputs_that_all_learn_are_quiet():
    assert barely_learning(keras_log(age_output=learning(5), gender_output=learning(2))) == []


def test_outputs_all_at_chance_are_not_told_apart():
    # Nothing singles one output out: the run's own curves carry the story.
    run = keras_log(a=at_chance(2), b=at_chance(3))
    assert [f.layer for f in barely_learning(run)] == []


def test_one_output_is_the_run_itself():
    run = keras_log(gender_output=at_chance(2))
    assert [f for f in barely_learning(run) if f.layer is not None] == []


def test_an_output_starting_above_ln_c_that_lingers_at_chance_is_found():
    # A sigmoid output's first epoch can read 0.8 where ln 2 = 0.69.
    loss, acc = at_chance(2)
    loss[:3] = [0.81, 0.77, 0.74]
    (finding,) = barely_learning(keras_log(digit=learning(10), parity=(loss, acc)))
    assert finding.layer == "parity" and finding.evidence["classes"] == 2


def test_a_loss_lingering_near_some_ln_c_with_accuracy_above_it_is_not_chance():
    # Read off wild log w25's age output: loss 1.26-1.50 (ln 4 = 1.39) at 15-45%
    # accuracy; 4 classes is a coincidence of the loss, not a fact of the output.
    loss = np.linspace(1.50, 1.30, EPOCHS)
    acc = np.linspace(0.30, 0.42, EPOCHS)
    assert barely_learning(keras_log(age=(loss, acc), digit=learning(10))) == []
