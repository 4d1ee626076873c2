"""The Keras Doctor's device code on known inputs: the traced TensorFlow version
(`keras_tf`) and the eager keras.ops version other backends use (`keras_eager`, run
here eagerly on TensorFlow) give the same activation statistics, BatchNorm shifts and
histograms, edge cases (NaN, inf, constant tensors) included."""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from lossdoctor.integrations import keras_eager, keras_tf  # noqa: E402
from lossdoctor.integrations.keras import HISTOGRAM_BINS  # noqa: E402

BINS = HISTOGRAM_BINS


def eager_rows(groups: list[list[np.ndarray]]) -> np.ndarray:
    return np.stack([np.asarray(keras_eager.histogram_row(g)) for g in groups])


def test_histogram_rows_by_hand() -> None:
    groups = [[np.array([1.0, 2.0, np.nan, np.inf, 3.0], np.float32)],
              [np.full((2, 3), 5.0, np.float32), np.array([5.0], np.float32)],
              [np.array([np.nan, -np.inf], np.float32)]]
    for rows in (keras_tf.histogram_rows(groups).numpy(), eager_rows(groups)):
        assert rows.shape == (3, 2 + BINS)
        # 1..3: start 1, width 2; 1 in the first bin, 2 in the middle one, 3 in the last.
        assert rows[0, :2].tolist() == [1.0, 2.0]
        counts = rows[0, 2:]
        assert counts.sum() == 3 and counts[0] == counts[BINS // 2] == counts[-1] == 1
        # All equal: width 1, every value in the first bin.
        assert rows[1, :2].tolist() == [5.0, 1.0] and rows[1, 2] == 7 == rows[1, 2:].sum()
        # Nothing finite: no counts (the Doctor skips the row).
        assert rows[2, 2:].sum() == 0


def test_histogram_rows_agree_on_random_tensors() -> None:
    rng = np.random.default_rng(0)
    groups = [[rng.normal(size=(8, 16)).astype(np.float32),
               rng.normal(size=16).astype(np.float32)],
              [rng.exponential(size=(64, 4, 4, 3)).astype(np.float32)]]
    traced = tf.function(keras_tf.histogram_rows, autograph=False)(groups).numpy()
    np.testing.assert_allclose(traced, eager_rows(groups), rtol=1e-6)
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
    # |z| = 2 / std + ... per channel, |ln s| = ln 3: well above the rule's 1.0.
    assert a == pytest.approx(b, rel=1e-5) and a > 1.0 + math.log(3)
