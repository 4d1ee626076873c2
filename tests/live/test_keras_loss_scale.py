"""The Keras Doctor with a LossScaleOptimizer (mixed float16): steps skipped for
overflowing gradients are counted (`train/skipped_steps`, from the batches and the
optimizer's update count, which skips leave alone), their weight readings are dropped
(a skipped step moved no weight: its update of zero says nothing of the learning
rate; half the readings were such zeros on the skipping scaler below), and
`skipped-steps` says when the scaler keeps skipping. Before, none of this was seen."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("sklearn")

from tests.live import digits_keras as dk  # noqa: E402
from tests.live import keras_backends as kb  # noqa: E402

from lossdoctor.diagnosis import diagnose  # noqa: E402
from lossdoctor.keras import Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def float16_policy() -> Iterator[None]:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _fit(run_dir: Path, **scaler: Any) -> tuple[Doctor, int]:
    """Two epochs (58 steps) of SGD under a LossScaleOptimizer; returns the Doctor and
    the updates the optimizer made."""
    x, y = dk.digits()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10),
        keras.layers.Activation("softmax", dtype="float32")])
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05), **scaler)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    doctor = Doctor(run_dir, probe=(x[:64], y[:64]), verbose=False)
    model.fit(x, y, batch_size=dk.BATCH, epochs=2, verbose=0, callbacks=[doctor])
    return doctor, int(keras.ops.convert_to_numpy(optimizer.iterations))


SCALERS = {"calibrating": {"initial_scale": 2.0 ** 40}, "skipping": {"dynamic_growth_steps": 1}}


def _summary(name: str, run_dir: Path) -> dict[str, Any]:
    """What the checks read of one fit: steps, updates, the recorded running count,
    the update ratios of the first layer, the findings live and from the folder."""
    doctor, updates = _fit(run_dir, **SCALERS[name])
    run = read_run_dir(run_dir)
    skips, ratios = run.get("train/skipped_steps"), run.get("layer/hidden/update_ratio")
    return {"steps": doctor._step, "updates": updates,
            "counts": [] if skips is None else [[int(s), float(v)] for s, v
                                                 in zip(skips.steps, skips.values, strict=True)],
            "ratios": [] if ratios is None else [float(v) for v in ratios.values],
            "live": doctor.report().codes(), "offline": diagnose(run).codes()}


def _check_calibrating(r: dict[str, Any]) -> None:
    # A scale started at 2**40 overflows float16 until it has been halved enough.
    skipped = r["steps"] - r["updates"]
    assert r["counts"] and r["counts"][-1][1] == skipped >= 10, (r["counts"], skipped)
    # The count read in the dense start shows every step skipped at first.
    assert r["counts"][0][1] == r["counts"][0][0] + 1, r["counts"]
    # No weight reading of a skipped step: each one saw the weights move.
    assert len(r["ratios"]) >= 5 and min(r["ratios"]) > 0, r["ratios"]
    for codes in (r["live"], r["offline"]):
        assert not {"skipped-steps", "update-ratio-low", "monitor-error"} & set(codes), codes


def _check_skipping(r: dict[str, Any]) -> None:
    # Doubling the scale after every update overflows it again at once.
    skipped = r["steps"] - r["updates"]
    assert skipped > 0.3 * r["steps"] and r["counts"][-1][1] == skipped, (r, skipped)
    assert "skipped-steps" in r["live"] and "skipped-steps" in r["offline"], r
    assert "update-ratio-low" not in r["offline"], r["offline"]


def test_a_scaler_coming_down_is_counted_and_not_a_fault(tmp_path: Path) -> None:
    _check_calibrating(_summary("calibrating", tmp_path / "run"))


def test_a_scaler_that_keeps_skipping_is_found(tmp_path: Path) -> None:
    _check_skipping(_summary("skipping", tmp_path / "run"))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_skipped_steps_are_counted_on_other_backends(tmp_path: Path, backend: str) -> None:
    pytest.importorskip(backend)
    results = kb.run_child("tests.live.test_keras_loss_scale", backend, tmp_path)
    _check_calibrating(results["calibrating"])
    _check_skipping(results["skipping"])


if __name__ == "__main__":  # on another Keras backend (the parent sets KERAS_BACKEND)
    keras.mixed_precision.set_global_policy("mixed_float16")
    out = Path(sys.argv[1])
    print(json.dumps({name: _summary(name, out / name) for name in SCALERS}))
