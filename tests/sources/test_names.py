"""Series names from the wild map onto canonical roles."""

from __future__ import annotations

import numpy as np
import pytest

from lossdoctor.run import LR, TRAIN_ACC, TRAIN_LOSS, TRAIN_LOSS_STEP, VAL_ACC, VAL_LOSS, Series
from lossdoctor.sources.names import assign_roles, canonicalize


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["epoch", "acc", "loss", "val_acc", "val_loss"],
         {TRAIN_ACC: "acc", TRAIN_LOSS: "loss", VAL_ACC: "val_acc", VAL_LOSS: "val_loss"}),
        (["train_loss_step", "train_loss_epoch", "val_loss_epoch", "epoch", "step"],
         {TRAIN_LOSS: "train_loss_epoch", VAL_LOSS: "val_loss_epoch",
          TRAIN_LOSS_STEP: "train_loss_step"}),
        (["Loss/train", "Loss/val", "Accuracy/train", "Accuracy/val"],
         {TRAIN_LOSS: "Loss/train", VAL_LOSS: "Loss/val", TRAIN_ACC: "Accuracy/train",
          VAL_ACC: "Accuracy/val"}),
        (["train/epoch_loss", "validation/epoch_loss", "train/epoch_learning_rate",
          "train/batch_loss"],
         {TRAIN_LOSS: "train/epoch_loss", VAL_LOSS: "validation/epoch_loss",
          LR: "train/epoch_learning_rate", TRAIN_LOSS_STEP: "train/batch_loss"}),
        (["training_loss", "validation_loss", "learning_rate"],
         {TRAIN_LOSS: "training_loss", VAL_LOSS: "validation_loss", LR: "learning_rate"}),
        (["train_loss", "valid_loss", "lr-SGD"],
         {TRAIN_LOSS: "train_loss", VAL_LOSS: "valid_loss", LR: "lr-SGD"}),
        # test stands in for validation only when there is none
        (["train_loss", "test_loss"], {TRAIN_LOSS: "train_loss", VAL_LOSS: "test_loss"}),
        (["train_loss", "val_loss", "test_loss"], {TRAIN_LOSS: "train_loss", VAL_LOSS: "val_loss"}),
        # a head of a multi-output model is not the total loss
        (["loss", "age_output_loss", "val_loss", "val_age_output_loss"],
         {TRAIN_LOSS: "loss", VAL_LOSS: "val_loss"}),
        (["sparse_categorical_accuracy", "val_sparse_categorical_accuracy"],
         {TRAIN_ACC: "sparse_categorical_accuracy", VAL_ACC: "val_sparse_categorical_accuracy"}),
        (["epoch", "F1_score", "mae"], {}),
    ],
)
def test_roles(names: list[str], expected: dict[str, str]):
    assert assign_roles(names) == expected


def test_overrides_win_and_unknown_override_names_the_series():
    s = Series.from_lists([0, 1], [1.0, 0.5])
    raw = {"total": s, "loss": s, "dev_total": s}
    out = canonicalize(raw, train_loss="total", val_loss="dev_total")
    assert out[TRAIN_LOSS] is s and set(out) == {TRAIN_LOSS, VAL_LOSS, "extra/loss"}
    with pytest.raises(KeyError, match=r"nope.*dev_total"):
        canonicalize(raw, train_loss="nope")


def test_nothing_is_lost():
    raw = {n: Series.from_lists(np.arange(2), np.ones(2)) for n in ["loss", "f1", "auc"]}
    assert set(canonicalize(raw)) == {TRAIN_LOSS, "extra/f1", "extra/auc"}
