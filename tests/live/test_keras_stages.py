"""Training in stages with one Keras Doctor: a head trained on a frozen base, then the
base unfrozen and the model recompiled and fitted again (the usual fine-tuning
recipe, with the same callback list). The two fits make one run: steps count on, the
newly trainable layer is read from the second fit's first step, densely, and the run
directory reads back the same as the Doctor's own report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from tests.live import digits_keras as dk  # noqa: E402

from lossdoctor.diagnosis import diagnose  # noqa: E402
from lossdoctor.keras import Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow

BATCH = 64
EPOCHS = (2, 2)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Doctor, Path, int]:
    """(the Doctor, its run directory, the first fit's steps)."""
    x, y = dk.digits()
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu")],
                            name="base")
    model = keras.Sequential([keras.Input((64,)), base, keras.layers.Dense(10, name="head")])
    run_dir = tmp_path_factory.mktemp("stages") / "run"
    doc = Doctor(run_dir, probe=(x[:64], y[:64]), verbose=False)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    base.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS[0], verbose=0, callbacks=[doc])
    first_fit_steps = EPOCHS[0] * -(-len(x) // BATCH)
    base.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    model.fit(x, y, batch_size=BATCH, epochs=sum(EPOCHS), initial_epoch=EPOCHS[0],
              validation_split=0.2, verbose=0, callbacks=[doc])
    return doc, run_dir, first_fit_steps


def test_both_fits_make_one_run_without_monitor_errors(staged: tuple[Doctor, Path, int]):
    doc, run_dir, first = staged
    report = doc.report()
    assert "monitor-error" not in report.codes(), [f.evidence for f in report.findings]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "closed"
    assert [n["note"].split(",")[0] for n in meta["notes"] if n["signal"] == "fit"] == [
        f"fit 2 began at step {first} (epoch {EPOCHS[0]})"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2
    steps = read_run_dir(run_dir).get("train/loss_step").steps
    assert np.array_equal(steps, np.arange(steps.size)) and steps.size > first
    train_loss = read_run_dir(run_dir).get("train/loss")
    assert train_loss is not None and train_loss.epochs is not None
    assert train_loss.epochs.tolist() == list(range(sum(EPOCHS)))


def test_the_unfrozen_layer_is_read_densely_from_the_second_fit(
        staged: tuple[Doctor, Path, int]):
    doc, run_dir, first = staged
    run = read_run_dir(run_dir)
    base = run.get("layer/base/weight_norm")
    head = run.get("layer/head/weight_norm")
    assert base is not None and head is not None
    every = doc.schedule.dense_every
    # Frozen in the first fit: no readings; then a dense start of its own.
    assert base.steps[:4].tolist() == [first + k * every for k in range(4)]
    assert set(range(first, first + 4 * every, every)) <= set(head.steps.tolist())
    grads = run.get("layer/base/grad_norm")
    assert grads is not None and int(grads.steps[0]) == first


def test_the_run_directory_reads_back_as_the_doctor_reports(
        staged: tuple[Doctor, Path, int]):
    doc, run_dir, _ = staged
    assert diagnose(read_run_dir(run_dir)).codes() == doc.report().codes()
