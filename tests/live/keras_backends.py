"""What the tests of the Keras Doctor on Keras' other backends share
(test_keras_torch_backend, test_keras_jax_backend). Keras reads its backend at import,
so each of those modules trains its runs in a fresh interpreter (the module run as a
script with KERAS_BACKEND set), which prints one JSON line of `summary`s. Imports
Keras only inside the functions the child runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lossdoctor.findings import CATALOG

ROOT = Path(__file__).resolve().parents[2]
LAYER_CODES = {c for c, e in CATALOG.items() if e.family == "layers"} | {"monitor-error"}
# tests/live/custom_kinds.py's model as every backend should read it: the Dropout after
# the ReLU layer is not a second ReLU layer.
CUSTOM_KINDS = {"dense_0": "dense", "custom_sigmoid": "sigmoid", "custom_relu": "relu",
                "dropout": "dropout", "dense_1": "dense", "act_sigmoid": "sigmoid",
                "logits": "dense"}


def run_child(module: str, backend: str, out_dir: Path) -> dict[str, Any]:
    """`python -m module out_dir` with KERAS_BACKEND=backend: its JSON line."""
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", module, str(out_dir)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bn_frozen_shifted_model() -> Any:
    """Dense -> BatchNorm frozen at its initial statistics (mean 0, var 1) -> ReLU ->
    logits; the caller trains it on inputs far from those statistics."""
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, name="dense_0"),
                              keras.layers.BatchNormalization(name="bn_0"),
                              keras.layers.Activation("relu", name="relu_0"),
                              keras.layers.Dense(10, name="logits")])
    model.get_layer("bn_0").trainable = False
    return model


def summary(doc: Any, run_dir: Path, meta_keys: tuple[str, ...]) -> dict[str, Any]:
    """What the parent process checks of one run: its findings, whether the folder
    diagnoses the same, series lengths, histograms, run.json's layer kinds and the
    median saturated and dead shares per layer."""
    from lossdoctor.diagnosis import diagnose
    from lossdoctor.sources.rundir import read_run_dir

    d = doc.report()
    run = read_run_dir(run_dir)
    return {
        "findings": [{"code": f.code, "layer": f.layer, "step": f.step,
                      "evidence": {k: str(v) for k, v in f.evidence.items()}}
                     for f in d.findings],
        "same_as_folder": diagnose(run).to_dict() == d.to_dict(),
        "series": {k: len(s) for k, s in run.series.items()},
        "histograms": {k: [[h.step, h.num] for h in hs] for k, hs in run.histograms.items()},
        "meta": {k: run.meta.get(k) for k in meta_keys},
        "kinds": {x["name"]: x["kind"] for x in run.meta["layers"]},
        "saturated": {k.split("/")[1]: float(np.median(s.values)) for k, s in run.series.items()
                      if k.endswith("/saturated_fraction")},
        "dead": {k.split("/")[1]: float(np.median(s.values)) for k, s in run.series.items()
                 if k.endswith("/dead_fraction")},
    }


def codes(result: dict[str, Any]) -> set[str]:
    return {f["code"] for f in result["findings"]}


def check_custom_kinds(run: dict[str, Any]) -> None:
    """The custom layers took the kinds of the activations in their `call`."""
    assert run["kinds"] == CUSTOM_KINDS
    assert set(run["saturated"]) == {"custom_sigmoid", "act_sigmoid"}
    assert set(run["dead"]) == {"custom_relu"}


def check_custom_faults(faulty: dict[str, Any], healthy: dict[str, Any]) -> None:
    """The faulty custom layers' dead ReLU and saturated sigmoid are found; their
    healthy twin is quiet."""
    assert faulty["dead"]["custom_relu"] == 1.0
    assert faulty["saturated"]["custom_sigmoid"] > 0.7
    found = {f["code"]: f["layer"] for f in faulty["findings"]}
    assert found["dead-units"] == "custom_relu"
    assert found["saturated-activations"] == "custom_sigmoid"
    assert healthy["dead"]["custom_relu"] < 0.5
    assert not codes(healthy) & {"dead-units", "saturated-activations", "monitor-error"}
