"""A healthy binary classifier (digit 0 against the rest) whose output is a sigmoid:
once it is confident, most of its outputs are saturated, and that is no finding. The
Keras one takes its labels as a vector of shape (n,) against outputs of shape (n, 1),
as `fit` allows, and its probe must read them too (gradients recorded, no
`monitor-error`), with the loss given by name and as a `keras.losses.Loss`. A PyTorch
module may register its head before its body: the output is still the layer the
forward pass calls last, and a saturated hidden tanh is still found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.live.layer_series import layer_medians

from lossdoctor.sources.rundir import read_run_dir

pytestmark = pytest.mark.slow

EPOCHS = 10
QUIET = ("saturated-activations", "monitor-error")


def digit_zero() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    return x.astype(np.float32), (y == 0).astype(np.float32)


@pytest.mark.parametrize("loss", ["binary_crossentropy", "BinaryCrossentropy()"])
def test_keras_confident_sigmoid_output_is_no_finding(tmp_path: Path, loss: str) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    from lossdoctor.keras import Doctor

    x, y = digit_zero()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(1, activation="sigmoid", name="out")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=loss if loss == "binary_crossentropy"
                  else keras.losses.BinaryCrossentropy())
    doc = Doctor(tmp_path, probe=(x[300:364], y[300:364]), verbose=False)
    model.fit(x[300:], y[300:], batch_size=64, epochs=EPOCHS, verbose=0,
              validation_data=(x[:300], y[:300]), callbacks=[doc])
    assert y.ndim == 1 and model.outputs[0].shape[-1] == 1
    assert layer_medians(tmp_path, "saturated_fraction")["out"] > 0.5
    assert set(layer_medians(tmp_path, "grad_norm")) == {"hidden", "out"}
    assert not [f for f in doc.report().findings if f.code in QUIET]


def _train_torch(model: Any, run_dir: Path) -> Any:
    """`model` trained on digit 0 against the rest with a PyTorch Doctor; the Doctor."""
    import torch

    from lossdoctor.torch import Doctor

    x, y = (torch.tensor(a) for a in digit_zero())
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    doc: Any
    with Doctor(model, opt, run_dir, verbose=False) as doc:
        for _ in range(EPOCHS):
            for i in range(300, len(x), 64):
                loss = torch.nn.functional.binary_cross_entropy(
                    model(x[i:i + 64]).squeeze(-1), y[i:i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
                doc.log(loss=loss)
            doc.log_epoch()
    return doc


def test_torch_confident_sigmoid_output_is_no_finding(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 1), torch.nn.Sigmoid())
    doc = _train_torch(model, tmp_path)
    assert layer_medians(tmp_path, "saturated_fraction")["3"] > 0.5
    assert not [f for f in doc.report().findings if f.code in QUIET]


@pytest.mark.parametrize("hidden_scale", [1.0, 30.0])
def test_torch_head_registered_before_body(tmp_path: Path, hidden_scale: float) -> None:
    torch = pytest.importorskip("torch")

    class HeadFirst(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(32, 1)
            self.squash = torch.nn.Sigmoid()
            self.body = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh())
            with torch.no_grad():
                self.body[0].weight.mul_(hidden_scale)

        def forward(self, x: Any) -> Any:
            return self.squash(self.head(self.body(x)))

    torch.manual_seed(0)
    doc = _train_torch(HeadFirst(), tmp_path)
    layers = json.loads((tmp_path / "run.json").read_text())["layers"]
    assert [x["name"] for x in layers] == ["body.0", "body.1", "head", "squash"]
    saturated = layer_medians(tmp_path, "saturated_fraction")
    found = [f for f in doc.report().findings if f.code in QUIET]
    if hidden_scale == 1.0:  # confident by its last epochs
        last = read_run_dir(tmp_path).series["layer/squash/saturated_fraction"].values[-1]
        assert last > 0.5
        assert saturated["body.1"] < 0.5
        assert not found
    else:  # the hidden tanh saturated by a huge initial scale
        assert saturated["body.1"] > 0.5
        assert [(f.code, f.layer) for f in found] == [("saturated-activations", "body.1")]
