"""The Keras Doctor's probe on models with several outputs and a loss for each (a
list, a dict by output name, or one loss for all), with loss weights. Before, such a
model got a note and no gradient or activation signals at all (and one loss for all
outputs was taken on the last output only). The probe's gradients must be those of the
loss Keras trains on: its own `compute_loss`, differentiated here by the backend's
autodiff at the weights the probe sees on step 0. On TensorFlow in this process, on
JAX and torch in a child process each (Keras reads its backend at import)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("sklearn")

from tests.live import digits_keras as dk  # noqa: E402
from tests.live import keras_backends as kb  # noqa: E402

from lossdoctor.keras import Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow

LAYERS = ("trunk", "digit", "parity")


def _two_heads(as_dict: bool) -> keras.Model:
    """A digit classifier (logits) and an odd/even head (a probability)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    h = keras.layers.Dense(32, activation="relu", name="trunk")(inputs)
    digit = keras.layers.Dense(10, name="digit")(h)
    parity = keras.layers.Dense(1, activation="sigmoid", name="parity")(h)
    # Dict keys other than the layer names: the keys are what losses are matched by.
    outputs: Any = {"d": digit, "p": parity} if as_dict else [digit, parity]
    return keras.Model(inputs, outputs)


def _compiled(variant: str) -> tuple[keras.Model, Any]:
    """The model and its targets for the 1797 digits, compiled per `variant`."""
    _, y = dk.digits()
    parity = (y % 2).astype(np.float32)
    xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if variant == "list":
        model = _two_heads(as_dict=False)
        model.compile("adam", loss=[xent, "binary_crossentropy"], loss_weights=[1.0, 0.3])
        return model, [y, parity]
    if variant == "dict":
        model = _two_heads(as_dict=True)
        model.compile("adam", loss={"d": xent, "p": "binary_crossentropy"},
                      loss_weights={"d": 0.5, "p": 2.0})
        return model, {"d": y, "p": parity}
    model = _two_heads(as_dict=False)  # one loss for both heads: mean squared error
    model.compile("adam", loss="mse")
    return model, [keras.utils.to_categorical(y, 10), parity]


def _first(y: Any, n: int) -> Any:
    return keras.tree.map_structure(lambda a: a[:n], y)


def _expected_grad_norms(model: keras.Model, x: np.ndarray, y: Any) -> dict[str, float]:
    """Per layer, the norm of the gradient of Keras' own compiled loss (on this
    backend's autodiff)."""
    from lossdoctor.integrations.keras_autodiff import value_and_gradients

    variables = model.trainable_variables
    _, grads = value_and_gradients(
        lambda: model.compute_loss(x=x, y=y, y_pred=model(x, training=False)), variables)
    squares: dict[str, float] = {}
    for v, g in zip(variables, grads, strict=True):
        layer = v.path.split("/")[0]
        g = np.asarray(keras.ops.convert_to_numpy(g), dtype=np.float64)
        squares[layer] = squares.get(layer, 0.0) + float(np.sum(np.square(g)))
    return {layer: float(np.sqrt(s)) for layer, s in squares.items()}


def _run(variant: str, run_dir: Path) -> dict[str, Any]:
    """One epoch under a Doctor: the gradient norms Keras' loss gives at the initial
    weights, and what the Doctor recorded."""
    x, _ = dk.digits()
    model, y = _compiled(variant)
    probe = (x[:64], _first(y, 64))
    expected = _expected_grad_norms(model, *probe)
    doctor = Doctor(run_dir, probe=probe, verbose=False, histogram_every=0)
    model.fit(x, y, batch_size=dk.BATCH, epochs=1, verbose=0, callbacks=[doctor])
    run = read_run_dir(run_dir)
    first_grads = {}
    for layer in LAYERS:
        grads = run.get(f"layer/{layer}/grad_norm")
        first_grads[layer] = None if grads is None else [int(grads.steps[0]),
                                                         float(grads.values[0])]
    return {"expected": expected, "recorded": first_grads,
            "codes": sorted(doctor.report().codes()),
            "notes": [n["signal"] for n in
                      json.loads((run_dir / "run.json").read_text())["notes"]],
            "activations": [layer for layer in LAYERS
                            if run.get(f"layer/{layer}/act_mean") is not None]}


def _check(result: dict[str, Any]) -> None:
    assert set(result["expected"]) == set(LAYERS)
    assert "monitor-error" not in result["codes"]
    assert not [signal for signal in result["notes"] if "gradients" in signal]
    for layer in LAYERS:
        step, norm = result["recorded"][layer]
        assert step == 0
        np.testing.assert_allclose(norm, result["expected"][layer], rtol=1e-4)
    assert result["activations"] == list(LAYERS)


VARIANTS = ("list", "dict", "one-loss")


@pytest.mark.parametrize("side", dk.SIDES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_probe_reads_the_weighted_loss_of_every_output(tmp_path: Path, variant: str,
                                                          side: str, monkeypatch: Any):
    dk.read_on(side, monkeypatch)
    _check(_run(variant, tmp_path / "run"))


def test_a_probe_without_an_outputs_targets_is_one_clear_monitor_error(tmp_path: Path):
    x, _ = dk.digits()
    model, y = _compiled("dict")
    doctor = Doctor(tmp_path / "run", probe=(x[:64], {"d": y["d"][:64]}), verbose=False)
    history = model.fit(x, y, batch_size=dk.BATCH, epochs=2, verbose=0, callbacks=[doctor])
    assert len(history.history["loss"]) == 2  # training went on
    [error] = [f for f in doctor.report().findings if f.code == "monitor-error"]
    assert "no targets for output p" in error.evidence["error"]
    assert read_run_dir(tmp_path / "run").get("layer/trunk/update_ratio") is not None


def _sides(backend: str) -> tuple[str, ...]:
    # Keras' torch backend always reduces on the device (`keras._on_host`).
    return ("device",) if backend == "torch" else dk.SIDES


def _main(out_dir: Path) -> None:
    """On another Keras backend (the parent sets KERAS_BACKEND): every variant, on
    each side the backend has."""
    from lossdoctor.integrations import keras_host

    limit, results = keras_host.HOST_LIMIT, {}
    for variant in VARIANTS:
        for side in _sides(keras.backend.backend()):
            keras_host.HOST_LIMIT = -1 if side == "device" else limit
            results[f"{variant}-{side}"] = _run(variant, out_dir / f"{variant}-{side}")
    print(json.dumps(results))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_probe_reads_every_output_on_other_backends(tmp_path: Path, backend: str):
    pytest.importorskip(backend)
    results = kb.run_child("tests.live.test_keras_multi_output", backend, tmp_path)
    assert len(results) == len(VARIANTS) * len(_sides(backend))
    for name, result in results.items():
        try:
            _check(result)
        except AssertionError as exc:
            raise AssertionError(f"{backend} {name}: {exc}") from exc


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
