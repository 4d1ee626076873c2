"""The dead-units rule over its two signals: a ReLU-family layer's outputs
(`dead_fraction`) and the zero-gradient share of a Linear/Conv layer
(`zero_grad_fraction`, for ReLUs that are no layer of their own)."""

from __future__ import annotations

import numpy as np

from lossdoctor.rules.layers import dead_units
from lossdoctor.run import Run, Series

LAYERS = [{"name": "fc1", "kind": "linear"}, {"name": "relu1", "kind": "relu"},
          {"name": "fc2", "kind": "linear"}, {"name": "sig", "kind": "sigmoid"}]


def run_of(**signals: list[float]) -> Run:
    """`fc1__zero_grad_fraction=[...]` is the series `layer/fc1/zero_grad_fraction`."""
    series = {}
    for key, values in signals.items():
        layer, signal = key.split("__")
        steps = np.arange(len(values)) * 10
        series[f"layer/{layer}/{signal}"] = Series(steps, np.array(values, dtype=float))
    return Run("r", "mem", "lossdoctor", series, meta={"layers": LAYERS})


def test_zero_gradient_units_alone_are_dead_units_at_that_layer():
    (finding,) = dead_units(run_of(fc1__zero_grad_fraction=[0.9] * 6,
                                   fc2__zero_grad_fraction=[0.7] * 6))
    assert finding.layer == "fc1"
    assert finding.evidence["median_zero_grad_fraction"] == 0.9
    assert finding.evidence["layers"] == "fc1, fc2"
    assert "no gradient" in finding.title


def test_a_few_silent_units_are_not_a_finding():
    assert dead_units(run_of(fc1__zero_grad_fraction=[0.3, 0.5, 0.2, 0.4, 0.1])) == []


def test_the_activation_is_named_when_it_sees_as_many_dead_units():
    (finding,) = dead_units(run_of(fc1__zero_grad_fraction=[0.8] * 6,
                                   relu1__dead_fraction=[0.8] * 6))
    assert finding.layer == "relu1"
    assert "median_dead_fraction" in finding.evidence


def test_more_silent_units_elsewhere_name_that_layer():
    (finding,) = dead_units(run_of(relu1__dead_fraction=[0.6] * 6,
                                   fc2__zero_grad_fraction=[1.0] * 6))
    assert finding.layer == "fc2"


def test_dead_fraction_of_a_sigmoid_layer_is_not_read():
    assert dead_units(run_of(sig__dead_fraction=[1.0] * 6)) == []


def test_a_whole_dead_layer_is_critical_and_says_to_restart():
    (finding,) = dead_units(run_of(relu1__dead_fraction=[1.0] * 6))
    assert finding.severity.value == "critical"
    assert finding.evidence["whole_layer"] == 1
    assert "Every unit of relu1" in finding.title
    assert "restart" in finding.fixes[0].lower()


def test_a_whole_layer_without_gradients_is_critical_too():
    (finding,) = dead_units(run_of(fc1__zero_grad_fraction=[1.0] * 6))
    assert finding.severity.value == "critical" and finding.layer == "fc1"


def test_a_layer_with_a_unit_alive_stays_a_warning():
    (finding,) = dead_units(run_of(relu1__dead_fraction=[1.0, 0.98, 1.0, 0.98, 0.98]))
    assert finding.severity.value == "warning" and "whole_layer" not in finding.evidence


def test_an_unnamed_sequential_child_is_shown_with_its_type():
    layers = [{"name": "0", "type": "Linear", "kind": "linear"},
              {"name": "1", "type": "ReLU", "kind": "relu"}]
    series = {"layer/1/dead_fraction": Series(np.arange(6) * 10, np.full(6, 0.8))}
    (finding,) = dead_units(Run("r", "mem", "lossdoctor", series, meta={"layers": layers}))
    assert finding.layer == "1"  # the stable name, as in run.json and the event files
    assert finding.title == "80% of the units of 1 (ReLU) are never active"
