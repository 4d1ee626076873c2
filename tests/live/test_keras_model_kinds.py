"""The Keras Doctor on the model kinds people write besides Sequential MLPs, reducing
its readings on the host and on the device: a subclassed model (its weights exist
only after its first training step), token ids through an Embedding and an LSTM, a
functional model with two inputs (the probe is a list of arrays), token ids of any
length (a probe of unknown size is reduced on the device), mixed precision (float16
activations, a LossScaleOptimizer), and a model over a million weights (reduced on
the device). Every one is read without a monitor-error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from tests.live import digits_keras as dk  # noqa: E402

from lossdoctor.keras import Doctor  # noqa: E402
from lossdoctor.sources.rundir import read_run_dir  # noqa: E402

pytestmark = pytest.mark.slow

N = 256
RNG = np.random.default_rng(0)
Y = RNG.integers(0, 3, size=N)


class Subclassed(keras.Model):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(16, activation="relu", name="hidden")
        self.out = keras.layers.Dense(3, name="out")

    def call(self, x: Any) -> Any:
        return self.out(self.hidden(x))


def subclassed() -> tuple[keras.Model, Any]:
    return Subclassed(), RNG.normal(size=(N, 6)).astype(np.float32)


def tokens() -> tuple[keras.Model, Any]:
    ids = keras.Input((12,), dtype="int32")
    h = keras.layers.Embedding(50, 8, name="embed")(ids)
    h = keras.layers.LSTM(8, name="lstm")(h)
    model = keras.Model(ids, keras.layers.Dense(3, name="out")(h))
    return model, RNG.integers(0, 50, size=(N, 12)).astype(np.int32)


def tokens_any_length() -> tuple[keras.Model, Any]:
    # Outputs of unknown length: the probe's size is unknown before it runs, so it is
    # reduced on the device while the (small) weights are read on the host.
    ids = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(50, 8, name="embed")(ids)
    h = keras.layers.LSTM(8, name="lstm")(h)
    model = keras.Model(ids, keras.layers.Dense(3, name="out")(h))
    return model, RNG.integers(0, 50, size=(N, 12)).astype(np.int32)


def wide() -> tuple[keras.Model, Any]:
    # Over a million weights: read and reduced on the device, whatever the side asked.
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(1024, activation="relu", name="hidden"),
                              keras.layers.Dense(1024, activation="relu", name="wide"),
                              keras.layers.Dense(3, name="out")])
    return model, RNG.normal(size=(N, 6)).astype(np.float32)


def two_inputs() -> tuple[keras.Model, Any]:
    a, b = keras.Input((4,), name="a"), keras.Input((5,), name="b")
    h = keras.layers.Dense(8, activation="tanh", name="hidden")(a)
    h = keras.layers.Concatenate(name="join")([h, b])
    model = keras.Model([a, b], keras.layers.Dense(3, name="out")(h))
    return model, [RNG.normal(size=(N, 4)).astype(np.float32),
                   RNG.normal(size=(N, 5)).astype(np.float32)]


def mixed_precision() -> tuple[keras.Model, Any]:
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(16, activation="relu", name="hidden",
                                                 dtype="mixed_float16"),
                              keras.layers.Dense(3, name="out")])
    return model, RNG.normal(size=(N, 6)).astype(np.float32)


KINDS: dict[str, Callable[[], tuple[keras.Model, Any]]] = {
    "subclassed": subclassed, "tokens": tokens, "tokens-any-length": tokens_any_length,
    "two-inputs": two_inputs, "mixed-precision": mixed_precision, "wide": wide}
# Layers whose outputs the probe reads: all but the subclassed model's.
ACTIVATIONS = {"tokens": {"embed", "lstm", "out"}, "tokens-any-length": {"embed", "lstm", "out"},
               "two-inputs": {"hidden", "join", "out"}, "mixed-precision": {"hidden", "out"},
               "wide": {"hidden", "wide", "out"}}
# Where the readings are reduced when the host is asked for: the probe of an output of
# unknown size goes to the device, a model over a million weights goes there whole.
ON_DEVICE = {"tokens-any-length": ("host", "tf"), "wide": ("tf", "tf")}


@pytest.mark.parametrize("side", dk.SIDES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_model_kind_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str,
                            side: str) -> None:
    dk.read_on(side, monkeypatch)
    keras.utils.set_random_seed(0)
    model, x = KINDS[kind]()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    probe_x = [a[:32] for a in x] if isinstance(x, list) else x[:32]
    doc = Doctor(tmp_path / "run", probe=(probe_x, Y[:32]), histogram_every=10,
                 verbose=False)
    model.fit(x, Y, batch_size=16, epochs=2, verbose=0, callbacks=[doc])
    sides = tuple(type(reader).__module__.rsplit("_", 1)[-1]  # keras_host / keras_tf
                  for reader in (doc._weights, doc._probe_fn))
    assert sides == (("tf", "tf") if side == "device" else ON_DEVICE.get(kind, ("host", "host")))
    findings = doc.report().findings
    assert [f.evidence for f in findings if f.code == "monitor-error"] == []
    run = read_run_dir(tmp_path / "run")
    layers = {tag.split("/")[1] for tag in run.series if tag.endswith("/grad_norm")}
    weighted = ({"embed", "lstm", "out"} if kind.startswith("tokens")
                else ACTIVATIONS["wide"] if kind == "wide" else {"hidden", "out"})
    assert layers == weighted
    for layer in weighted:
        ratio = run.series[f"layer/{layer}/update_ratio"].values
        assert np.isfinite(ratio).all() and (ratio > 0).all()
    acts = {tag.split("/")[1] for tag in run.series if tag.endswith("/act_std")}
    assert acts == ACTIVATIONS.get(kind, set())
    notes = " ".join(n["note"] for n in run.meta["notes"])
    if kind == "subclassed":
        # Built by its first step: weights are read from the next reading on.
        assert "built by its first training step" in notes
        assert run.series["layer/hidden/weight_norm"].steps[0] == 5
        assert run.meta["model"]["params"] == 6 * 16 + 16 + 16 * 3 + 3
    else:
        assert run.series["layer/out/weight_norm"].steps[0] == 0
