"""Activations applied by `Lambda` layers (`Lambda(keras.ops.relu)`, `Lambda(tf.nn.tanh)`)
are read as activations by the Keras Doctor: dead ReLU units behind a Lambda are found,
and the healthy twin stays quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from tests.live import digits_keras as dk  # noqa: E402
from tests.live.layer_series import layer_medians  # noqa: E402

pytestmark = pytest.mark.slow


def lambda_mlp(bias: float | None) -> keras.Model:
    """Two Dense layers whose ReLU is a Lambda layer each (two spellings), a Lambda of
    an anonymous function (no activation), and a tanh Lambda before the logits."""
    kw = {} if bias is None else {"bias_initializer": keras.initializers.Constant(bias)}
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(32, name="dense_0", **kw),
        keras.layers.Lambda(keras.ops.relu, name="relu_0"),
        keras.layers.Dense(32, name="dense_1", **kw),
        keras.layers.Lambda(tf.nn.relu, name="relu_1"),
        keras.layers.Lambda(lambda x: 0.5 * x, name="halve"),
        keras.layers.Dense(32, name="dense_2"),
        keras.layers.Lambda(keras.activations.tanh, name="tanh_2"),
        keras.layers.Dense(10, name="logits"),
    ])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    root = tmp_path_factory.mktemp("keras-lambda")
    out = {}
    for name, bias in (("dead", -5.0), ("healthy", None)):
        keras.utils.set_random_seed(0)
        doc = dk.train(root / name, lambda_mlp(bias),
                       keras.optimizers.SGD(0.05, momentum=0.9))
        out[name] = (root / name, doc.report())
    return out


def test_dead_units_behind_lambda_relus_are_found(runs):
    run_dir, diagnosis = runs["dead"]
    assert layer_medians(run_dir, "dead_fraction") == {"relu_0": 1.0, "relu_1": 1.0}
    assert set(layer_medians(run_dir, "saturated_fraction")) == {"tanh_2"}
    dead = [f for f in diagnosis.findings if f.code == "dead-units"]
    assert len(dead) == 1
    assert dead[0].layer in ("relu_0", "relu_1")


def test_healthy_twin_reads_the_same_signals_and_stays_quiet(runs):
    run_dir, diagnosis = runs["healthy"]
    dead = layer_medians(run_dir, "dead_fraction")
    assert set(dead) == {"relu_0", "relu_1"}
    assert max(dead.values()) < 0.5
    assert not [f for f in diagnosis.findings
                if f.code in ("dead-units", "saturated-activations", "monitor-error")]
