"""The no-gradient rule on hand-made runs: a layer whose gradient reads exactly zero
while the others' do not is cut off from the loss, unless run.json says its weights
are frozen or a whole layer of dead units explains it (the live runs are in
tests/live/test_no_gradient.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lossdoctor.rules.layers import no_gradient
from lossdoctor.run import Run, Series

GOOD = [0.4, 0.5, 0.45, 0.38, 0.41, 0.36]
ZERO = [0.0] * 6


def run_of(layers: list[dict[str, Any]] | None = None, **signals: list[float]) -> Run:
    """`fc1__grad_norm=[...]` is `layer/fc1/grad_norm`; every layer named gets weights."""
    series = {}
    names = []
    for key, values in signals.items():
        layer, signal = key.split("__")
        steps = np.arange(len(values)) * 10
        series[f"layer/{layer}/{signal}"] = Series(steps, np.array(values, dtype=float))
        series.setdefault(f"layer/{layer}/weight_norm", Series(steps, np.ones(len(values))))
        names.append(layer)
    meta = {"layers": layers if layers is not None
            else [{"name": n, "kind": "linear"} for n in dict.fromkeys(names)]}
    return Run("r", "mem", "lossdoctor", series, meta=meta)


def test_a_layer_with_only_zero_gradients_is_cut_off():
    (finding,) = no_gradient(run_of(fc1__grad_norm=ZERO, fc2__grad_norm=GOOD))
    assert finding.code == "no-gradient" and finding.layer == "fc1"
    assert finding.evidence["zero_gradient_readings"] == 6 and finding.step == 0
    assert "any of its 6 readings" in finding.title


def test_healthy_gradients_and_too_few_readings_are_quiet():
    assert no_gradient(run_of(fc1__grad_norm=GOOD, fc2__grad_norm=GOOD)) == []
    assert no_gradient(run_of(fc1__grad_norm=[0.0] * 4, fc2__grad_norm=GOOD[:4])) == []


def test_a_head_trained_in_turns_is_not_cut_off():
    # Zero whenever the readings fall on the other task's steps, as every later one
    # does; the dense start's readings saw it get gradients.
    head = [0.0, 0.3, 0.0, 0.4] + [0.0] * 10
    assert no_gradient(run_of(head__grad_norm=head, trunk__grad_norm=GOOD + GOOD + GOOD[:2])) == []


def test_frozen_weights_are_left_alone():
    layers = [{"name": "fc1", "kind": "linear", "frozen": True}, {"name": "fc2", "kind": "linear"}]
    assert no_gradient(run_of(layers, fc1__grad_norm=ZERO, fc2__grad_norm=GOOD)) == []


def test_a_whole_dead_layer_explains_the_zeros_before_it():
    layers = [{"name": "fc1", "kind": "linear"}, {"name": "relu1", "kind": "relu"},
              {"name": "fc2", "kind": "linear"}]
    run = run_of(layers, fc1__grad_norm=ZERO, fc2__grad_norm=GOOD,
                 relu1__dead_fraction=[1.0] * 6)
    assert no_gradient(run) == []


def test_no_gradient_anywhere_is_left_to_the_loss_rules():
    assert no_gradient(run_of(fc1__grad_norm=ZERO, fc2__grad_norm=ZERO)) == []


def test_weights_that_never_move_without_gradient_readings_got_no_gradient():
    # The Keras Doctor without a probe reads updates, not gradients: a layer whose
    # float32 weights never moved while the others did got no gradient, whatever the
    # learning rate, so update-ratio-low (a learning rate too small) is not the story.
    from lossdoctor.rules.layers import update_ratio

    layers = [{"name": "fc1", "kind": "dense", "dtype": "float32"},
              {"name": "fc2", "kind": "dense", "dtype": "float32"}]
    run = run_of(layers, fc1__update_norm=ZERO, fc1__update_ratio=ZERO,
                 fc2__update_norm=[0.01] * 6, fc2__update_ratio=[1e-3] * 6)
    (finding,) = no_gradient(run)
    assert finding.layer == "fc1" and finding.evidence["zero_update_readings"] == 6
    assert "has not moved" in finding.title
    assert update_ratio(run) == []


def test_low_precision_weights_that_never_move_are_left_to_update_ratio_low():
    from lossdoctor.rules.layers import update_ratio

    layers = [{"name": "fc1", "kind": "dense", "dtype": "bfloat16"},
              {"name": "fc2", "kind": "dense", "dtype": "bfloat16"}]
    run = run_of(layers, fc1__update_norm=ZERO, fc1__update_ratio=ZERO,
                 fc2__update_norm=[0.01] * 6, fc2__update_ratio=[1e-3] * 6)
    assert no_gradient(run) == []
    assert [f.code for f in update_ratio(run)] == ["update-ratio-low"]
