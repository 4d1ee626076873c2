"""frozen-batchnorm on real Keras fine-tuning: an MLP with BatchNormalization
pretrained briefly on digits, then fine-tuned with its BatchNorm layers
`trainable=False` (Keras then normalizes with the moving statistics) on shifted inputs
(x*3+2) is flagged, also when the BatchNorm layers sit in a frozen nested model;
BatchNorm that trains on the same data, and frozen BatchNorm on the original data,
stay quiet. The twin of test_torch_batchnorm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
pytest.importorskip("sklearn")

from tests.live import digits_keras as dk  # noqa: E402

from lossdoctor.diagnosis import diagnose  # noqa: E402
from lossdoctor.keras import Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow

BN_LAYERS = {"bn_0", "bn_1"}


def body_layers() -> list[Any]:
    # momentum 0.9 (PyTorch's 0.1): the moving statistics settle in a short pretraining.
    return [keras.layers.Dense(64, name="dense_0"),
            keras.layers.BatchNormalization(momentum=0.9, name="bn_0"),
            keras.layers.Activation("relu", name="relu_0"),
            keras.layers.Dense(32, name="dense_1"),
            keras.layers.BatchNormalization(momentum=0.9, name="bn_1"),
            keras.layers.Activation("relu", name="relu_1")]


def bn_mlp(nested: bool = False) -> keras.Model:
    """The flat MLP, or the same weights in order as a `body` model and a head."""
    head = keras.layers.Dense(10, name="logits")
    if nested:
        body = keras.Sequential([keras.Input((64,)), *body_layers()], name="body")
        return keras.Sequential([keras.Input((64,)), body, head])
    return keras.Sequential([keras.Input((64,)), *body_layers(), head])


def compile_model(model: keras.Model, optimizer: Any) -> None:
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


@pytest.fixture(scope="module")
def pretrained() -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    x, y = dk.digits()
    model = bn_mlp()
    compile_model(model, keras.optimizers.Adam(1e-3))
    model.fit(x, y, batch_size=dk.BATCH, epochs=6, verbose=0)
    return list(model.get_weights())


def fine_tune(run_dir: Path, weights: list[np.ndarray], *, frozen: bool, shifted: bool,
              nested: bool = False) -> Any:
    keras.utils.set_random_seed(0)
    x, y = dk.digits()
    if shifted:
        x = x * 3 + 2
    model = bn_mlp(nested)
    model.set_weights(weights)
    if nested and frozen:  # the transfer-learning recipe: freeze the whole base
        model.get_layer("body").trainable = False
    elif frozen:  # the fine-tuning recipe that keeps pretrained BatchNorm statistics
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    compile_model(model, keras.optimizers.SGD(1e-3, momentum=0.9))
    doc = Doctor(run_dir, probe=(x, y), verbose=False)
    model.fit(x, y, batch_size=dk.BATCH, epochs=2, verbose=0, callbacks=[doc])
    return doc.report()


CASES = [(True, True, False), (False, True, False), (True, False, False), (True, True, True)]


@pytest.fixture(scope="module")
def runs(pretrained: list[np.ndarray],
         tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[bool, ...], Any]:
    root = tmp_path_factory.mktemp("keras-bn")
    out = {}
    for frozen, shifted, nested in CASES:
        run_dir = root / f"{frozen}-{shifted}-{nested}"
        out[(frozen, shifted, nested)] = (run_dir, fine_tune(
            run_dir, pretrained, frozen=frozen, shifted=shifted, nested=nested))
    return out


@pytest.mark.parametrize("nested", [False, True], ids=["bn-layers", "nested-base"])
def test_frozen_batchnorm_on_shifted_data_is_found(runs, nested):
    run_dir, d = runs[(True, True, nested)]
    found = [f for f in d.findings if f.code == "frozen-batchnorm"]
    assert len(found) == 1
    layers = {f"body/{n}" for n in BN_LAYERS} if nested else BN_LAYERS
    assert found[0].layer in layers
    assert found[0].evidence["median_bn_shift"] > 1.0
    assert "monitor-error" not in d.codes()
    assert diagnose(read_run_dir(run_dir)).to_dict() == d.to_dict()


@pytest.mark.parametrize("case", [(False, True, False), (True, False, False)],
                         ids=["trainable-bn-shifted", "frozen-bn-same-data"])
def test_healthy_twins_stay_quiet(runs, case):
    run_dir, d = runs[case]
    run = read_run_dir(run_dir)
    assert "frozen-batchnorm" not in d.codes()
    assert "monitor-error" not in d.codes()
    frozen = run.series["layer/bn_0/bn_frozen"].values
    assert len(frozen) >= 3 and frozen.tolist() == [float(case[0])] * len(frozen)
    # bn_shift is kept only while the statistics are frozen.
    assert ("layer/bn_0/bn_shift" in run.series) == case[0]
    if case[0]:
        assert np.median(run.series["layer/bn_0/bn_shift"].values) < 0.5


@pytest.mark.parametrize("side", dk.SIDES)
def test_a_batchnorm_failure_is_one_finding_and_the_probe_goes_on(tmp_path, monkeypatch, side):
    def broken(*args):
        raise RuntimeError("injected")

    dk.read_on(side, monkeypatch)
    monkeypatch.setattr({"host": "lossdoctor.live.host_stats.bn_shift",
                         "device": "lossdoctor.integrations.keras_tf.bn_shift"}[side], broken)
    keras.utils.set_random_seed(0)
    x, y = dk.digits()
    model = bn_mlp()
    model.get_layer("bn_0").trainable = False
    compile_model(model, keras.optimizers.SGD(1e-3))
    doc = Doctor(tmp_path / "r", probe=(x, y), verbose=False)
    model.fit(x[:704], y[:704], batch_size=dk.BATCH, epochs=1, verbose=0, callbacks=[doc])
    errors = [f for f in doc.report().findings if f.code == "monitor-error"]
    assert [e.evidence["signal"] for e in errors] == ["batchnorm"]
    run = read_run_dir(tmp_path / "r")
    # Probes at steps 0 and 10 of 11.
    assert run.series["layer/bn_0/bn_frozen"].values.tolist() == [1.0, 1.0]
    assert "layer/dense_0/grad_norm" in run.series
    assert not np.isfinite(run.series["layer/bn_0/bn_shift"].values).any()
