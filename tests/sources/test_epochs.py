"""Epoch numbers recovered for TensorBoard series."""

from __future__ import annotations

from lossdoctor.run import Series
from lossdoctor.sources.epochs import attach_epochs


def test_keras_epoch_tags_are_their_own_epochs():
    out = attach_epochs({"train/epoch_loss": Series.from_lists([0, 1, 2], [3.0, 2.0, 1.0])})
    assert out["train/epoch_loss"].epochs.tolist() == [0, 1, 2]


def test_an_epoch_scalar_maps_steps_to_epochs():
    raw = {
        "train/loss": Series.from_lists([1, 5, 9, 10, 11, 19, 25], [1.0] * 7),
        "epoch": Series.from_lists([9, 19], [0.0, 1.0]),
    }
    out = attach_epochs(raw)
    assert out["train/loss"].epochs.tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_keras_evaluation_iterations_mark_epoch_ends():
    raw = {
        "train/batch_loss": Series.from_lists([1, 38, 39, 76, 77], [1.0] * 5),
        "validation/evaluation_loss_vs_iterations": Series.from_lists([38, 76, 114], [1.0] * 3),
    }
    assert attach_epochs(raw)["train/batch_loss"].epochs.tolist() == [0, 0, 1, 1, 2]


def test_without_a_hint_epochs_stay_unknown():
    out = attach_epochs({"loss": Series.from_lists([0, 1], [1.0, 0.5])})
    assert out["loss"].epochs is None
