"""`lossdoctor.check` on Keras models with several outputs (a digit classifier and an
odd/even head on one trunk). Before, such a model was refused ("x and y must have the
same number of samples, but got 600 and 2"). Now every check runs on each output that
has a loss, as the model from the inputs to that output, and the inputs and the
initialization once; a finding names its output. A model with several inputs gets one
clear error instead of a confusing one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

import lossdoctor  # noqa: E402

XENT = keras.losses.SparseCategoricalCrossentropy


def two_heads(as_dict: bool, digit_activation: str | None = None) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    h = keras.layers.Dense(64, activation="relu", name="trunk",
                           kernel_regularizer=keras.regularizers.l2(1e-4))(inputs)
    digit = keras.layers.Dense(10, activation=digit_activation, name="digit")(h)
    parity = keras.layers.Dense(1, activation="sigmoid", name="parity")(h)
    outputs: Any = {"d": digit, "p": parity} if as_dict else [digit, parity]
    return keras.Model(inputs, outputs)


def test_a_healthy_two_output_model_passes_each_output_and_is_unchanged(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = two_heads(as_dict=False)
    model.compile("adam", loss=[XENT(from_logits=True), "binary_crossentropy"],
                  loss_weights=[1.0, 0.5])
    weights = [w.copy() for w in model.get_weights()]
    parity = (y % 2).astype(np.float32)
    report = lossdoctor.check(model, x, [y, parity])
    assert [f.code for f in report.findings if f.severity.rank >= 1] == [], str(report)
    for output in ("digit", "parity"):
        for name in ("labels", "outputs", "initial-loss", "regularization", "gradients",
                     "overfit", "shuffled-labels"):
            assert f"{name} ({output})" in report.passed, str(report)
    assert "inputs" in report.passed  # the inputs once, not per output
    assert not [p for p in report.passed if p.startswith("inputs (")]
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(),
                                                    strict=True))


def test_each_outputs_faults_are_named_by_output(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    # Output "d" gives probabilities to a loss that expects logits; output "p" is
    # trained on labels 0 and 2 with binary cross-entropy.
    model = two_heads(as_dict=True, digit_activation="softmax")
    model.compile("adam", loss={"d": XENT(from_logits=True), "p": "binary_crossentropy"})
    bad_parity = 2.0 * (y % 2).astype(np.float32)
    report = lossdoctor.check(model, x, {"d": y, "p": bad_parity},
                              checks=["labels", "outputs"])
    [mismatch] = report.by_code("logits-probabilities-mismatch")
    assert mismatch.evidence["output"] == "d" and mismatch.title.startswith("Output 'd': ")
    [labels] = report.by_code("label-problem")
    assert labels.evidence["output"] == "p" and labels.title.startswith("Output 'p': ")
    assert "labels (d)" in report.passed and "outputs (p)" in report.passed


def test_targets_that_do_not_match_the_outputs_are_refused_clearly(digits) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = digits
    model = two_heads(as_dict=True)
    model.compile("adam", loss={"d": XENT(from_logits=True), "p": "binary_crossentropy"})
    with pytest.raises(ValueError, match=r"2 outputs .*y a list or dict"):
        lossdoctor.check(model, x, y)
    with pytest.raises(ValueError, match="no targets for output 'p'"):
        lossdoctor.check(model, x, {"d": y})
    with pytest.raises(ValueError, match="one output"):
        lossdoctor.lr_range_test(model, x, {"d": y, "p": y % 2})


def test_a_model_with_several_inputs_is_refused_in_one_clear_line(digits) -> None:  # type: ignore[no-untyped-def]
    # Before: "len() of unsized object" for dict inputs, "x and y must have the same
    # number of samples, but got 2 and 600" for a list.
    x, y, _ = digits
    left, right = keras.Input((32,), name="left"), keras.Input((32,), name="right")
    joined = keras.layers.Concatenate()([left, right])
    model = keras.Model({"left": left, "right": right}, keras.layers.Dense(10)(joined))
    model.compile("adam", XENT(from_logits=True))
    for inputs in ({"left": x[:, :32], "right": x[:, 32:]}, [x[:, :32], x[:, 32:]]):
        with pytest.raises(ValueError, match=r"this model takes 2 \(left, right\)"):
            lossdoctor.check(model, inputs, y)
