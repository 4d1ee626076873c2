"""The saturated-activations rule reads hidden sigmoid/tanh layers, not the model's
output: a confident binary classifier's output sigmoid sits at 0 or 1 by design."""

from __future__ import annotations

import numpy as np

from lossdoctor.rules.layers import saturated_activations
from lossdoctor.run import Run, Series

# A Linear -> Tanh -> Linear -> Sigmoid classifier as the PyTorch Doctor lists it, and a
# Keras model whose last Dense applies the sigmoid itself.
TORCH = [{"name": "0", "type": "Linear", "kind": "linear", "params": 2080},
         {"name": "1", "type": "Tanh", "kind": "tanh", "params": 0},
         {"name": "2", "type": "Linear", "kind": "linear", "params": 33},
         {"name": "3", "type": "Sigmoid", "kind": "sigmoid", "params": 0}]
KERAS = [{"name": "hidden", "kind": "tanh", "params": 2080},
         {"name": "out", "kind": "sigmoid", "params": 33}]


def run_of(layers: list[dict[str, object]], **shares: float) -> Run:
    series = {f"layer/{name}/saturated_fraction": Series(np.arange(8) * 10.0,
                                                         np.full(8, share))
              for name, share in shares.items()}
    return Run("r", "mem", "lossdoctor", series, meta={"layers": layers})


def test_a_saturated_hidden_layer_is_found():
    (finding,) = saturated_activations(run_of(TORCH, **{"1": 0.9, "3": 0.2}))
    assert finding.layer == "1"
    assert "1 (Tanh)" in finding.title
    (finding,) = saturated_activations(run_of(KERAS, hidden=0.8, out=0.1))
    assert finding.layer == "hidden"


def test_a_saturated_output_sigmoid_is_not_a_finding():
    assert saturated_activations(run_of(TORCH, **{"1": 0.1, "3": 1.0})) == []
    assert saturated_activations(run_of(KERAS, hidden=0.1, out=0.95)) == []


def test_both_saturated_name_the_hidden_layer():
    (finding,) = saturated_activations(run_of(KERAS, hidden=0.7, out=1.0))
    assert finding.layer == "hidden"


def test_layers_without_parameter_counts_are_all_read():
    layers = [{"name": "a", "kind": "sigmoid"}, {"name": "b", "kind": "sigmoid"}]
    (finding,) = saturated_activations(run_of(layers, b=0.9))
    assert finding.layer == "b"
