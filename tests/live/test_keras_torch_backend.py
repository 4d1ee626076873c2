"""The Keras Doctor on Keras' torch backend (KERAS_BACKEND=torch): losses, metrics, lr,
weight/update norms, probe gradients (torch.autograd), activations, BatchNorm signals
and histograms are recorded, nan-origin and frozen-batchnorm are found, and
TensorFlow is never imported. Keras reads the backend at import, so the runs train in
a fresh interpreter (this module run as a script) and report back as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("keras")
pytest.importorskip("torch")
pytest.importorskip("sklearn")

from tests.live import keras_backends as kb
from tests.live.keras_backends import codes

pytestmark = pytest.mark.slow


def _seed() -> None:
    # Not keras.utils.set_random_seed: it imports TensorFlow when installed.
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def _scenario(name: str, run_dir: Path) -> dict[str, Any]:
    import keras
    from tests.live import digits_keras as dk

    from lossdoctor.keras import Doctor

    _seed()
    x, y = dk.digits()
    callbacks: list[Any] = []
    if name == "bn-frozen-shifted":
        x = x * 3 + 2  # far from the frozen statistics
        model = kb.bn_frozen_shifted_model()
    elif name.startswith("custom-kinds"):
        from tests.live.custom_kinds import model as custom_model

        model = custom_model(faulty=name.endswith("faulty"))
    else:
        model = dk.mlp()
        if name == "nan-at-dense-1":
            callbacks.append(dk.Poison("dense_1", dk.NAN_STEP))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    doc = Doctor(run_dir, probe=(x[300:], y[300:]), histogram_every=20, verbose=False)
    model.fit(x[300:], y[300:], batch_size=dk.BATCH, epochs=2, verbose=0,
              validation_data=(x[:300], y[:300]), callbacks=[*callbacks, doc])
    params = {layer.name: int(sum(v.numpy().size for v in layer.trainable_weights))
              for layer in model.layers}
    return {**kb.summary(doc, run_dir, ("backend", "notes", "histogram_every")),
            "params": params}


def _main(out_dir: Path) -> None:
    results = {name: _scenario(name, out_dir / name)
               for name in ("healthy", "nan-at-dense-1", "bn-frozen-shifted",
                            "custom-kinds-faulty", "custom-kinds-healthy")}
    results["tensorflow_imported"] = "tensorflow" in sys.modules  # type: ignore[assignment]
    print(json.dumps(results))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return kb.run_child("tests.live.test_keras_torch_backend", "torch",
                        tmp_path_factory.mktemp("keras-torch"))


def test_tensorflow_is_not_imported(results):
    assert results["tensorflow_imported"] is False


def test_healthy_run_records_every_signal_and_stays_quiet(results):
    healthy = results["healthy"]
    assert codes(healthy) & kb.LAYER_CODES == set()
    assert healthy["same_as_folder"]
    assert healthy["meta"] == {"backend": "torch", "notes": [], "histogram_every": 20}
    series = healthy["series"]
    steps = 2 * -(-(1797 - 300) // 64)
    assert series["train/loss_step"] == steps
    for key in ("train/loss", "val/loss", "val/accuracy", "train/accuracy", "lr"):
        assert series[key] >= 1, key
    for layer in ("dense_0", "dense_1", "dense_2", "logits"):
        for signal in ("weight_norm", "update_norm", "update_ratio", "grad_norm",
                       "act_mean", "act_std", "nan_count"):
            assert series[f"layer/{layer}/{signal}"] >= 3, (layer, signal)
    assert series["layer/dense_0/dead_fraction"] >= 3


def test_healthy_run_histograms(results):
    healthy = results["healthy"]
    hists, params = healthy["histograms"], healthy["params"]
    for layer in ("dense_0", "dense_1", "dense_2", "logits"):
        for kind in ("weight_hist", "grad_hist", "act_hist"):
            readings = hists[f"layer/{layer}/{kind}"]
            assert [step for step, _ in readings] == [0, 20, 40]
            units = 10 if layer == "logits" else 32
            # Activations: the 64 probe samples (the default probe_size) x units.
            expected = 64 * units if kind == "act_hist" else params[layer]
            assert all(num == expected for _, num in readings), (layer, kind)


def test_nan_origin_names_the_poisoned_layer_and_step(results):
    origin = [f for f in results["nan-at-dense-1"]["findings"] if f["code"] == "nan-origin"]
    assert len(origin) == 1
    assert origin[0]["layer"] == "dense_1" and origin[0]["step"] == 40
    assert origin[0]["evidence"]["where"] == "weights"


def test_frozen_batchnorm_is_found(results):
    found = [f for f in results["bn-frozen-shifted"]["findings"]
             if f["code"] == "frozen-batchnorm"]
    assert [f["layer"] for f in found] == ["bn_0"]
    assert "monitor-error" not in codes(results["bn-frozen-shifted"])
    assert results["bn-frozen-shifted"]["series"]["layer/bn_0/bn_frozen"] >= 3


@pytest.mark.parametrize("name", ["custom-kinds-faulty", "custom-kinds-healthy"])
def test_custom_layers_kinds_are_read_from_the_torch_calls(results, name):
    """A custom layer's `keras.ops.sigmoid`/`relu` and a weightless custom sigmoid
    layer take that kind; the Dropout after the ReLU layer is not a second one."""
    kb.check_custom_kinds(results[name])


def test_custom_layers_dead_and_saturated_are_found(results):
    kb.check_custom_faults(results["custom-kinds-faulty"], results["custom-kinds-healthy"])


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
