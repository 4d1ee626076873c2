"""The digits search with Keras 3: a callback hands each epoch's metrics to the
reporter; the TrialPruned it raises ends model.fit and the search records the reason.

    lossdoctor search examples/search_digits_keras.py:train --trials 20
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from lossdoctor.search import Choice, LogUniform, TrialReporter

SPACE = {"lr": LogUniform(1e-6, 1e1), "momentum": Choice([0.5, 0.9, 0.95, 0.99])}
EPOCHS = 20


@lru_cache(maxsize=1)
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    # The same fixed validation split as the PyTorch example.
    x_tr, x_val, y_tr, y_val = train_test_split(
        (x / 16.0).astype(np.float32), y, test_size=0.2, random_state=0, stratify=y)
    return x_tr, y_tr, x_val, y_val


class _Report(keras.callbacks.Callback):
    def __init__(self, reporter: TrialReporter) -> None:
        super().__init__()
        self.reporter = reporter

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        self.reporter.report(epoch, train_loss=logs.get("loss"), val_loss=logs.get("val_loss"),
                             train_accuracy=logs.get("accuracy"),
                             val_accuracy=logs.get("val_accuracy"))


def train(params: dict[str, Any], reporter: TrialReporter) -> keras.Model:
    keras.utils.set_random_seed(reporter.seed)
    x_tr, y_tr, x_val, y_val = data()
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(params["lr"], momentum=params["momentum"]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_tr, y_tr, validation_data=(x_val, y_val), epochs=EPOCHS, batch_size=128,
              verbose=0, callbacks=[_Report(reporter)])
    return model  # lossdoctor.ensemble predicts with it through the Keras adapter
