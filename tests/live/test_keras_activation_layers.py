"""Activations the Keras Doctor cannot read off a layer's class or `activation`: a
`Lambda` layer of a named activation (`Lambda(keras.ops.relu)`), and a custom layer or
nested model that applies a ReLU inside its `call`, read as ReLUs from their outputs
(none negative, many exactly zero). Mostly dead units behind each are found; the
healthy twin reads the same signals and stays quiet; a custom linear layer is not
taken for a ReLU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from tests.live import digits_keras as dk  # noqa: E402
from tests.live.layer_series import layer_medians  # noqa: E402

pytestmark = pytest.mark.slow

WIDTH = 32
RELUS = {"relu_0", "custom_relu", "nested"}


class DenseThenReLU(keras.layers.Layer):  # type: ignore[misc]
    """Weights of its own and a ReLU applied in `call`, as custom blocks do."""

    def __init__(self, units: int, bias: Any = "zeros", relu: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units, self.bias_init, self.relu = units, bias, relu

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(shape=(self.units,), initializer=self.bias_init)

    def call(self, x: Any) -> Any:
        y = keras.ops.matmul(x, self.kernel) + self.bias
        return keras.ops.relu(y) if self.relu else y


def model(mostly_dead: bool) -> keras.Model:
    # Three quarters of the units start far below zero: off for every input.
    bias = (keras.initializers.Constant(np.r_[np.full(24, -20.0), np.zeros(8)])
            if mostly_dead else "zeros")
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(WIDTH, name="dense_0", bias_initializer=bias),
        keras.layers.Lambda(keras.ops.relu, name="relu_0"),
        DenseThenReLU(WIDTH, bias=bias, name="custom_relu"),
        keras.Sequential([keras.layers.Dense(WIDTH, activation="relu")], name="nested"),
        keras.layers.Lambda(lambda x: 0.5 * x, name="halve"),
        DenseThenReLU(WIDTH, relu=False, name="custom_linear"),
        keras.layers.Dense(WIDTH, name="dense_2"),
        keras.layers.Lambda(tf.nn.tanh, name="tanh_2"),
        keras.layers.Dense(10, name="logits"),
    ])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    return dk.twins(tmp_path_factory.mktemp("keras-activation-layers"), model, "dead")


def test_mostly_dead_units_behind_lambda_and_custom_relus_are_found(runs):
    run_dir, diagnosis = runs["dead"]
    dead = layer_medians(run_dir, "dead_fraction")
    assert set(dead) == RELUS
    assert dead["relu_0"] >= 0.75 and dead["custom_relu"] >= 0.75
    assert set(layer_medians(run_dir, "saturated_fraction")) == {"tanh_2"}
    found = [f for f in diagnosis.findings if f.code == "dead-units"]
    assert len(found) == 1
    assert found[0].layer in ("relu_0", "custom_relu")
    kinds = {x["name"]: x for x in json.loads((run_dir / "run.json").read_text())["layers"]}
    assert kinds["custom_relu"]["kind"] == "relu" and "kind_seen" in kinds["custom_relu"]
    assert kinds["custom_linear"]["kind"] != "relu"


def test_healthy_twin_reads_the_same_signals_and_stays_quiet(runs):
    run_dir, diagnosis = runs["healthy"]
    dead = layer_medians(run_dir, "dead_fraction")
    assert set(dead) == RELUS
    assert max(dead.values()) < 0.5
    assert not [f for f in diagnosis.findings
                if f.code in ("dead-units", "saturated-activations", "monitor-error")]
