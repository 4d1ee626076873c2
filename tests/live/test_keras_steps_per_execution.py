"""The Keras Doctor with `steps_per_execution=k`: Keras calls the batch hooks once per
execution of k batches (fewer at an epoch's end). A step of the Doctor's series is
then one execution: its loss is the mean of the execution's batches, and its update
norm the execution's update divided by the updates it holds, so update ratios keep the
per-batch scale that their bands (and the ~1e-3 rule of thumb) are about. Before,
an execution of 32 batches read as a ratio 13 times a plain run's, and a partial
execution's loss was recovered as if it were a full one."""

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

BATCH = 32  # 1797 digits: 57 batches an epoch, executions of 32 and 25 of them


def _fit(run_dir: Path, executions: int, epochs: int, accumulation: int | None = None
         ) -> tuple[Doctor, list[float]]:
    x, y = dk.digits()
    keras.utils.set_random_seed(0)
    model = dk.mlp(depth=1)
    model.compile(optimizer=keras.optimizers.Adam(
                      1e-3, gradient_accumulation_steps=accumulation),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=executions)
    doctor = Doctor(run_dir, probe=(x[:64], y[:64]), verbose=False)
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0,
                        callbacks=[doctor])
    return doctor, list(history.history["loss"])


def test_update_ratios_keep_the_per_batch_scale(tmp_path: Path) -> None:
    medians = {}
    # Plain; executions of 32 batches; the same with an update every 4 batches.
    for name, k, accumulation in (("plain", 1, None), ("k32", 32, None),
                                  ("k32-acc4", 32, 4)):
        doctor, _ = _fit(tmp_path / name, k, epochs=6, accumulation=accumulation)
        assert not {"update-ratio-high", "update-ratio-low"} & set(doctor.report().codes())
        ratios = read_run_dir(tmp_path / name).get("layer/dense_0/update_ratio")
        assert ratios is not None and len(ratios) >= 3
        medians[name] = float(np.median(ratios.values))
    # Per update, on the plain run's scale (measured: 0.53x, and 1.27x with the
    # smoother accumulated gradients); undivided, k32 read 13x the plain median.
    for name in ("k32", "k32-acc4"):
        assert 0.2 < medians[name] / medians["plain"] < 2.5, medians
    notes = json.loads((tmp_path / "k32" / "run.json").read_text())["notes"]
    assert [n["signal"] for n in notes] == ["steps"]


def test_execution_losses_add_up_to_the_epochs_loss(tmp_path: Path) -> None:
    _, epoch_losses = _fit(tmp_path / "run", 32, epochs=3)
    steps = read_run_dir(tmp_path / "run").series["train/loss_step"]
    assert len(steps) == 3 * 2
    for epoch, reported in enumerate(epoch_losses):
        full, partial = steps.values[2 * epoch:2 * epoch + 2]
        assert (32 * full + 25 * partial) / 57 == pytest.approx(reported, rel=1e-5)
