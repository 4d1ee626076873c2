"""Custom Keras layers that apply an activation in their `call`, read by the op that
made their output in the probe's traced graph (TensorFlow): a custom sigmoid layer's
saturation is watched, and a custom ReLU layer dead from its very first step (whose
all-zero outputs say nothing about their kind) is found dead as a whole. A Dropout
after it hands the same units on and is not read as a second ReLU layer. The healthy
twin reads the same kinds and stays quiet. Both sides of the Doctor (readings reduced
on the host, and in traced TensorFlow functions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from tests.live import digits_keras as dk  # noqa: E402
from tests.live.layer_series import layer_medians  # noqa: E402

pytestmark = pytest.mark.slow

WIDTH = 32


class DenseThen(keras.layers.Layer):  # type: ignore[misc]
    """Weights of its own and an activation applied in `call`."""

    def __init__(self, activation: Any, kernel: Any = "glorot_uniform", bias: Any = "zeros",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation_fn, self.kernel_init, self.bias_init = activation, kernel, bias

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], WIDTH),
                                      initializer=self.kernel_init)
        self.bias = self.add_weight(shape=(WIDTH,), initializer=self.bias_init)

    def call(self, x: Any) -> Any:
        return self.activation_fn(keras.ops.matmul(x, self.kernel) + self.bias)


class Sigmoid(keras.layers.Layer):  # type: ignore[misc]
    """A weightless custom activation layer."""

    def call(self, x: Any) -> Any:
        return keras.ops.sigmoid(x)


def model(faulty: bool) -> keras.Model:
    # Faulty: pre-activations of std ~30 pin the sigmoids at 0 or 1, and a bias of -50
    # keeps every unit of the ReLU layer off for every input from the first step.
    big = keras.initializers.RandomNormal(stddev=5.0, seed=1)
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(WIDTH, name="dense_0"),
        DenseThen(keras.ops.sigmoid, kernel=big if faulty else "glorot_uniform",
                  name="custom_sigmoid"),
        DenseThen(keras.ops.relu, bias=keras.initializers.Constant(-50.0) if faulty
                  else "zeros", name="custom_relu"),
        keras.layers.Dropout(0.1, name="dropout"),
        keras.layers.Dense(WIDTH, name="dense_1"),
        Sigmoid(name="act_sigmoid"),
        keras.layers.Dense(10, name="logits"),
    ])


@pytest.fixture(scope="module", params=dk.SIDES)
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> dict[str, tuple[Path, Any]]:
    with pytest.MonkeyPatch.context() as patch:
        dk.read_on(request.param, patch)
        return dk.twins(tmp_path_factory.mktemp(f"keras-traced-kinds-{request.param}"), model)


def kinds(run_dir: Path) -> dict[str, str]:
    layers = json.loads((run_dir / "run.json").read_text())["layers"]
    return {x["name"]: x["kind"] for x in layers}


@pytest.mark.parametrize("name", ["faulty", "healthy"])
def test_kinds_are_read_from_the_traced_graph(runs, name):
    run_dir, _ = runs[name]
    assert kinds(run_dir) == {
        "dense_0": "dense", "custom_sigmoid": "sigmoid", "custom_relu": "relu",
        "dropout": "dropout", "dense_1": "dense", "act_sigmoid": "sigmoid",
        "logits": "dense"}
    assert set(layer_medians(run_dir, "saturated_fraction")) == {"custom_sigmoid",
                                                                 "act_sigmoid"}
    assert set(layer_medians(run_dir, "dead_fraction")) == {"custom_relu"}


def test_custom_layers_dead_and_saturated_from_the_first_step_are_found(runs):
    run_dir, diagnosis = runs["faulty"]
    assert layer_medians(run_dir, "dead_fraction")["custom_relu"] == 1.0
    assert layer_medians(run_dir, "saturated_fraction")["custom_sigmoid"] > 0.7
    by_code = {f.code: f for f in diagnosis.findings}
    dead = by_code["dead-units"]
    assert (dead.layer, dead.severity.value) == ("custom_relu", "critical")
    assert by_code["saturated-activations"].layer == "custom_sigmoid"


def test_healthy_twin_stays_quiet(runs):
    run_dir, diagnosis = runs["healthy"]
    assert max(layer_medians(run_dir, "dead_fraction").values()) < 0.5
    assert np.isfinite(layer_medians(run_dir, "saturated_fraction")["custom_sigmoid"])
    assert not [f for f in diagnosis.findings
                if f.code in ("dead-units", "saturated-activations", "monitor-error")]
