"""Small Keras MLPs trained on scikit-learn's digits under a live Doctor: the healthy
baseline and one fault per layer finding (the Keras twins of digits_torch)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from lossdoctor.keras import Doctor

BATCH = 64
NAN_STEP = 40  # a step the default schedule reads (dense phase, every 5th step)
# Each faulty `scenario` and the layer finding it must produce.
FAULTS = (("huge-lr", "update-ratio-high"), ("tiny-lr", "update-ratio-low"),
          ("dead-relu", "dead-units"), ("deep-sigmoid", "vanishing-gradients"),
          ("huge-init", "poor-initialization"))

# Where the Doctor reduces its readings: small models on the host (`keras_host`), the
# rest in traced TensorFlow functions (`keras_tf`); the tests' models are all small.
SIDES = ("host", "device")


def read_on(side: str, monkeypatch: Any) -> None:
    """Make the Doctors built from now on reduce their readings on `side`."""
    if side == "device":
        monkeypatch.setattr("lossdoctor.integrations.keras_host.HOST_LIMIT", -1)


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    return x.astype(np.float32), y.astype(np.int64)


def mlp(act: str = "relu", depth: int = 3, width: int = 32, init_std: float | None = None,
        bias: float | None = None) -> keras.Model:
    layers: list[Any] = [keras.Input((64,))]
    for i in range(depth):
        kw: dict[str, Any] = {}
        if init_std is not None:
            kw["kernel_initializer"] = keras.initializers.RandomNormal(stddev=init_std, seed=i)
        if bias is not None:
            kw["bias_initializer"] = keras.initializers.Constant(bias)
        layers.append(keras.layers.Dense(width, activation=act, name=f"dense_{i}", **kw))
    layers.append(keras.layers.Dense(10, name="logits"))
    return keras.Sequential(layers)


class Poison(keras.callbacks.Callback):
    """Puts a NaN into `layer`'s kernel at the start of step `step` (listed before the
    Doctor, so the Doctor's probe of that step sees it)."""

    def __init__(self, layer: str, step: int):
        super().__init__()
        self.layer, self.step, self.seen = layer, step, 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if self.seen == self.step:
            # Keras' JAX trainer holds the weights outside the model during an epoch:
            # put them back first (its next step takes the poisoned kernel up).
            getattr(self.model, "jax_state_sync", lambda: None)()
            kernel = self.model.get_layer(self.layer).kernel
            value = kernel.numpy()
            value[0, 0] = np.nan
            kernel.assign(value)
        self.seen += 1


def train(run_dir: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer,
          epochs: int = 2, callbacks: list[keras.callbacks.Callback] | None = None,
          **doctor: Any) -> Doctor:
    x, y = digits()
    keras.utils.set_random_seed(0)
    model.compile(optimizer=optimizer, metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    doctor.setdefault("verbose", False)
    doctor.setdefault("probe", (x[300:], y[300:]))
    doc = Doctor(run_dir, **doctor)
    model.fit(x[300:], y[300:], batch_size=BATCH, epochs=epochs, verbose=0,
              validation_data=(x[:300], y[:300]), callbacks=[*(callbacks or []), doc])
    return doc


def scenario(name: str, run_dir: Path, **doctor: Any) -> Doctor:
    keras.utils.set_random_seed(0)
    sgd = keras.optimizers.SGD
    if name == "healthy":
        return train(run_dir, mlp(), keras.optimizers.Adam(1e-3), **doctor)
    if name == "huge-lr":
        return train(run_dir, mlp(act="tanh"), sgd(3.0), **doctor)
    if name == "tiny-lr":
        return train(run_dir, mlp(), sgd(1e-6), **doctor)
    if name == "dead-relu":
        return train(run_dir, mlp(bias=-5.0), sgd(0.05, momentum=0.9), **doctor)
    if name == "deep-sigmoid":
        return train(run_dir, mlp(act="sigmoid", depth=10), sgd(0.05, momentum=0.9),
                     **doctor)
    if name == "huge-init":
        return train(run_dir, mlp(depth=4, init_std=3.0), sgd(1e-4), **doctor)
    if name == "nan-at-dense-1":
        return train(run_dir, mlp(), keras.optimizers.Adam(1e-3),
                     callbacks=[Poison("dense_1", NAN_STEP)], **doctor)
    if name == "nan-lambda":
        return train(run_dir, poisoned_lambda_mlp(), keras.optimizers.Adam(1e-3),
                     callbacks=[PoisonFlag(NAN_STEP)], **doctor)
    raise ValueError(f"unknown scenario {name!r}")


FLAG = keras.Variable(0.0, trainable=False, name="poison_flag")


def poisoned_lambda_mlp() -> keras.Model:
    """dense_0 -> Lambda `poison` (adds FLAG: 0, or NaN once poisoned) -> dense_1 -> logits."""
    FLAG.assign(0.0)
    inputs = keras.Input((64,))
    h = keras.layers.Dense(32, activation="relu", name="dense_0")(inputs)
    h = keras.layers.Lambda(lambda t: t + FLAG, name="poison")(h)
    h = keras.layers.Dense(32, activation="relu", name="dense_1")(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))


class PoisonFlag(keras.callbacks.Callback):
    def __init__(self, step: int):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if self.seen == self.step:
            FLAG.assign(float("nan"))
        self.seen += 1


if __name__ == "__main__":  # the kill -9 test: train until killed

    class Flushed(keras.callbacks.Callback):
        def __init__(self, doc: Doctor):
            super().__init__()
            self.doc, self.n = doc, 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.n += 1
            if self.n == 60:
                self.doc.flush()
                print("flushed", flush=True)

    keras.utils.set_random_seed(0)
    x, y = digits()
    model = mlp()
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    doc = Doctor(Path(sys.argv[1]), probe=(x, y), every=5, verbose=False)
    model.fit(x, y, batch_size=BATCH, epochs=100000, verbose=0, callbacks=[doc, Flushed(doc)])


def twins(root: Path, build: Callable[[bool], keras.Model], faulty: str = "faulty"
          ) -> dict[str, tuple[Path, Any]]:
    """A faulty model (`build(True)`) and its healthy twin (`build(False)`), each
    trained from seed 0 under a Doctor with SGD(0.05, momentum 0.9): name (`faulty`,
    "healthy") -> (run folder, diagnosis)."""
    out = {}
    for name in (faulty, "healthy"):
        keras.utils.set_random_seed(0)
        doc = train(root / name, build(name == faulty), keras.optimizers.SGD(0.05, momentum=0.9))
        out[name] = (root / name, doc.report())
    return out
