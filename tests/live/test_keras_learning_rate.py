"""The Keras Doctor's `lr` series follows the learning rate as the user's schedule
moves it: a callback that sets it per epoch, and a schedule object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("sklearn")

from tests.live import digits_keras as dk  # noqa: E402

from lossdoctor.keras import Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow


def _fit(run_dir: Path, optimizer: object, callbacks: list[object]) -> dict[int, float]:
    x, y = dk.digits()
    keras.utils.set_random_seed(0)
    model = dk.mlp(depth=1)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    doctor = Doctor(run_dir, verbose=False)
    model.fit(x[:512], y[:512], batch_size=64, epochs=3, verbose=0,
              callbacks=[*callbacks, doctor])
    lr = read_run_dir(run_dir).series["lr"]
    return dict(zip(lr.steps.tolist(), lr.values.tolist(), strict=True))


def test_a_callback_that_sets_the_rate_each_epoch_is_followed(tmp_path):
    rates = [0.1, 0.01, 0.001]
    seen = _fit(tmp_path / "run", keras.optimizers.SGD(0.5),
                [keras.callbacks.LearningRateScheduler(lambda epoch: rates[epoch])])
    # Epoch ends (steps 7, 15, 23: 8 steps an epoch) hold that epoch's rate.
    assert [seen[s] for s in (7, 15, 23)] == pytest.approx(rates)
    assert set(np.round(list(seen.values()), 6)) <= {0.1, 0.01, 0.001}


def test_a_schedule_object_is_read_as_its_current_value(tmp_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=8,
                                                           decay_rate=0.5, staircase=True)
    seen = _fit(tmp_path / "run", keras.optimizers.SGD(schedule), [])
    # After 8, 16 and 24 updates: 0.05, 0.025, 0.0125.
    assert [seen[s] for s in (7, 15, 23)] == pytest.approx([0.05, 0.025, 0.0125])
