"""Time of the whole pre-flight check suite on a small CNN on digits (8x8 images).

    .venv/bin/python benchmarks/bench_checks.py [--framework both|keras|torch] [--repeat 3]

Builds a small CNN (2 conv layers + dense head) per framework, then times
`lossdoctor.check(model, x, y, x_val=...)` with the defaults (256-sample sample, all
ten checks), best and median of --repeat runs, plus the per-check split of the best
run. Framework import time is reported separately and not counted. Goal: <= 10 s
per framework on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = ((d.images - d.images.mean()) / d.images.std()).astype(np.float32)
    return x, d.target.astype(np.int64)


def keras_case(x: np.ndarray, y: np.ndarray) -> dict[str, object]:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu",
                           kernel_regularizer=keras.regularizers.l2(1e-4)),
        keras.layers.Dense(10),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xi = x[..., None]
    return {"model": model, "x": xi[:1400], "y": y[:1400], "x_val": xi[1400:]}


def torch_case(x: np.ndarray, y: np.ndarray) -> dict[str, object]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    xi = x[:, None]
    return {"model": model, "x": xi[:1400], "y": y[:1400], "x_val": xi[1400:],
            "loss": nn.CrossEntropyLoss(), "optimizer": opt}


def bench(name: str, repeat: int) -> None:
    x, y = digits_images()
    t0 = time.perf_counter()
    case = keras_case(x, y) if name == "keras" else torch_case(x, y)
    import lossdoctor

    setup = time.perf_counter() - t0
    times = []
    best = None
    for _ in range(repeat):
        t = time.perf_counter()
        report = lossdoctor.check(**case)  # type: ignore[arg-type]
        times.append(time.perf_counter() - t)
        if best is None or times[-1] <= min(times):
            best = report
    assert best is not None
    split = ", ".join(f"{k} {v:.2f}" for k, v in sorted(best.seconds.items(),
                                                        key=lambda kv: -kv[1]))
    print(f"{name:5s}: best {min(times):.2f} s, median {statistics.median(times):.2f} s "
          f"over {repeat} runs (import + build {setup:.1f} s, not counted); "
          f"findings: {[f.code for f in best.findings] or 'none'}")
    print(f"       per check (best run, s): {split}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=("both", "keras", "torch"), default="both")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for name in ("keras", "torch"):
        if args.framework in ("both", name):
            bench(name, args.repeat)


if __name__ == "__main__":
    main()
