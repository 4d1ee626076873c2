"""The framework-neutral parts: expected values, verdicts, schedules, runner plumbing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from lossdoctor.checks import CheckOptions, run_checks
from lossdoctor.checks._probe import LossInfo, RegularizationProbe, TrainTrace
from lossdoctor.checks.gradients import ParamCheck
from lossdoctor.checks.gradients import verdict as grad_verdict
from lossdoctor.checks.initial_loss import expected_initial_loss
from lossdoctor.checks.initial_loss import verdict as initial_verdict
from lossdoctor.checks.labels import static_findings, unrelated_verdict
from lossdoctor.checks.lr_range import lr_sequence, suggest
from lossdoctor.checks.outliers import class_groups, outlier_indices
from lossdoctor.checks.outliers import verdict as outlier_verdict
from lossdoctor.checks.outputs import describe_outputs
from lossdoctor.checks.overfit import how_it_failed
from lossdoctor.schedules import (
    CosineDecay,
    ExponentialDecay,
    InverseTimeDecay,
    StepDecay,
    from_config,
)

SPARSE_CE = LossInfo("SparseCategoricalCrossentropy", "softmax-ce", "logits", "sparse",
                     "from_logits=True")


def test_expected_initial_loss() -> None:
    y = np.zeros(4)
    assert expected_initial_loss(SPARSE_CE, 10, y) == (math.log(10), "ln C = ln 10")
    binary = LossInfo("BCE", "binary-ce", "logits", "binary", "")
    assert expected_initial_loss(binary, 1, y)[0] == pytest.approx(math.log(2))  # type: ignore[index]
    mse = LossInfo("MSE", "mse", "any", "any", "")
    assert expected_initial_loss(mse, 1, np.array([1.0, -1.0, 3.0]))[0] == pytest.approx(11 / 3)  # type: ignore[index]


def test_initial_loss_band() -> None:
    assert initial_verdict(2.6, math.log(10), "ln 10", SPARSE_CE) is None
    high = initial_verdict(9.0, math.log(10), "ln 10", SPARSE_CE)
    assert high is not None and high.evidence["ratio"] == pytest.approx(9 / math.log(10))
    assert initial_verdict(0.3, math.log(10), "ln 10", SPARSE_CE) is not None
    nan = initial_verdict(float("nan"), math.log(10), "ln 10", SPARSE_CE)
    assert nan is not None and nan.severity.value == "critical"


def test_describe_outputs() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((50, 5))
    soft = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert describe_outputs(z) == "logits"
    assert describe_outputs(soft) == "softmax"
    assert describe_outputs(np.log(soft)) == "log-softmax"
    assert describe_outputs(1 / (1 + np.exp(-z))) == "sigmoid"
    assert describe_outputs(np.zeros((5, 1))) == "logits"  # constant: no evidence


def test_label_static() -> None:
    out = static_findings(np.array([0, 3, 10]), SPARSE_CE, 10)
    assert [f.code for f in out] == ["label-problem"]
    assert out[0].evidence["label_max"] == 10
    onehot = np.eye(10)[[1, 2, 3]]
    assert "one-hot" in static_findings(onehot, SPARSE_CE, 10)[0].title
    cat = LossInfo("CategoricalCrossentropy", "softmax-ce", "probabilities", "one-hot", "")
    assert static_findings(np.array([1, 2, 3]), cat, 10)[0].severity.value == "critical"
    assert "same class" in static_findings(np.ones(20, dtype=int), SPARSE_CE, 10)[0].title
    assert static_findings(np.arange(10), SPARSE_CE, 10) == []


def test_unrelated_labels_verdict() -> None:
    assert unrelated_verdict(2.3, 1.0, 2.4, train_samples=128, steps=40) is None
    f = unrelated_verdict(2.3, 2.35, 2.4, train_samples=128, steps=40)
    assert f is not None and f.code == "label-problem"


def test_outliers() -> None:
    losses = np.full(100, 2.3) + np.linspace(-0.1, 0.1, 100)
    losses[[7, 42]] = [40.0, 25.0]
    idx, z = outlier_indices(losses)
    assert list(idx) == [7, 42] and z[0] > z[1] > 10


def _imbalanced_binary_start(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropies of a random start on 256 samples, 10% positives: logits with
    heavy tails (Student's t, 3 degrees of freedom) around a lean to "negative", as a
    ReLU network's random start gives (losses up to 3.76, median 0.33)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(256) % 10 == 0).astype(np.float32)
    logits = -1.0 + 0.5 * rng.standard_t(3, 256)
    p = 1 / (1 + np.exp(-logits))
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)), y


def test_outliers_of_a_random_start_are_none() -> None:
    losses, y = _imbalanced_binary_start()
    assert len(outlier_indices(losses)[0]) > 0  # as plain losses, the tail looks bad
    assert outlier_verdict(losses, when="now", labels=y) is None
    assert outlier_verdict(losses, when="now", labels=y[:, None]) is None


def test_outliers_within_a_class() -> None:
    losses, y = _imbalanced_binary_start()
    losses[[3, 10]] = [35.0, 60.0]  # a corrupted negative, a corrupted positive
    f = outlier_verdict(losses, when="now", labels=y)
    assert f is not None and f.evidence["indices"] == "10, 3"
    assert f.evidence["scored_within"] == "class"
    assert "for its class" in f.title


def test_class_groups() -> None:
    assert class_groups(np.array([2, 0, 2, 1]), 4).tolist() == [2, 0, 2, 1]
    assert class_groups(np.array([[1.0], [0.0], [1.0]]), 3).tolist() == [1, 0, 1]
    one_hot = np.eye(3)[[2, 0, 1, 2]]
    assert class_groups(one_hot, 4).tolist() == [2, 0, 1, 2]
    assert class_groups(one_hot * 0.9 + 0.1 / 3, 4) is None  # smoothed labels
    assert class_groups(np.array([0.3, 1.7, 2.2]), 3) is None  # regression targets
    assert class_groups(np.array([0, 1]), 3) is None  # not one label per loss
    assert class_groups(None, 3) is None


def test_overfit_failure_modes() -> None:
    assert how_it_failed(TrainTrace([2.3, 2.3, 2.3]), math.log(10)) == "frozen"
    assert how_it_failed(TrainTrace([2.31, 2.2, 2.25]), math.log(10)) == "stuck-at-chance"
    assert how_it_failed(TrainTrace([2.3, 1.0, float("nan")]), math.log(10)) == "nan"
    assert how_it_failed(TrainTrace([2.3, 1.0, 0.5]), math.log(10)) == "too-slow"
    assert how_it_failed(TrainTrace([], error="detached"), None) == "error"


def test_gradient_verdict_names_the_layer() -> None:
    good = ParamCheck("head.weight", 4, np.ones(4), np.ones(4) * (1 + 1e-9))
    bad = ParamCheck("body.weight", 4, np.ones(4), np.ones(4) * 2)
    f = grad_verdict([bad, good], "float64")
    assert f is not None and f.layer == "body.weight"
    assert f.evidence["analytic_over_numeric"] == pytest.approx(0.5)
    assert grad_verdict([good], "float64") is None


def test_schedules_pinned() -> None:
    assert StepDecay(0.1, drop=0.9, every=20).values(61)[[0, 19, 20, 40, 60]].tolist() == \
        pytest.approx([0.1, 0.1, 0.09, 0.081, 0.0729])
    assert ExponentialDecay(0.1, rate=0.5, decay_steps=10)(20) == pytest.approx(0.025)
    assert InverseTimeDecay(0.1, k=1.0)(3) == pytest.approx(0.025)
    cos = CosineDecay(0.1, total=100, min_lr=0.01)
    assert [cos(0), cos(50), cos(100), cos(150)] == pytest.approx([0.1, 0.055, 0.01, 0.01])
    s = StepDecay(0.1, drop=0.5, every=3)
    assert from_config(s.get_config()) == s
    with pytest.raises(ValueError, match="0 < drop <= 1"):
        StepDecay(0.1, drop=1.5)


def test_lr_suggestion_on_a_synthetic_curve() -> None:
    lrs = lr_sequence(1e-6, 10, 100)
    # Flat, falling fastest around 1e-3, lowest near 1e-1, then blowing up.
    blow_up = np.where(lrs > 0.1, (lrs - 0.1) * 30, 0)
    loss = 2.3 - 2.0 / (1 + np.exp(-(np.log10(lrs) + 3) * 3)) + blow_up
    result = suggest(list(lrs), list(loss), list(loss), stopped_early=False)
    assert 3e-4 <= result.steepest_lr <= 3e-3
    assert result.suggested_lr <= result.min_loss_lr / 10


class _StubProbe:
    """A probe whose gradient check raises: the runner must turn that into monitor-error."""

    framework = "stub"
    model_name = "stub"
    n_parameters = 10
    takes_indices = False
    loss = SPARSE_CE

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return np.tile(np.linspace(-0.1, 0.1, 10), (len(x), 1))

    def sample_losses(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.full(len(x), math.log(10))

    def batch_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        return math.log(10)

    def regularization(self, x: np.ndarray, y: np.ndarray) -> RegularizationProbe:
        return RegularizationProbe([])

    def train(self, x: np.ndarray, y: np.ndarray, **kw: Any) -> TrainTrace:
        return TrainTrace([2.3, 0.01], outputs=np.eye(10)[np.asarray(y) % 10] * 50,
                          eval_losses=np.full(len(kw.get("eval_x", x)), 0.5))

    def gradient_problem(self, x: np.ndarray, y: np.ndarray) -> Any:
        raise RuntimeError("boom")

    def activation_scales(self, x: np.ndarray) -> list[tuple[str, float]]:
        return [("a", 1.0), ("b", 1e-4), ("c", 1e-6)]


def test_runner_isolates_a_failing_check() -> None:
    rng = np.random.default_rng(0)
    report = run_checks(_StubProbe(), rng.standard_normal((80, 4)),
                        np.arange(80) % 10, options=CheckOptions())
    errors = report.by_code("monitor-error")
    assert len(errors) == 1 and errors[0].evidence["check"] == "gradients"
    assert "boom" in str(errors[0].evidence["error"])
    assert "poor-initialization" in report.codes()
    assert "overfit" in report.passed and "inputs" in report.passed
    assert "regularization" in [f.evidence["check"] for f in report.by_code("check-skipped")]
    text = str(report)
    assert "monitor-error" in text and "skipped: regularization" in text
    assert '"monitor-error"' in report.to_json()


def test_several_target_arrays_are_refused_as_one_clear_line() -> None:
    # A model with several outputs takes y as a tuple or dict of arrays; before, the
    # sampler said "x and y must have the same number of samples, but got 50 and 2".
    from lossdoctor.checks._data import take_sample

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    digits, parity = rng.integers(0, 10, 50), rng.integers(0, 2, 50).astype(float)
    for y in ((digits, parity), [digits, parity], {"digit": digits, "parity": parity}):
        with pytest.raises(ValueError, match="y holds 2 target arrays"):
            take_sample(x, y, 16, rng)
    # One target per sample in a list (labels, or one-hot rows) is one target array.
    for y in (list(digits), [np.eye(10)[d] for d in digits]):
        xs, ys, _ = take_sample(x, y, 16, rng)
        assert len(xs) == len(ys) == 16
