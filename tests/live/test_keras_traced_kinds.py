"""Custom Keras layers that apply an activation in their `call`, read by the op that
made their output in the probe's traced graph (TensorFlow): a custom sigmoid layer's
saturation is watched, and a custom ReLU layer dead from its very first step (whose
all-zero outputs say nothing about their kind) is found dead as a whole. A Dropout
after it hands the same units on and is not read as a second ReLU layer. The healthy
twin reads the same kinds and stays quiet. Both sides of the Doctor (readings reduced
on the host, and in traced TensorFlow functions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from tests.live import digits_keras as dk  # noqa: E402
from tests.live.custom_kinds import model  # noqa: E402
from tests.live.layer_series import layer_medians  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=dk.SIDES)
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> dict[str, tuple[Path, Any]]:
    with pytest.MonkeyPatch.context() as patch:
        dk.read_on(request.param, patch)
        return dk.twins(tmp_path_factory.mktemp(f"keras-traced-kinds-{request.param}"), model)


def kinds(run_dir: Path) -> dict[str, str]:
    layers = json.loads((run_dir / "run.json").read_text())["layers"]
    return {x["name"]: x["kind"] for x in layers}


@pytest.mark.parametrize("name", ["faulty", "healthy"])
def test_kinds_are_read_from_the_traced_graph(runs, name):
    run_dir, _ = runs[name]
    assert kinds(run_dir) == {
        "dense_0": "dense", "custom_sigmoid": "sigmoid", "custom_relu": "relu",
        "dropout": "dropout", "dense_1": "dense", "act_sigmoid": "sigmoid",
        "logits": "dense"}
    assert set(layer_medians(run_dir, "saturated_fraction")) == {"custom_sigmoid",
                                                                 "act_sigmoid"}
    assert set(layer_medians(run_dir, "dead_fraction")) == {"custom_relu"}


def test_custom_layers_dead_and_saturated_from_the_first_step_are_found(runs):
    run_dir, diagnosis = runs["faulty"]
    assert layer_medians(run_dir, "dead_fraction")["custom_relu"] == 1.0
    assert layer_medians(run_dir, "saturated_fraction")["custom_sigmoid"] > 0.7
    by_code = {f.code: f for f in diagnosis.findings}
    dead = by_code["dead-units"]
    assert (dead.layer, dead.severity.value) == ("custom_relu", "critical")
    assert by_code["saturated-activations"].layer == "custom_sigmoid"


def test_healthy_twin_stays_quiet(runs):
    run_dir, diagnosis = runs["healthy"]
    assert max(layer_medians(run_dir, "dead_fraction").values()) < 0.5
    assert np.isfinite(layer_medians(run_dir, "saturated_fraction")["custom_sigmoid"])
    assert not [f for f in diagnosis.findings
                if f.code in ("dead-units", "saturated-activations", "monitor-error")]
