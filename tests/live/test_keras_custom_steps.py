"""The Keras Doctor on models with their own `train_step`, whose logs have no `loss`:
one loss under another name is recorded as the training loss (with a note); several
(a GAN's `d_loss` and `g_loss`) are recorded as epoch series, none taken as the loss,
and the note says how to name one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from tests.live import digits_keras as dk  # noqa: E402

from lossdoctor.cli import main  # noqa: E402
from lossdoctor.diagnosis import diagnose  # noqa: E402
from lossdoctor.keras import Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow


class OwnStep(keras.Model):  # type: ignore[misc]
    """A classifier whose train_step reports its loss under `names` (the same value
    under each)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(32, activation="relu")
        self.out = keras.layers.Dense(10)
        self.trackers = [keras.metrics.Mean(name=n) for n in names]

    def call(self, x: Any) -> Any:
        return self.out(self.hidden(x))

    @property
    def metrics(self) -> list[Any]:
        return self.trackers

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, self(x), from_logits=True))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        for t in self.trackers:
            t.update_state(loss)
        return {t.name: t.result() for t in self.trackers}


def fit(run_dir: Path, names: tuple[str, ...]) -> Doctor:
    x, y = dk.digits()
    keras.utils.set_random_seed(0)
    model = OwnStep(names)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    doc = Doctor(run_dir, verbose=False)
    model.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[doc])
    return doc


def notes(run_dir: Path) -> list[str]:
    meta = json.loads((run_dir / "run.json").read_text())
    return [n["note"] for n in meta["notes"] if n["signal"] == "loss"]


def test_one_loss_under_its_own_name_is_the_training_loss(tmp_path: Path):
    doc = fit(tmp_path / "run", ("my_loss",))
    run = read_run_dir(tmp_path / "run")
    steps, epochs = run.get("train/loss_step"), run.get("train/loss")
    assert steps is not None and len(steps) == 3 * math.ceil(len(dk.digits()[0]) / 64)
    assert epochs is not None and len(epochs) == 3
    assert notes(tmp_path / "run") == [
        "the logs have no 'loss': 'my_loss' is recorded as the training loss"]
    assert doc.report().regime != "unknown"
    assert diagnose(run).regime == doc.report().regime


def test_several_losses_are_kept_and_none_is_taken(tmp_path: Path):
    doc = fit(tmp_path / "run", ("d_loss", "g_loss"))
    run = read_run_dir(tmp_path / "run")
    assert run.get("train/loss_step") is None and run.get("train/loss") is None
    assert {"extra/epoch/d_loss", "extra/epoch/g_loss"} <= set(run.series)
    [note] = notes(tmp_path / "run")
    assert "several (d_loss, g_loss)" in note and "--train-loss" in note
    assert "monitor-error" not in doc.report().codes()
    # The way the note names: diagnosis with one of them as the loss, or exit 2 with
    # the series there are when the name is wrong.
    assert main(["diagnose", str(tmp_path / "run")]) == 2
    assert main(["diagnose", "--train-loss", "epoch/d_loss", str(tmp_path / "run")]) == 0
    assert read_run_dir(tmp_path / "run", train_loss="epoch/d_loss").get("train/loss") \
        is not None
    assert main(["diagnose", "--train-loss", "epoch/nope", str(tmp_path / "run")]) == 2
