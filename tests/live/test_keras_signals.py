"""The Keras Doctor's reductions on known inputs: the traced TensorFlow version
(`keras_tf`), the eager keras.ops version other backends use (`keras_eager`, run
here eagerly on TensorFlow) and the numpy version for small models (`host_stats`,
through `keras_host`) give the same activation statistics, BatchNorm shifts and
histograms, edge cases (NaN, inf, constant tensors) included; and a whole probe pass
reads the same on the host as on the device."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from lossdoctor.integrations import keras_eager, keras_host, keras_tf  # noqa: E402
from lossdoctor.integrations.keras import HISTOGRAM_BINS  # noqa: E402
from lossdoctor.live import host_stats  # noqa: E402

BINS = HISTOGRAM_BINS


def eager_rows(groups: list[list[np.ndarray]]) -> np.ndarray:
    return np.stack([np.asarray(keras_eager.histogram_row(g)) for g in groups])


def host_rows(groups: list[list[np.ndarray]]) -> np.ndarray:
    return np.stack([host_stats.histogram_row(g) for g in groups])


def test_histogram_rows_by_hand() -> None:
    groups = [[np.array([1.0, 2.0, np.nan, np.inf, 3.0], np.float32)],
              [np.full((2, 3), 5.0, np.float32), np.array([5.0], np.float32)],
              [np.array([np.nan, -np.inf], np.float32)]]
    for rows in (keras_tf.histogram_rows(groups).numpy(), eager_rows(groups),
                 host_rows(groups)):
        assert rows.shape == (3, 2 + BINS)
        # 1..3: start 1, width 2; 1 in the first bin, 2 in the middle one, 3 in the last.
        assert rows[0, :2].tolist() == [1.0, 2.0]
        counts = rows[0, 2:]
        assert counts.sum() == 3 and counts[0] == counts[BINS // 2] == counts[-1] == 1
        # All equal: width 1, every value in the first bin.
        assert rows[1, :2].tolist() == [5.0, 1.0] and rows[1, 2] == 7 == rows[1, 2:].sum()
        # Nothing finite: no counts (the Doctor skips the row).
        assert rows[2, 2:].sum() == 0


def test_host_histogram_of_a_span_past_float32s_largest_value() -> None:
    """Exploded weights at +-3e38: max - min is inf in float32, and binning there made
    negative bin numbers (numpy's bincount raised, and the run lost its histograms)."""
    row = host_stats.histogram_row([np.array([-3e38, 0.0, 3e38, np.nan], np.float32)])
    assert row[0] == pytest.approx(-3e38, rel=1e-6)
    assert row[1] == pytest.approx(6e38, rel=1e-6)
    counts = row[2:]
    assert counts.sum() == 3 and counts[0] == counts[BINS // 2] == counts[-1] == 1


def test_histogram_rows_agree_on_random_tensors() -> None:
    rng = np.random.default_rng(0)
    groups = [[rng.normal(size=(8, 16)).astype(np.float32),
               rng.normal(size=16).astype(np.float32)],
              [rng.exponential(size=(64, 4, 4, 3)).astype(np.float32)]]
    traced = tf.function(keras_tf.histogram_rows, autograph=False)(groups).numpy()
    np.testing.assert_allclose(traced, eager_rows(groups), rtol=1e-6)
    np.testing.assert_allclose(traced, host_rows(groups), rtol=1e-6)
    assert traced[:, 2:].sum(axis=1).tolist() == [8 * 16 + 16, 64 * 4 * 4 * 3]
    expected, _ = np.histogram(groups[1][0], bins=BINS)
    assert np.abs(traced[1, 2:] - expected).sum() <= 2  # float rounding at bin edges


@pytest.mark.parametrize("kind", ["relu", "sigmoid", "tanh", ""])
def test_activation_stats_agree(kind: str) -> None:
    x = np.random.default_rng(1).normal(size=(32, 5, 7)).astype(np.float32)
    x[:, :, 0] = -1.0  # a dead unit
    if kind == "sigmoid":
        x = 1 / (1 + np.exp(-4 * x))
    elif kind == "tanh":
        x = np.tanh(4 * x)
    a = keras_tf.activation_stats(tf.constant(x), kind).numpy()
    b = np.asarray(keras_eager.activation_stats(x, kind))
    np.testing.assert_allclose(a, b, rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(a, host_stats.activation_stats(x, kind), rtol=1e-5,
                               equal_nan=True)
    assert a[0] == pytest.approx(x.mean(), abs=1e-5)
    assert a[1] == pytest.approx(x.std(), rel=1e-4)
    if kind == "relu":
        assert a[2] == pytest.approx(1 / 7)


@pytest.mark.parametrize("axis", [-1, 1])
def test_bn_shift_agrees_and_is_zero_on_matching_statistics(axis: int) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(256, 4, 6)).astype(np.float32)
    layer = keras.layers.BatchNormalization(axis=axis, epsilon=1e-6)
    layer.build(x.shape)
    channels = [d for d in range(3) if d != axis % 3]
    layer.moving_mean.assign(x.mean(axis=tuple(channels)))
    layer.moving_variance.assign(x.var(axis=tuple(channels)))
    assert float(keras_tf.bn_shift(tf.constant(x), layer)) == pytest.approx(0.0, abs=1e-3)
    shifted = x * 3 + 2
    a = float(keras_tf.bn_shift(tf.constant(shifted), layer))
    b = float(keras_eager.bn_shift(shifted, layer))
    c = host_stats.bn_shift(shifted, layer.axis, layer.moving_mean.numpy(),
                            layer.moving_variance.numpy(), layer.epsilon)
    assert c == pytest.approx(a, rel=1e-5)
    # |z| = 2 / std + ... per channel, |ln s| = ln 3: well above the rule's 1.0.
    assert a == pytest.approx(b, rel=1e-5) and a > 1.0 + math.log(3)


def test_non_finite_outputs_are_flagged_on_the_host() -> None:
    x = np.ones((4, 3), np.float32)
    assert host_stats.activation_stats(x, "relu")[4] == 0.0
    for bad in (np.nan, np.inf, -np.inf):
        x[1, 2] = bad
        assert host_stats.activation_stats(x, "relu")[4] == 1.0


def _doctor_readings(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, side: str,
                     model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
    """(probe pass with histograms, weight/update row of a changed model) of a Doctor
    reducing on `side`, on the model as it is."""
    from lossdoctor.keras import Doctor

    with monkeypatch.context() as patch:
        if side == "device":
            patch.setattr(keras_host, "HOST_LIMIT", -1)
        doc = Doctor(tmp_path / side, probe=(x, y), verbose=False)
        doc.set_model(model)
        doc.on_train_begin()
    assert (type(doc._probe_fn).__module__ == keras_host.__name__) == (side == "host")
    probe = np.asarray(doc._probe_fn(True))
    doc._weights.snapshot()
    before = [v.numpy() for v in model.trainable_variables]
    for i, v in enumerate(model.trainable_variables):
        v.assign(v.numpy() + 0.01 * (i + 1))
    row = doc._weights.read(snapshot_next=False)
    for v, w in zip(model.trainable_variables, before, strict=True):
        v.assign(w)
    doc.close()
    return probe, row


def test_a_probe_pass_reads_the_same_on_the_host_and_on_the_device(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(8, activation="sigmoid", name="sig")(h)
    h = keras.layers.Dense(8, activation="tanh", name="tanh")(h)
    outputs = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model(inputs, outputs)
    model.get_layer("bn").trainable = False
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(16, 6, 6, 2)) * 2 + 1).astype(np.float32)
    y = rng.integers(0, 3, size=16)
    host, host_row = _doctor_readings(tmp_path, monkeypatch, "host", model, x, y)
    device, device_row = _doctor_readings(tmp_path, monkeypatch, "device", model, x, y)
    assert host.shape == device.shape
    np.testing.assert_allclose(host_row, device_row, rtol=1e-5)
    assert (host_row[len(host_row) // 2:] > 0).all()  # every variable moved
    n_vars = len(model.trainable_variables)
    n_layers = 4  # conv, sig, tanh, logits hold trainable weights (bn is frozen)
    width = 2 * n_vars + 5 * 6 + 1  # norms, stats of 6 outputs, one bn_shift
    np.testing.assert_allclose(host[:width], device[:width], rtol=1e-4, atol=1e-6,
                               equal_nan=True)
    assert host[width - 1] > 0.5  # the probe's inputs are shifted against fresh statistics
    hist_host = host[width:].reshape(-1, 2 + BINS)
    hist_device = device[width:].reshape(-1, 2 + BINS)
    assert hist_host.shape[0] == 2 * n_layers + 6
    np.testing.assert_allclose(hist_host[:, :2], hist_device[:, :2], rtol=1e-5)
    # float rounding can put a value on a bin edge in the neighbouring bin
    assert np.abs(hist_host[:, 2:] - hist_device[:, 2:]).sum(axis=1).max() <= 2
    np.testing.assert_array_equal(hist_host[:, 2:].sum(axis=1), hist_device[:, 2:].sum(axis=1))
