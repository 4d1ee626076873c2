"""A real two-output Keras model on digits (the digit, and its parity through a
sigmoid): with the parity labels shuffled that output cannot learn while the digit
output does, and `barely-learning` names it from the CSVLogger file, from the
TensorBoard folder and from the live Keras Doctor's run folder; with true parity labels
nothing is found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lossdoctor.diagnosis import Diagnosis, diagnose
from lossdoctor.sources import load

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

pytestmark = pytest.mark.slow

EPOCHS = 22  # barely-learning waits for 20


def train(folder: Path, shuffled: bool) -> None:
    from sklearn.datasets import load_digits

    from lossdoctor.keras import Doctor

    x, y = load_digits(return_X_y=True)
    x = ((x - x.mean(0)) / (x.std(0) + 1e-8)).astype(np.float32)
    parity = (y % 2).astype(np.float32)
    if shuffled:
        parity = np.random.default_rng(0).permutation(parity)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(10, name="digit")(hidden),
                                 keras.layers.Dense(1, activation="sigmoid",
                                                    name="parity")(hidden)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        "binary_crossentropy"],
                  metrics=[["accuracy"], ["accuracy"]])
    model.fit(x[300:], [y[300:], parity[300:]], batch_size=64, epochs=EPOCHS, verbose=0,
              validation_data=(x[:300], [y[:300], parity[:300]]),
              callbacks=[keras.callbacks.CSVLogger(str(folder / "training.csv")),
                         keras.callbacks.TensorBoard(str(folder / "tb")),
                         Doctor(folder / "live", verbose=False)])


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multi-output")
    for name in ("shuffled", "healthy"):
        (root / name).mkdir()
        train(root / name, name == "shuffled")
    return {"shuffled": root / "shuffled", "healthy": root / "healthy"}


def diagnosed(path: Path) -> Diagnosis:
    [loaded] = load(path)
    assert loaded.error is None and loaded.run is not None
    return diagnose(loaded.run)


@pytest.mark.parametrize("log", ["training.csv", "tb", "live"])
def test_the_output_that_cannot_learn_is_named(logs, log):
    found = diagnosed(logs["shuffled"] / log)
    assert found.regime == "still-learning"  # the summed loss falls with the digit output
    (head,) = [f for f in found.findings if f.code == "barely-learning"]
    assert head.layer == "parity" and head.evidence["classes"] == 2
    assert head.evidence["best_accuracy"] < 0.75


@pytest.mark.parametrize("log", ["training.csv", "tb", "live"])
def test_outputs_that_learn_are_quiet(logs, log):
    found = diagnosed(logs["healthy"] / log)
    assert not [f for f in found.findings if f.code == "barely-learning"]
