"""Small, real training runs on scikit-learn's digits, with injected faults.

Each scenario trains a tiny model in Keras 3 (TensorFlow backend) or PyTorch and
writes the ordinary logs people already have, so lossdoctor's readers and rules are
tested on the real thing:

* Keras: ``tb/train`` + ``tb/validation`` (TensorBoard callback) and ``training.csv``
  (CSVLogger).
* PyTorch: ``tb/`` (SummaryWriter: per-step ``train/loss``; per-epoch ``val/loss``,
  ``train/accuracy``, ``val/accuracy``, ``lr``) and ``metrics.csv`` laid out the way
  Lightning's CSVLogger does it.

Importing this module imports no framework; each run imports what it needs.

    from examples.digits_scenarios import run_torch_scenario
    run_torch_scenario("overfitting", Path("runs/torch-overfitting"))
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "KERAS_SCENARIOS",
    "TORCH_SCENARIOS",
    "Scenario",
    "load_digits_split",
    "run_keras_scenario",
    "run_torch_scenario",
]

N_TRAIN = 1200  # the remaining 597 digits are the validation set
SPLIT_SEED = 0
SEED = 1234


@dataclass(frozen=True)
class Scenario:
    """How one run is trained; the fault is in the choice of fields."""

    hidden: tuple[int, ...] = (64,)
    activation: str = "relu"
    optimizer: str = "adam"  # "adam" | "sgd"
    lr: float = 1e-3
    momentum: float = 0.0
    epochs: int = 30
    batch_size: int = 32
    n_train: int = N_TRAIN  # a smaller value trains on a subset
    label_noise: float = 0.0  # fraction of training labels replaced by random ones
    fresh_noise: bool = False  # redraw the noisy labels every batch (no memorizing them)
    weight_decay: float = 0.0  # L2 penalty (Keras) / SGD-Adam weight_decay (PyTorch)
    loss: str = "ce"  # "ce" | "log-of-zero" | "clipped" | "bce-on-class-ids"
    zero_output: bool = False  # output layer starts at exactly zero
    hidden_bias: float | None = None  # hidden layers' bias starts here (very negative: dead)
    standardize: bool = True
    spike_step: int | None = None  # PyTorch: corrupt this one training batch
    spike_scale: float = 30.0
    keras_batch_log: bool = False  # Keras: also log per-batch values (TensorBoard batch_*)
    val_label_shift: int = 0  # validation labels encoded differently: (y + shift) % 10


# One description per scenario serves both frameworks; overrides below where Keras'
# and PyTorch's defaults (initialization, Adam epsilon) make the same knob behave apart.
_COMMON: dict[str, Scenario] = {
    "healthy": Scenario(hidden=(64,), lr=1e-3, epochs=20, weight_decay=1e-4),
    # 150 samples (20% mislabelled), 2x512 units, no regularization: the net memorizes
    # the training set and validation loss climbs after epoch ~5.
    "overfitting": Scenario(
        hidden=(512, 512), epochs=40, n_train=150, label_noise=0.2, batch_size=16
    ),
    # Plain SGD at lr 0.5 with batches of 8: weights and loss grow epoch after epoch.
    "diverging": Scenario(hidden=(64,), optimizer="sgd", lr=0.5, epochs=15, batch_size=8),
    # Hand-written cross-entropy without a clip: NaN once a probability underflows.
    "nan": Scenario(hidden=(64,), lr=2e-2, epochs=12, loss="log-of-zero", keras_batch_log=True),
    # Plain SGD at 3e-4: a slow, almost straight descent far above where it could be.
    "lr-too-low": Scenario(hidden=(64,), optimizer="sgd", lr=3e-4, epochs=25),
    # Adam at 0.1 on raw (unscaled) pixels: drops at once, then bounces at a high level.
    "lr-too-high": Scenario(hidden=(64,), activation="tanh", lr=0.1, epochs=25, standardize=False),
    # A one-unit bottleneck: the capacity limit, not the optimizer, sets the floor.
    "plateau": Scenario(hidden=(1,), activation="tanh", lr=3e-2, epochs=30),
    # 90% of training labels redrawn at random every batch; validation labels clean.
    "data-problem": Scenario(
        hidden=(), lr=1e-3, epochs=25, label_noise=0.9, fresh_noise=True, zero_output=True
    ),
    # Validation labels encoded one class off from training's: the model learns, and
    # validation never improves on its first epoch.
    "split-mismatch": Scenario(hidden=(64,), lr=1e-3, epochs=15, val_label_shift=1),
    # Every hidden ReLU starts switched off (bias -20): the output is the same for
    # every input, so the model can learn the class prior and nothing else.
    "dead-network": Scenario(hidden=(64,), lr=1e-3, epochs=15, hidden_bias=-20.0),
    # Learning rate 0 and a zero output layer: uniform softmax, loss exactly ln(10).
    "constant": Scenario(hidden=(64,), optimizer="sgd", lr=0.0, epochs=10, zero_output=True),
    # A huge step saturates the softmax; clipped samples send back no gradient: frozen.
    "softmax-overflow": Scenario(
        hidden=(64,), optimizer="sgd", lr=100.0, epochs=15, loss="clipped"
    ),
    # Binary cross-entropy on the class index (0-9) as every output's target: for a
    # target above 1 the loss has no floor, and it falls further below zero each epoch.
    "unbounded": Scenario(hidden=(64,), lr=1e-3, epochs=15, loss="bce-on-class-ids"),
    # The healthy run with one batch of garbage inputs at step 400.
    "loss-spike": Scenario(hidden=(64,), lr=1e-3, epochs=20, weight_decay=1e-4, spike_step=400),
}

KERAS_SCENARIOS: tuple[str, ...] = (
    "healthy",
    "overfitting",
    "diverging",
    "nan",
    "lr-too-low",
    "lr-too-high",
    "plateau",
    "data-problem",
    "split-mismatch",
    "dead-network",
    "constant",
    "softmax-overflow",
    "unbounded",
)
TORCH_SCENARIOS: tuple[str, ...] = (*KERAS_SCENARIOS, "loss-spike")

# Where Keras' Glorot init and Adam epsilon make PyTorch's setting miss the behaviour.
_KERAS_OVERRIDES: dict[str, dict[str, Any]] = {
    "lr-too-high": {"lr": 0.05},  # 0.1 sits at chance level: no early drop to speak of
    "nan": {"lr": 0.022},  # NaN sets in at epoch 4 (0.02: none within 12 epochs)
    "softmax-overflow": {"lr": 30.0},  # 100 leaves a few samples unsaturated: a late jump
}
_TORCH_OVERRIDES: dict[str, dict[str, Any]] = {}


def _scenario(name: str, overrides: dict[str, dict[str, Any]], allowed: Sequence[str]) -> Scenario:
    if name not in allowed:
        raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(allowed)}")
    base = _COMMON[name]
    changes = overrides.get(name, {})
    return Scenario(**{**base.__dict__, **changes})


# --------------------------------------------------------------------------- data


def load_digits_split(
    scenario: Scenario,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): a fixed split, the scenario's corruptions applied.

    The validation set is always the same clean 597 digits, so runs are comparable
    (its labels shifted only in the split-mismatch scenario).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train = x[:N_TRAIN], y[:N_TRAIN]
    x_val, y_val = x[N_TRAIN:], y[N_TRAIN:]
    if scenario.standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0  # a few border pixels are always 0
        x_train = (x_train - mean) / std
        x_val = (x_val - mean) / std
    x_train, y_train = x_train[: scenario.n_train], y_train[: scenario.n_train].copy()
    if scenario.label_noise > 0 and not scenario.fresh_noise:
        rng = np.random.default_rng(SEED)
        noisy = rng.random(len(y_train)) < scenario.label_noise
        y_train[noisy] = rng.integers(0, 10, size=int(noisy.sum()))
    if scenario.val_label_shift:
        y_val = (y_val + scenario.val_label_shift) % 10
    return x_train, y_train, x_val.astype(np.float32), y_val


# -------------------------------------------------------------------------- Keras


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ banner; only effective before its first import. PyTorch's
    # SummaryWriter imports tensorboard, which imports TensorFlow when installed.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _import_keras() -> Any:
    _quiet_tensorflow()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


def run_keras_scenario(name: str, out_dir: Path) -> Path:
    """Train scenario `name` with Keras; write tb/ and training.csv into `out_dir`."""
    sc = _scenario(name, _KERAS_OVERRIDES, KERAS_SCENARIOS)
    keras = _import_keras()
    from keras import ops

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_val, y_val = load_digits_split(sc)
    keras.utils.set_random_seed(SEED)

    reg = keras.regularizers.L2(sc.weight_decay) if sc.weight_decay else None
    layers: list[Any] = [keras.Input(shape=(64,))]
    for width in sc.hidden:
        bias = "zeros" if sc.hidden_bias is None else keras.initializers.Constant(sc.hidden_bias)
        layers.append(keras.layers.Dense(width, activation=sc.activation, kernel_regularizer=reg,
                                         bias_initializer=bias))
    out_init = "zeros" if sc.zero_output else "glorot_uniform"
    # Hand-written losses take probabilities, as the classic buggy code does.
    out_act = "softmax" if sc.loss in ("log-of-zero", "clipped") else None
    layers.append(
        keras.layers.Dense(
            10, activation=out_act, kernel_initializer=out_init, kernel_regularizer=reg
        )
    )
    model = keras.Sequential(layers)

    loss: Any
    if sc.loss == "ce":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    elif sc.loss == "log-of-zero":

        def loss(y_true: Any, p: Any) -> Any:
            # The textbook formula without a clip: 0 * log(0) = NaN once a class
            # probability underflows to exactly zero.
            onehot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), 10)
            return -ops.sum(onehot * ops.log(p), axis=-1)
    elif sc.loss == "clipped":

        def loss(y_true: Any, p: Any) -> Any:
            # Keras-style clip at 1e-7: a saturated sample costs -ln(1e-7) = 16.1181
            # and, being clipped, sends back no gradient.
            onehot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), 10)
            return -ops.sum(onehot * ops.log(ops.clip(p, 1e-7, 1.0)), axis=-1)
    elif sc.loss == "bce-on-class-ids":

        def loss(y_true: Any, logits: Any) -> Any:
            # The class index where a 0/1 indicator belongs (a multi-label loss fed
            # single-label targets).
            target = ops.cast(ops.reshape(y_true, (-1, 1)), "float32") * ops.ones_like(logits)
            return ops.mean(ops.binary_crossentropy(target, logits, from_logits=True), axis=-1)
    else:
        raise ValueError(f"unknown loss {sc.loss!r}")

    if sc.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=sc.lr, momentum=sc.momentum)
    else:
        opt = keras.optimizers.Adam(learning_rate=sc.lr)
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
    callbacks: list[Any] = [
        keras.callbacks.TensorBoard(
            log_dir=str(out_dir / "tb"), update_freq=1 if sc.keras_batch_log else "epoch"
        ),
        keras.callbacks.CSVLogger(str(out_dir / "training.csv")),
    ]
    # tf.data input and one validation batch: Keras pays a fixed cost per epoch and per
    # step for numpy input, which would dominate these tiny runs.
    import tensorflow as tf

    val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(len(x_val)).cache()
    train: Any
    if sc.fresh_noise:
        train = _noisy_label_batches(keras, sc, x_train, y_train)
    else:
        train = (
            tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(x_train), seed=SEED, reshuffle_each_iteration=True)
            .batch(sc.batch_size)
        )
    model.fit(
        train, validation_data=val, epochs=sc.epochs, shuffle=False, callbacks=callbacks, verbose=0
    )
    keras.backend.clear_session()
    return out_dir


def _noisy_label_batches(keras: Any, sc: Scenario, x: np.ndarray, y: np.ndarray) -> Any:
    """A keras PyDataset that redraws `sc.label_noise` of each batch's labels every time."""

    class NoisyLabels(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(SEED)
            self.order = self.rng.permutation(len(x))

        def __len__(self) -> int:
            return math.ceil(len(x) / sc.batch_size)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            idx = self.order[i * sc.batch_size : (i + 1) * sc.batch_size]
            yb = y[idx].copy()
            noisy = self.rng.random(len(idx)) < sc.label_noise
            yb[noisy] = self.rng.integers(0, 10, size=int(noisy.sum()))
            return x[idx], yb

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x))

    return NoisyLabels()


# ------------------------------------------------------------------------ PyTorch


class _LightningCSV:
    """Write metrics.csv the way Lightning's CSVLogger does.

    One row per log call, columns sorted by name, blanks where a row has no value;
    step-level and epoch-level rows interleave.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, float | int]] = []

    def log(self, step: int, **metrics: float | int) -> None:
        self.rows.append({**metrics, "step": step})

    def save(self) -> None:
        keys = sorted(set().union(*self.rows)) if self.rows else ["epoch", "step"]
        with self.path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)


def run_torch_scenario(name: str, out_dir: Path) -> Path:
    """Train scenario `name` with PyTorch; write tb/ and metrics.csv into `out_dir`."""
    sc = _scenario(name, _TORCH_OVERRIDES, TORCH_SCENARIOS)
    _quiet_tensorflow()
    import torch
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_va, y_va = load_digits_split(sc)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads cost more than they give
    try:
        torch.manual_seed(SEED)
        xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
        xv, yv = torch.from_numpy(x_va), torch.from_numpy(y_va)

        mods: list[nn.Module] = []
        width_in = 64
        act: Callable[[], nn.Module] = nn.ReLU if sc.activation == "relu" else nn.Tanh
        for width in sc.hidden:
            hidden = nn.Linear(width_in, width)
            if sc.hidden_bias is not None:
                nn.init.constant_(hidden.bias, sc.hidden_bias)
            mods += [hidden, act()]
            width_in = width
        head = nn.Linear(width_in, 10)
        if sc.zero_output:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        model = nn.Sequential(*mods, head)

        def criterion(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            if sc.loss == "ce":
                return nn.functional.cross_entropy(logits, target)
            if sc.loss == "bce-on-class-ids":
                # The class index where a 0/1 indicator belongs.
                ids = target.to(logits.dtype)[:, None].expand_as(logits)
                return nn.functional.binary_cross_entropy_with_logits(logits, ids)
            p = torch.softmax(logits, dim=1)
            if sc.loss == "log-of-zero":
                # No clamp: 0 * log(0) = NaN once a probability underflows to zero.
                onehot = nn.functional.one_hot(target, 10).to(p.dtype)
                return -(onehot * torch.log(p)).sum(dim=1).mean()
            # Caffe's SoftmaxWithLoss: clamp at FLT_MIN, so a saturated sample costs
            # -ln(FLT_MIN) = 87.3365 and sends back no gradient.
            p_true = p.gather(1, target[:, None]).squeeze(1)
            return -torch.log(p_true.clamp(min=torch.finfo(torch.float32).tiny)).mean()

        opt: torch.optim.Optimizer
        if sc.optimizer == "sgd":
            opt = torch.optim.SGD(
                model.parameters(), lr=sc.lr, momentum=sc.momentum, weight_decay=sc.weight_decay
            )
        else:
            opt = torch.optim.Adam(model.parameters(), lr=sc.lr, weight_decay=sc.weight_decay)

        writer = SummaryWriter(str(out_dir / "tb"))
        lcsv = _LightningCSV(out_dir / "metrics.csv")
        gen = torch.Generator().manual_seed(SEED)
        step = 0
        opt_name = type(opt).__name__
        for epoch in range(sc.epochs):
            model.train()
            order = torch.randperm(len(xt), generator=gen)
            total, correct, seen = 0.0, 0, 0
            for start in range(0, len(xt), sc.batch_size):
                idx = order[start : start + sc.batch_size]
                xb, yb = xt[idx], yt[idx]
                if sc.fresh_noise:
                    noisy = torch.rand(len(yb), generator=gen) < sc.label_noise
                    yb = torch.where(noisy, torch.randint(0, 10, yb.shape, generator=gen), yb)
                if sc.spike_step is not None and step == sc.spike_step:
                    # One batch of garbage (a corrupt read): large random inputs.
                    xb = torch.randn(xb.shape, generator=gen) * sc.spike_scale
                logits = model(xb)
                loss = criterion(logits, yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                value = float(loss.detach())
                writer.add_scalar("train/loss", value, step)
                lcsv.log(step, epoch=epoch, train_loss_step=value)
                total += value * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
                seen += len(idx)
                step += 1
            model.eval()
            with torch.no_grad():
                v_logits = model(xv)
                v_loss = float(criterion(v_logits, yv))
                v_acc = float((v_logits.argmax(1) == yv).float().mean())
            lr = float(opt.param_groups[0]["lr"])
            last = step - 1
            writer.add_scalar("val/loss", v_loss, last)
            writer.add_scalar("val/accuracy", v_acc, last)
            writer.add_scalar("train/accuracy", correct / seen, last)
            writer.add_scalar("lr", lr, last)
            writer.add_scalar("epoch", epoch, last)
            # Lightning logs validation first, then the training epoch aggregates.
            lcsv.log(last, epoch=epoch, val_loss=v_loss, val_acc=v_acc)
            lcsv.log(
                last,
                epoch=epoch,
                train_loss_epoch=total / seen,
                train_acc_epoch=correct / seen,
                **{f"lr-{opt_name}": lr},
            )
        writer.close()
        lcsv.save()
    finally:
        torch.set_num_threads(threads)
    return out_dir


# ---------------------------------------------------------------------- CLI helper


def _summary(out_dir: Path, framework: str) -> list[tuple[int, float, float, float, float]]:
    """(epoch, train_loss, val_loss, train_acc, val_acc) read back from the CSV log."""
    rows: list[tuple[int, float, float, float, float]] = []
    if framework == "keras":
        with (out_dir / "training.csv").open() as fh:
            for r in csv.DictReader(fh):
                rows.append(
                    (
                        int(r["epoch"]),
                        float(r["loss"]),
                        float(r["val_loss"]),
                        float(r["accuracy"]),
                        float(r["val_accuracy"]),
                    )
                )
        return rows
    val: dict[int, tuple[float, float]] = {}
    with (out_dir / "metrics.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r.get("val_loss"):
                val[int(r["epoch"])] = (float(r["val_loss"]), float(r["val_acc"]))
            elif r.get("train_loss_epoch"):
                e = int(r["epoch"])
                rows.append(
                    (
                        e,
                        float(r["train_loss_epoch"]),
                        val[e][0],
                        float(r["train_acc_epoch"]),
                        val[e][1],
                    )
                )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Generate scenarios and print their per-epoch curves (a tuning aid)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("scenario-output"))
    parser.add_argument("--framework", choices=["keras", "torch", "both"], default="both")
    parser.add_argument("names", nargs="*", help="scenario names (default: all)")
    args = parser.parse_args(argv)
    jobs: list[tuple[str, str]] = []
    if args.framework in ("keras", "both"):
        jobs += [("keras", n) for n in (args.names or KERAS_SCENARIOS) if n in KERAS_SCENARIOS]
    if args.framework in ("torch", "both"):
        jobs += [("torch", n) for n in (args.names or TORCH_SCENARIOS) if n in TORCH_SCENARIOS]
    grand = time.perf_counter()
    for framework, name in jobs:
        out = args.out / f"{framework}-{name}"
        t0 = time.perf_counter()
        run = run_keras_scenario if framework == "keras" else run_torch_scenario
        run(name, out)
        dt = time.perf_counter() - t0
        print(f"== {framework} {name}: {dt:.1f}s")
        for e, tl, vl, ta, va in _summary(out, framework):
            print(
                f"  {e:3d} train {tl:10.4f} val {vl:10.4f} acc {ta:.3f}/{va:.3f}"
                + ("  NaN" if math.isnan(tl) else "")
            )
    print(f"total {time.perf_counter() - grand:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
