"""Training under the live doctor: small MLPs on scikit-learn's digits, PyTorch and
Keras, healthy or with a fault the layers give away (dead ReLU units from a large
negative bias).

    python examples/live_digits.py --out runs/live
    lossdoctor diagnose runs/live
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np

FAULTS = ("healthy", "dead-units")


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    # One mean and scale for all pixels: per-pixel scaling blows rare strokes in
    # near-constant border pixels up to hundreds, and single batches then spike.
    x = ((x - x.mean()) / x.std()).astype(np.float32)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def train_torch(run_dir: Path, fault: str, epochs: int = 6) -> Path:
    import torch

    from lossdoctor.torch import Doctor

    torch.manual_seed(0)
    x, y, xv, yv = (torch.from_numpy(a) for a in digits())
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))
    if fault == "dead-units":
        torch.nn.init.constant_(model[2].bias, -6.0)  # most of layer 2 never fires
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(0)
    with Doctor(model, opt, run_dir, verbose=False) as doc:
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=gen).split(32):
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                doc.log(loss=loss)
            with torch.no_grad():
                out = model(xv)
                doc.log_epoch(val_loss=torch.nn.functional.cross_entropy(out, yv),
                              val_accuracy=(out.argmax(1) == yv).float().mean())
    return run_dir


def train_keras(run_dir: Path, fault: str, epochs: int = 8) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
    import keras

    from lossdoctor.keras import Doctor

    keras.utils.set_random_seed(0)
    x, y, xv, yv = digits()
    bias = keras.initializers.Constant(-6.0 if fault == "dead-units" else 0.0)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu", bias_initializer=bias),
        keras.layers.Dense(10),
    ])
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    doctor = Doctor(run_dir, probe=(xv[:64], yv[:64]), verbose=False)
    model.fit(x, y, validation_data=(xv, yv), epochs=epochs, batch_size=32, verbose=0,
              callbacks=[doctor])
    return run_dir


def main() -> int:
    parser = argparse.ArgumentParser(description="Train small runs under the live doctor.")
    parser.add_argument("--out", type=Path, default=Path("runs/live"))
    args = parser.parse_args()
    for framework, train in (("torch", train_torch), ("keras", train_keras)):
        for fault in FAULTS:
            run_dir = args.out / f"live-{framework}-{fault}"
            if run_dir.exists():
                shutil.rmtree(run_dir)  # our own output: a Doctor never writes over a run
            train(run_dir, fault)
            print(f"trained {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
