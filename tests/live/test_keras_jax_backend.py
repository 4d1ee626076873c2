"""The Keras Doctor on Keras' JAX backend (KERAS_BACKEND=jax), whose trainer keeps the
weights outside the model during an epoch: the Doctor puts them back for its readings
(`jax_state_sync`), so weight/update norms, probe gradients (`jax.value_and_grad`),
activations, BatchNorm signals and histograms are recorded, and the layer faults of
test_keras_live are found on this backend too, their healthy twin quiet. Keras reads
the backend at import, so the runs train in a fresh interpreter (this module run as a
script) and report back as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras")
pytest.importorskip("jax")
pytest.importorskip("sklearn")

from tests.live import digits_keras as dk
from tests.live import keras_backends as kb

pytestmark = pytest.mark.slow
SCENARIOS = ("healthy", "huge-lr", "tiny-lr", "dead-relu", "deep-sigmoid", "huge-init",
             "nan-at-dense-1", "bn-frozen-shifted", "custom-kinds-faulty",
             "custom-kinds-healthy", "custom-kinds-faulty-on-device")


def _bn_frozen_shifted(run_dir: Path) -> Any:
    """Trained on inputs far from the frozen BatchNorm's statistics."""
    import keras

    from lossdoctor.keras import Doctor

    keras.utils.set_random_seed(0)
    x, y = dk.digits()
    x = x * 3 + 2
    model = kb.bn_frozen_shifted_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    doc = Doctor(run_dir, probe=(x[300:], y[300:]), verbose=False)
    model.fit(x[300:], y[300:], batch_size=dk.BATCH, epochs=2, verbose=0,
              validation_data=(x[:300], y[:300]), callbacks=[doc])
    return doc


def _scenario(name: str, run_dir: Path) -> dict[str, Any]:
    if name == "bn-frozen-shifted":
        doc = _bn_frozen_shifted(run_dir)
    elif name.startswith("custom-kinds"):
        import keras
        from tests.live.custom_kinds import model

        from lossdoctor.integrations import keras_host

        limit = keras_host.HOST_LIMIT
        if name.endswith("on-device"):  # the probe's reductions compiled with its pass
            keras_host.HOST_LIMIT = -1  # (large models' side)
        try:
            keras.utils.set_random_seed(0)
            doc = dk.train(run_dir, model(faulty="faulty" in name),
                           keras.optimizers.Adam(1e-3))
        finally:
            keras_host.HOST_LIMIT = limit
    else:
        doc = dk.scenario(name, run_dir, histogram_every=20)
    return kb.summary(doc, run_dir, ("backend", "notes"))


def _main(out_dir: Path) -> None:
    print(json.dumps({name: _scenario(name, out_dir / name) for name in SCENARIOS}))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return kb.run_child("tests.live.test_keras_jax_backend", "jax",
                        tmp_path_factory.mktemp("keras-jax"))


def layer_codes(result: dict[str, Any]) -> set[str]:
    return kb.codes(result) & kb.LAYER_CODES


def test_healthy_run_records_every_signal_and_stays_quiet(results):
    healthy = results["healthy"]
    assert layer_codes(healthy) == set()
    assert healthy["same_as_folder"]
    assert healthy["meta"] == {"backend": "jax", "notes": []}
    series = healthy["series"]
    assert series["train/loss_step"] == 2 * -(-(1797 - 300) // 64)
    for layer in ("dense_0", "dense_1", "dense_2", "logits"):
        for signal in ("weight_norm", "update_norm", "update_ratio", "grad_norm",
                       "act_mean", "act_std", "nan_count"):
            assert series[f"layer/{layer}/{signal}"] >= 3, (layer, signal)
    hists = healthy["histograms"]
    for kind in ("weight_hist", "grad_hist", "act_hist"):
        assert [step for step, _ in hists[f"layer/dense_0/{kind}"]] == [0, 20, 40], kind
    assert {num for _, num in hists["layer/dense_0/act_hist"]} == {64 * 32}


@pytest.mark.parametrize(("name", "code"),
                         [*dk.FAULTS, ("bn-frozen-shifted", "frozen-batchnorm")])
def test_fault_is_found(results, name, code):
    assert code in layer_codes(results[name])
    assert "monitor-error" not in layer_codes(results[name])
    assert results[name]["same_as_folder"]


def test_nan_origin_names_the_poisoned_layer_and_step(results):
    origin = [f for f in results["nan-at-dense-1"]["findings"] if f["code"] == "nan-origin"]
    assert len(origin) == 1
    assert origin[0]["layer"] == "dense_1" and origin[0]["step"] == 40
    assert origin[0]["evidence"]["where"] == "weights"


def test_vanishing_gradients_are_read_at_the_first_layer(results):
    vanish = next(f for f in results["deep-sigmoid"]["findings"]
                  if f["code"] == "vanishing-gradients")
    assert vanish["layer"] == "dense_0"
    assert float(vanish["evidence"]["ratio"]) < 1e-2


@pytest.mark.parametrize("name", ["custom-kinds-faulty", "custom-kinds-healthy",
                                  "custom-kinds-faulty-on-device"])
def test_custom_layers_kinds_are_read_from_the_jaxpr(results, name):
    """A custom layer's `keras.ops.sigmoid`/`relu` and a weightless custom sigmoid
    layer take that kind; the Dropout after the ReLU layer is not a second one."""
    kb.check_custom_kinds(results[name])


@pytest.mark.parametrize("name", ["custom-kinds-faulty", "custom-kinds-faulty-on-device"])
def test_custom_layers_dead_and_saturated_are_found(results, name):
    kb.check_custom_faults(results[name], results["custom-kinds-healthy"])


def test_kinds_are_read_from_primitives_and_named_functions():
    import jax
    import jax.numpy as jnp

    from lossdoctor.integrations.keras_jax_kinds import kinds_made

    def forward(values: list[Any]) -> list[Any]:
        (x,) = values
        r = jax.nn.relu(x)
        return [r, jax.nn.sigmoid(x), jnp.tanh(x), r, x * 2.0, jax.nn.leaky_relu(x),
                jnp.maximum(x, 0.0), jnp.maximum(x, 1.0), x]

    # r handed on again (3) is not a second layer; x * 2, max(x, 1) and the input
    # itself make no kind of unit the rules read.
    assert kinds_made(forward, [jnp.ones((2, 3))], range(9)) == {
        0: "relu", 1: "sigmoid", 2: "tanh", 5: "leakyrelu", 6: "relu"}


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
