"""no-gradient on real runs: a layer cut off from the loss (PyTorch `.detach()`, a
Keras `stop_gradient`) never learns, and before this the Doctor said nothing (PyTorch)
or lost its whole probe to a TensorFlow error and told the user the learning rate was
too low (Keras; without a probe, the latter). Frozen weights in the optimizer, from
the start or from mid-run, and a head trained in turns with another are left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.live import digits_torch as dt

from lossdoctor.diagnosis import diagnose
from lossdoctor.sources.rundir import read_run_dir, read_run_json
from lossdoctor.torch import Doctor

pytestmark = pytest.mark.slow

EPOCHS = 3


class Net(torch.nn.Module):
    def __init__(self, cut: bool) -> None:
        super().__init__()
        self.cut = cut
        self.a, self.b, self.c = (torch.nn.Linear(64, 32), torch.nn.Linear(32, 32),
                                  torch.nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        if self.cut:
            h = h.detach()  # the bug: layer a never gets a gradient
        return self.c(torch.relu(self.b(h)))


def _train(run_dir: Path, model: Net, freeze_after: int | None = None) -> Doctor:
    """`dt.train` with Adam; `freeze_after`: layer a frozen from that epoch on, its
    weights still in the optimizer."""
    torch.manual_seed(0)
    model = model.to(dt.DEVICE)
    per_epoch = len(range(0, len(dt.digits()[0]) - dt.BATCH + 1, dt.BATCH))

    def freeze(step: int) -> None:
        if freeze_after is not None and step == freeze_after * per_epoch:
            model.a.requires_grad_(False)

    return dt.train(run_dir, model, torch.optim.Adam(model.parameters(), 1e-3),
                    epochs=EPOCHS, before_step=freeze)


def test_a_detached_layer_is_found_live_and_from_the_folder(tmp_path: Path):
    doc = _train(tmp_path / "run", Net(cut=True))
    [finding] = [f for f in doc.report().findings if f.code == "no-gradient"]
    assert finding.layer == "a" and finding.evidence["zero_gradient_readings"] >= 5
    offline = diagnose(read_run_dir(tmp_path / "run"))
    assert [f.layer for f in offline.findings if f.code == "no-gradient"] == ["a"]


def test_the_same_model_connected_is_quiet(tmp_path: Path):
    assert "no-gradient" not in _train(tmp_path / "run", Net(cut=False)).report().codes()


def test_weights_frozen_in_the_optimizer_are_left_alone(tmp_path: Path):
    model = Net(cut=False)
    model.a.requires_grad_(False)
    doc = _train(tmp_path / "frozen", model)
    layers = {x["name"]: x for x in read_run_json(tmp_path / "frozen")["layers"]}
    assert layers["a"].get("frozen") is True and "frozen" not in layers["b"]
    assert "no-gradient" not in doc.report().codes()
    # Frozen after the first epoch: run.json says so from that epoch's end.
    doc = _train(tmp_path / "later", Net(cut=False), freeze_after=1)
    layers = {x["name"]: x for x in read_run_json(tmp_path / "later")["layers"]}
    assert layers["a"].get("frozen") is True
    assert "no-gradient" not in doc.report().codes()


def test_a_keras_layer_behind_stop_gradient_is_found(tmp_path: Path):
    keras = pytest.importorskip("keras")
    from tests.live import digits_keras as dk

    from lossdoctor.keras import Doctor as KerasDoctor

    class StopGradient(keras.layers.Layer):
        def call(self, h):  # type: ignore[no-untyped-def]
            return keras.ops.stop_gradient(h)

    def fit(run_dir: Path, cut: bool, probe: bool = True) -> KerasDoctor:
        x, y = dk.digits()
        keras.utils.set_random_seed(0)
        inp = keras.Input((64,))
        h = keras.layers.Dense(32, activation="relu", name="cut")(inp)
        h = StopGradient()(h) if cut else h
        h = keras.layers.Dense(32, activation="relu")(h)
        model = keras.Model(inp, keras.layers.Dense(10)(h))
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        doctor = KerasDoctor(run_dir, probe=(x[:64], y[:64]) if probe else None,
                             verbose=False)
        model.fit(x, y, batch_size=dk.BATCH, epochs=EPOCHS, verbose=0, callbacks=[doctor])
        return doctor

    codes = fit(tmp_path / "cut", cut=True).report().codes()
    # The probe kept working: no monitor-error, and no "learning rate too low" for a
    # layer whose updates are zero because it has no gradient.
    assert "no-gradient" in codes and "monitor-error" not in codes, codes
    assert "update-ratio-low" not in codes
    assert "no-gradient" not in fit(tmp_path / "whole", cut=False).report().codes()
    # Without a probe there are no gradients to read, but the cut layer's weights never
    # move while the others do: the same finding, not "the learning rate is too low".
    codes = fit(tmp_path / "no-probe", cut=True, probe=False).report().codes()
    assert "no-gradient" in codes and "update-ratio-low" not in codes, codes


def test_two_heads_trained_in_turns_are_not_cut_off(tmp_path: Path):
    # One head per step: a reading on the other head's step reads zero, and once
    # readings are 10 steps apart (a fixed schedule here) all of them do, though the
    # head learns.
    torch.manual_seed(0)
    x, y = dt.digits()
    trunk = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
    heads = torch.nn.ModuleDict({"digit": torch.nn.Linear(32, 10),
                                 "parity": torch.nn.Linear(32, 2)})
    model = torch.nn.ModuleDict({"trunk": trunk, "heads": heads}).to(dt.DEVICE)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    per_epoch = len(range(0, len(x) - dt.BATCH + 1, dt.BATCH))
    with Doctor(model, opt, tmp_path / "run", verbose=False, max_overhead=None) as doc:
        for step in range(8 * per_epoch):  # 224 steps
            i = step % per_epoch * dt.BATCH
            h, target = trunk(x[i:i + dt.BATCH]), y[i:i + dt.BATCH]
            loss = (torch.nn.functional.cross_entropy(heads["digit"](h), target)
                    if step % 2 == 0 else
                    torch.nn.functional.cross_entropy(heads["parity"](h), target % 2))
            dt.step_and_log(doc, opt, loss, step, per_epoch)
    grads = read_run_dir(tmp_path / "run").get("layer/heads.parity/grad_norm")
    assert grads is not None and (grads.values[-10:] == 0).all()  # it does read zero...
    assert "no-gradient" not in doc.report().codes()  # ...and is not called cut off
