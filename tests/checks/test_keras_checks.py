"""Each pre-flight check on real Keras 3 (TensorFlow) models: fires on a broken one,
quiet on a healthy one; the user's weights, optimizer state and data are untouched."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import lossdoctor  # noqa: E402


def mlp(out_activation: str | None = None, depth: int = 2, seed: int = 0,
        **dense_kwargs: object) -> keras.Model:
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((64,))]
    layers += [keras.layers.Dense(64, activation="relu", **dense_kwargs) for _ in range(depth)]
    layers.append(keras.layers.Dense(10, activation=out_activation))
    return keras.Sequential(layers)


def sparse_ce(from_logits: bool = True) -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


@pytest.fixture(scope="module")
def healthy(digits):  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp(kernel_regularizer=keras.regularizers.l2(1e-4))
    model.compile(keras.optimizers.Adam(1e-3), sparse_ce())
    model.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)  # optimizer has state
    return model


def severe(report: lossdoctor.CheckReport) -> list[str]:
    return [f.code for f in report.findings if f.severity.rank >= 1]


def test_healthy_model_is_quiet_and_unchanged(healthy, digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    x, y = x.copy(), y.copy()
    x0, y0 = x.copy(), y.copy()
    weights = [w.copy() for w in healthy.get_weights()]
    opt_vars = [np.array(v.numpy(), copy=True) for v in healthy.optimizer.variables]
    report = lossdoctor.check(healthy, x, y, x_val=x[500:] + 0.5, y_val=y[500:])
    assert severe(report) == [], str(report)
    assert "regularization" in report.passed and "gradients" in report.passed
    after = healthy.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, after, strict=True))
    assert all(np.array_equal(a, np.asarray(v.numpy()))
               for a, v in zip(opt_vars, healthy.optimizer.variables, strict=True))
    assert np.array_equal(x, x0) and np.array_equal(y, y0)


def test_softmax_into_from_logits_loss(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp("softmax")
    report = lossdoctor.check(model, x, y, loss=sparse_ce(True), checks=["outputs"])
    assert report.codes() == ["logits-probabilities-mismatch"]
    # Keras handles softmax + from_logits=False itself: no finding.
    ok = lossdoctor.check(model, x, y, loss=sparse_ce(False), checks=["outputs"])
    assert ok.codes() == []
    # Raw logits into a loss on probabilities is the reverse mistake.
    rev = lossdoctor.check(mlp(), x, y, loss=sparse_ce(False), checks=["outputs"])
    assert rev.findings[0].evidence["loss_expects"] == "probabilities"


def test_labels_out_of_range_and_onehot_mismatch(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp()
    report = lossdoctor.check(model, x, y + 1, loss=sparse_ce(), checks=["labels", "overfit"])
    assert report.codes() == ["label-problem", "check-skipped"]
    onehot = lossdoctor.check(model, x, y, loss=keras.losses.CategoricalCrossentropy(
        from_logits=True), checks=["labels"])
    assert "one-hot" in onehot.findings[0].title


def test_nan_and_unscaled_inputs(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, raw = digits
    bad = x.copy()
    bad[10] = np.inf
    report = lossdoctor.check(mlp(), bad, y, loss=sparse_ce(), checks=["inputs"])
    assert report.codes() == ["input-problem"]
    unscaled = lossdoctor.check(mlp(), raw * 16, y, loss=sparse_ce(),
                                checks=["inputs", "initial-loss"])
    assert sorted(unscaled.codes()) == ["initial-loss-mismatch", "input-problem"]


@tf.custom_gradient
def _wrong_square(x):  # type: ignore[no-untyped-def]
    def grad(dy):  # type: ignore[no-untyped-def]
        return dy * x  # should be 2 * x

    return x * x, grad


class WrongSquare(keras.layers.Layer):
    def call(self, x):  # type: ignore[no-untyped-def]
        return _wrong_square(x)


def test_wrong_custom_gradient(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, name="body"),
                              WrongSquare(), keras.layers.Dense(10, name="head")])
    report = lossdoctor.check(model, x, y, loss=sparse_ce(), checks=["gradients"])
    (f,) = report.findings
    assert f.code == "gradient-check-failed" and f.evidence["dtype"] == "float64"
    assert "body" in str(f.layer)
    assert f.evidence["analytic_over_numeric"] == pytest.approx(0.5, rel=1e-3)


class StopGradient(keras.layers.Layer):
    def call(self, x):  # type: ignore[no-untyped-def]
        return keras.ops.stop_gradient(x)


def test_a_graph_cut_by_stop_gradient_is_told_as_a_cut(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, name="body"),
                              StopGradient(), keras.layers.Dense(10, name="head")])
    report = lossdoctor.check(model, x, y, loss=sparse_ce(), checks=["gradients"])
    (f,) = report.findings
    assert f.code == "gradient-check-failed" and "body" in str(f.layer)
    assert f.evidence["analytic_all_zero"] == "yes"
    assert "no gradient" in f.title and "stop_gradient" in f.explanation


def test_shuffled_labels(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    shuffled = np.random.default_rng(1).permutation(y)
    report = lossdoctor.check(mlp(), x, shuffled, loss=sparse_ce(),
                              checks=["shuffled-labels"])
    assert report.codes() == ["label-problem"]


def test_regularizer_set_after_build_is_never_added(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp()
    for layer in model.layers:
        layer.kernel_regularizer = keras.regularizers.l2(1e-2)  # too late: no loss term
    report = lossdoctor.check(model, x, y, loss=sparse_ce(), checks=["regularization"])
    assert report.codes() == ["regularization-not-increasing-loss"]


def test_frozen_model_cannot_overfit(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp()
    model.trainable = False
    report = lossdoctor.check(model, x, y, loss=sparse_ce(), checks=["overfit"])
    (f,) = report.findings
    assert f.code == "cannot-overfit-small-batch" and f.evidence["failure"] == "error"


def test_input_lost_on_the_way_cannot_overfit(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,))
    h = keras.layers.Dense(64, activation="relu")(inp)
    h = keras.layers.Lambda(lambda t: tf.stop_gradient(t) * 0.0)(h)  # a debugging leftover
    model = keras.Model(inp, keras.layers.Dense(10)(h))
    report = lossdoctor.check(model, x, y, loss=sparse_ce(), checks=["overfit"])
    (f,) = report.findings
    assert f.evidence["failure"] == "stuck-at-chance"


def test_outliers_and_poor_initialization(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = mlp()
    bad, bad_y = x.copy(), y.copy()
    bad[[5, 77]] *= 40
    bad_y[[5, 77]] = np.asarray(model(bad[[5, 77]])).argmin(1)
    out = lossdoctor.check(model, bad, bad_y, loss=sparse_ce(), checks=["outliers"],
                           samples=600)
    (f,) = out.findings
    assert f.code == "outlier-samples" and set(f.evidence["indices"].split(", ")) == {"5", "77"}
    tiny = mlp(depth=5, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))
    init = lossdoctor.check(tiny, x, y, loss=sparse_ce(), checks=["initialization"])
    assert init.codes() == ["poor-initialization"]
    assert mlp(depth=5) is not None
    ok = lossdoctor.check(mlp(depth=5), x, y, loss=sparse_ce(), checks=["initialization"])
    assert ok.passed == ["initialization"]


def test_no_outliers_at_the_start_of_an_imbalanced_binary_classifier(digits) -> None:  # type: ignore[no-untyped-def]
    """Digit 0 against the rest (10% positives), 0/1 labels of shape (n,): the random
    start's losses have a long tail (up to 3.23 against a median of 0.32), which is
    no sample's fault."""
    x, y, _ = digits
    zero = (y == 0).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    report = lossdoctor.check(model, x[:256], zero[:256], loss="binary_crossentropy",
                              checks=["outliers"])
    assert report.passed == ["outliers"]


def test_uncompiled_without_loss_says_so(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    report = lossdoctor.check(mlp(), x, y, checks=["inputs", "initial-loss", "gradients"])
    assert report.passed == ["inputs"]
    reasons = [f.evidence["reason"] for f in report.by_code("check-skipped")]
    assert len(reasons) == 2 and all("loss" in str(r) for r in reasons)


def test_token_ids_are_indices_not_unscaled_features() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(256, 10)).astype(np.int32)
    keras.utils.set_random_seed(0)
    inp = keras.Input((10,), dtype="int32")
    h = keras.layers.LSTM(16)(keras.layers.Embedding(50, 16)(inp))
    model = keras.Model(inp, keras.layers.Dense(3)(h))
    model.compile(keras.optimizers.Adam(1e-3), sparse_ce())
    report = lossdoctor.check(model, ids, ids[:, -1] % 3)
    assert severe(report) == [] and "monitor-error" not in report.codes()
    assert any("read as indices" in n for n in report.notes)
    assert "inputs" in report.passed and "gradients" in report.passed
