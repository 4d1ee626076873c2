"""The Keras Doctor with gradient accumulation (`gradient_accumulation_steps=k`): the
optimizer changes the weights on one step in k, so weight readings are taken on those
steps. Before, most readings fell between updates, read an update of zero and a healthy
run was told its learning rate was far too low."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("sklearn")

from tests.live import digits_keras as dk  # noqa: E402

from lossdoctor.keras import Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow

K = 4  # micro-batches per update


def _fit_twice(run_dir: Path, lr: float) -> Doctor:
    """Two fits of 2 and 1 epochs (29 steps each: the second fit starts mid-cycle)."""
    x, y = dk.digits()
    keras.utils.set_random_seed(0)
    model = dk.mlp(depth=2)
    model.compile(optimizer=keras.optimizers.Adam(lr, gradient_accumulation_steps=K),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    doctor = Doctor(run_dir, probe=(x[:64], y[:64]), verbose=False)
    for epochs in (2, 1):
        model.fit(x, y, batch_size=dk.BATCH, epochs=epochs, verbose=0, callbacks=[doctor])
    return doctor


def test_update_readings_land_on_the_steps_that_apply_an_update(tmp_path: Path) -> None:
    doctor = _fit_twice(tmp_path / "run", lr=1e-3)
    assert not {"update-ratio-low", "update-ratio-high"} & set(doctor.report().codes())
    run = read_run_dir(tmp_path / "run")
    for name in ("dense_0", "dense_1", "logits"):
        ratios = run.get(f"layer/{name}/update_ratio")
        assert ratios is not None and len(ratios) >= 15
        # The optimizer's counter starts at 0 with the Doctor's steps: step s applies
        # the update when (s + 1) is a multiple of K, in the second fit too.
        assert all((int(s) + 1) % K == 0 for s in ratios.steps), ratios.steps
        assert np.all(ratios.values > 1e-4)
    notes = json.loads((tmp_path / "run" / "run.json").read_text())["notes"]
    assert [n["signal"] for n in notes].count("updates") == 2  # one per fit


def test_a_tiny_rate_is_still_found_with_accumulation(tmp_path: Path) -> None:
    doctor = _fit_twice(tmp_path / "run", lr=1e-7)
    assert "update-ratio-low" in doctor.report().codes()
